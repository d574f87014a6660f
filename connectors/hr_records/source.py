"""HR sources: a CSV export or a JSON document (file or HTTPS URL).

They read the text, check that the configured columns exist (a missing column is a config
error naming the ``columns`` table, never a file of bad rows) and hand the rows to
:mod:`connectors.hr_records.translate`. An unreadable file, an unreachable URL or a read with
no usable person is a :class:`SourceError`: never "everyone left" or "nobody left". So is a CSV
file that is not whole: undecodable, or ending inside a quoted field (cut off mid-write or
mid-transfer). One oversized field is only a bad row, with its line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.hr_records.clients import http_client
from connectors.hr_records.paging import (
    body_marker,
    declared_total,
    link_next,
    origin_text,
    resolve,
    same_origin,
)
from connectors.hr_records.settings import REQUIRED_FIELDS, HrSettings, JsonSettings
from connectors.hr_records.translate import BadRow, is_employee_id, people_from_rows
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.records import HRRead

if TYPE_CHECKING:
    import httpx  # imported in JsonHRSource._fetch, where a URL is read (see clients.py)

# The largest CSV field a row may hold: the csv module's default ``field_size_limit``. The csv
# module itself only raises when a field goes over its limit, and then resynchronises in the
# middle of that field (a quoted field spanning lines comes back as rows made of its content),
# so the parser runs without a limit (``_unlimited_fields``) and this one is checked per row.
MAX_FIELD = 131072


def _unlimited_fields() -> None:
    # Process-wide, and only ever raised: every CSV reader in the process may read long fields.
    if csv.field_size_limit() < _PARSER_LIMIT:
        csv.field_size_limit(_PARSER_LIMIT)


_PARSER_LIMIT = 2**31 - 1  # the largest value a C long takes everywhere


class CsvHRSource:
    """Reads an HR CSV export. Handles a UTF-8 BOM, CRLF line ends, blank lines (before the header
    too) and stray whitespace."""

    def __init__(self, name: str, path: Path, settings: HrSettings) -> None:
        self.name = name
        self.path = path
        self._s = settings

    def read_people(self) -> HRRead:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read HR file {self.path}: {exc}") from None
        return self.parse(text)

    def parse(self, text: str) -> HRRead:
        _unlimited_fields()
        lines = io.StringIO(text, newline="").readlines()
        reader = csv.reader(iter(lines))
        header: list[str] = []
        # Blank lines before the header are skipped, as blank lines between rows are: taken for
        # the header, one would send the operator to the `columns` mapping for a missing column.
        header_start = 0
        while not any(h.strip() for h in header):
            header_start = reader.line_num
            try:
                header = next(reader)
            except StopIteration:
                raise SourceError(f"HR file {self.path} is empty") from None
            except csv.Error as exc:
                raise SourceError(f"HR file {self.path} line {reader.line_num}: {exc}") from None
        header = [h.strip() for h in header]
        missing = [f for f in REQUIRED_FIELDS if self._s.columns[f] not in header]
        if missing and self._separated_by_semicolons(lines[header_start : reader.line_num]):
            # Told to map columns, the operator would chase names the file does have. The
            # delimiter is never guessed: a wrong guess reads every row wrongly.
            raise ConfigError(
                f"HR file {self.path} looks separated by ';', but hr_csv reads ',' — export it comma-separated",
                key=f"sources.{self.name}.path",
            )
        if missing:
            names = ", ".join(repr(self._s.columns[f]) for f in missing)
            raise ConfigError(
                f"HR file {self.path} has no column {names} (header: {', '.join(header)}); "
                "map other header names with the source's `columns` table",
                key=f"sources.{self.name}.columns",
            )

        # A column the source reads, named twice: the row's dict keeps the last value, so a first
        # ``status`` saying terminated under a second saying active read as active. Which one is
        # HR's word cannot be told: not read.
        read_columns = set(self._s.columns.values())
        repeated = sorted({h for h in header if h in read_columns and header.count(h) > 1})
        if repeated:
            raise SourceError(
                f"HR file {self.path} has the column {', '.join(map(repr, repeated))} more than once "
                f"(header: {', '.join(header)}); not reading it: which one holds HR's value cannot be told"
            )
        id_column = self._s.columns["employee_id"]

        def rows() -> Iterator[tuple[int, Mapping[str, Any] | BadRow]]:
            first = reader.line_num + 1  # the first line of the next record
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise SourceError(f"HR file {self.path} line {reader.line_num}: {exc}") from None
                if reader.line_num == len(lines) and _ends_inside_quotes(lines[first - 1 :]):
                    raise SourceError(
                        f"HR file {self.path} ends inside a quoted field that starts on line {first}: "
                        "the file is cut off (a partial export or transfer); not reading it"
                    )
                first = reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                row = dict(zip(header, values, strict=False))
                long = [name for name, value in zip(header, values, strict=False) if len(value) > MAX_FIELD]
                if len(values) > len(header) and any(len(v) > MAX_FIELD for v in values[len(header) :]):
                    long.append("(a column past the header)")
                if long:
                    eid = row.get(id_column, "")
                    yield (
                        reader.line_num,
                        BadRow(
                            f"field {', '.join(long)} is longer than {MAX_FIELD} characters",
                            eid.strip() if len(eid) <= MAX_FIELD else "",
                        ),
                    )
                    continue
                yield reader.line_num, row

        return people_from_rows(rows(), self._s, str(self.path))

    def _separated_by_semicolons(self, header_lines: list[str]) -> bool:
        """Whether the header, split at ``;``, names every column the source needs."""
        if not any(";" in line for line in header_lines):
            return False
        try:
            names = {
                h.strip()
                for h in next(csv.reader(iter(header_lines), delimiter=";", skipinitialspace=True), [])
            }
        except csv.Error:
            return False
        return all(self._s.columns[f] in names for f in REQUIRED_FIELDS)


def _ends_inside_quotes(record_lines: list[str]) -> bool:
    """Whether the text of the last record ends inside a quoted field (the lenient parser then
    returns the rest of the file as that field's value)."""
    try:
        list(csv.reader(iter(record_lines), strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


class JsonHRSource:
    """Reads HR records from a JSON file or an HTTPS endpoint (``GET url`` with a bearer token).

    An answer that names a next page is never taken for the whole workforce (see ``paging.py``):
    it fails the read, unless ``max_pages`` lets the source follow its ``Link rel="next"`` pages,
    each read and checked as the first; any page that fails fails the read.
    """

    def __init__(self, settings: JsonSettings, client: httpx.Client | None = None) -> None:
        self.name = settings.rows.name
        self._s = settings.rows
        self.path = settings.path
        self.url = settings.url
        self._token = settings.token
        self.records_key = settings.records_key
        self.timeout = settings.timeout
        self.max_pages = settings.max_pages
        self._client = client

    def read_people(self) -> HRRead:
        if self.path is not None:
            records, origin = self._read_file(self.path), str(self.path)
        else:
            assert self.url is not None
            records, origin = self._read_pages(self.url), self.url
        for required in REQUIRED_FIELDS:
            header = self._s.columns[required]
            if records and not any(isinstance(r, dict) and header in r for r in records):
                raise ConfigError(
                    f"HR records in {origin} have no key {header!r}; map it with the `columns` table",
                    key=f"sources.{self.name}.columns",
                )

        read_keys = set(self._s.columns.values())
        id_key = self._s.columns["employee_id"]

        def rows() -> Iterator[tuple[int, Mapping[str, Any] | BadRow]]:
            # Numbered across the pages of a paged read.
            for index, record in enumerate(records, start=1):
                repeated = sorted(read_keys & set(getattr(record, "repeated", ())))
                if repeated:
                    # Which of the values is HR's cannot be told: a bad row, whose employee id
                    # (when it is not itself repeated) keeps that person's last good record.
                    eid = record.get(id_key) if id_key not in repeated else None
                    yield (
                        index,
                        BadRow(
                            f"key {', '.join(map(repr, repeated))} more than once in one record",
                            str(eid) if is_employee_id(eid) else "",
                        ),
                    )
                    continue
                yield index, record if isinstance(record, dict) else {}

        return people_from_rows(rows(), self._s, f"{origin} record")

    def _read_file(self, path: Path) -> list[Any]:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read HR file {path}: {exc}") from None
        doc = _load(text, str(path))
        records = self._records(doc, str(path))
        if (marker := body_marker(doc, records)) is not None:
            raise SourceError(
                f"HR file {path} is one page of a paginated answer (next-page marker: JSON key {marker}); "
                "not taking it for the whole workforce"
            )
        _check_total(declared_total(doc, records), len(records), f"HR file {path}")
        return records

    def _read_pages(self, url: str) -> list[Any]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        records: list[Any] = []
        page, page_url, read = 1, url, {url}
        total: tuple[str, int] | None = None  # the largest count any page declares
        with http_client(self._client, self.timeout) as client:
            while True:
                where = url if page == 1 else f"{url} page {page} ({page_url})"
                response = _get(client, page_url, headers, where)
                # A byte order mark is read as in a file (utf-8-sig): json.loads refuses one, and
                # every read of such an endpoint would fail.
                doc = _load(response.text.removeprefix("\ufeff"), where)
                rows = self._records(doc, where)
                records.extend(rows)
                declared = declared_total(doc, rows)
                if declared is not None and (total is None or declared[1] > total[1]):
                    total = declared
                has_next, next_ref = link_next(response.headers.get("link"), response.links)
                if not has_next:
                    # Beside a Link next, a body marker names the same next page; without one,
                    # it names a page this source does not know how to ask for.
                    if (marker := body_marker(doc, rows)) is not None:
                        raise SourceError(
                            f"HR endpoint {where} answered one page of several (next-page marker: JSON key "
                            f"{marker}); not taking it for the whole workforce: have the endpoint return "
                            'every person in one answer (only pages named by a Link rel="next" header are '
                            "followed, with max_pages)"
                        )
                    _check_total(total, len(records), f"HR endpoint {url}")
                    return records
                if self.max_pages == 1:
                    raise SourceError(
                        f"HR endpoint {where} answered one page of several (next-page marker: HTTP header "
                        'Link rel="next"); not taking it for the whole workforce: set max_pages to follow '
                        "the Link pages, or have the endpoint return every person in one answer"
                    )
                if next_ref is None:
                    raise SourceError(
                        f'HR endpoint {where} has a Link rel="next" header without a readable URL'
                    )
                if page == self.max_pages:
                    raise SourceError(
                        f"HR endpoint {where} names a next page after max_pages = {self.max_pages} pages; "
                        "not taking the pages read for the whole workforce (raise max_pages)"
                    )
                next_url = resolve(page_url, next_ref)
                # The bearer token goes with every page: only to where url itself points.
                if not same_origin(next_url, url):
                    raise SourceError(
                        f"HR endpoint {where} names a next page {next_url} elsewhere than {origin_text(url)} "
                        "(pages are read from the configured url's scheme, host and port only)"
                    )
                if next_url in read:
                    raise SourceError(
                        f"HR endpoint {where} names as its next page {next_url}, a page already read"
                    )
                page, page_url = page + 1, next_url
                read.add(next_url)

    def _records(self, doc: Any, origin: str) -> list[Any]:
        if isinstance(doc, list):
            return doc
        if isinstance(doc, dict):
            keys = [self.records_key] if self.records_key else ["employees", "people", "workers", "data"]
            for key in keys:
                value = doc.get(key)
                if isinstance(value, list):
                    return value
        raise SourceError(f"{origin}: expected a list of people (or records_key), got {type(doc).__name__}")


def _check_total(total: tuple[str, int] | None, read: int, where: str) -> None:
    """Fail a read whose answer declares more records than it held: a first page of an API paged
    by offset (it names no next page, only the total)."""
    if total is not None and total[1] > read:
        key, count = total
        raise SourceError(
            f"{where}: JSON key {key} says {count} people, {read} read; not taking a part for the whole "
            "workforce: have the endpoint return every person in one answer"
        )


def _get(client: httpx.Client, url: str, headers: Mapping[str, str], where: str) -> httpx.Response:
    """One page: anything but a 200 answer fails the read."""
    import httpx

    try:
        response = client.get(url, headers=dict(headers))
    except httpx.HTTPError as exc:
        raise SourceError(f"HR endpoint {where} unreachable: {exc}") from None
    if response.status_code != 200:
        raise SourceError(f"HR endpoint {where} answered HTTP {response.status_code}")
    return response


class _Object(dict[str, Any]):
    """A JSON object that named keys more than once (``repeated``): ``json`` keeps the last value
    of a repeated key, so a first ``"status": "terminated"`` under a later ``"status": "active"``
    would read as active."""

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj  # the usual case, a plain dict
    keys = [k for k, _ in pairs]
    marked = _Object(pairs)
    marked.repeated = tuple(sorted({k for k in keys if keys.count(k) > 1}))
    return marked


def _load(text: str, where: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where} is not valid JSON: {exc}") from None
