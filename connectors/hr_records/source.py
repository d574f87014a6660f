"""HR sources: a CSV export or a JSON document (file or HTTPS URL).

They read rows, translate them into :class:`Person` records and report every bad row
with its line (CSV) or record number (JSON) and the employee id it names
(a :class:`RowProblem` naming the employee id), so the core keeps that person's last good record instead of taking
them as gone. They make no decision about who has left: a future termination date is passed
through as it is and the core decides.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import HRRead, Person, PersonStatus, RowProblem

FIELDS = ("employee_id", "email", "name", "status", "termination_date", "aliases")
REQUIRED_FIELDS = ("employee_id", "email", "name", "status", "termination_date")

# Lower-cased HR vocabulary -> our status. A `status_map` option extends it.
DEFAULT_STATUS_MAP: dict[str, PersonStatus] = {
    "active": PersonStatus.ACTIVE,
    "employed": PersonStatus.ACTIVE,
    "rehired": PersonStatus.ACTIVE,
    "on_leave": PersonStatus.ON_LEAVE,
    "on leave": PersonStatus.ON_LEAVE,
    "leave": PersonStatus.ON_LEAVE,
    "leave of absence": PersonStatus.ON_LEAVE,
    "terminated": PersonStatus.TERMINATED,
    "inactive": PersonStatus.TERMINATED,
    "separated": PersonStatus.TERMINATED,
}

HR_OPTIONS: dict[str, str] = {
    "path": "HR export file (relative paths are relative to the config file)",
    "columns": "table mapping our fields (employee_id, email, name, status, termination_date, aliases) "
    'to the export\'s header names, e.g. { employee_id = "Employee ID" }',
    "status_map": "table mapping the export's status words to active | on_leave | terminated",
    "timezone": "time zone for dates without an offset (default UTC); a date alone means midnight there",
    "alias_separator": 'separator inside the aliases column (default ";")',
}
JSON_OPTIONS: dict[str, str] = {
    **HR_OPTIONS,
    "path": "HR JSON file; give either path or url",
    "url": "HTTPS URL returning the JSON document (http:// only for loopback hosts)",
    "token_env": "environment variable holding a bearer token for url",
    "records_key": "key of the list of people when the document is an object (default: the "
    "document is the list, or the first list value found under employees/people/workers/data)",
    "timeout": 'HTTP timeout for url ("30s")',
}


@dataclass(frozen=True)
class _Settings:
    name: str
    columns: Mapping[str, str]
    status_map: Mapping[str, PersonStatus]
    tz: tzinfo
    alias_separator: str


def _settings(options: SourceOptions) -> _Settings:
    columns = {f: f for f in FIELDS}
    custom = options.str_map("columns")
    for key, header in custom.items():
        if key not in FIELDS:
            raise options.error(f"columns.{key}", f"unknown field (fields: {', '.join(FIELDS)})")
        columns[key] = header
    status_map = dict(DEFAULT_STATUS_MAP)
    for word, status in options.str_map("status_map").items():
        try:
            status_map[word.strip().lower()] = PersonStatus(status)
        except ValueError:
            raise options.error(
                f"status_map.{word}", f"must be active, on_leave or terminated, got {status!r}"
            ) from None
    tz_name = options.opt_str("timezone", "UTC") or "UTC"
    try:
        tz: tzinfo = UTC if tz_name.upper() == "UTC" else ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise options.error("timezone", f"unknown time zone {tz_name!r}") from None
    return _Settings(
        name=options.string("name"),
        columns=columns,
        status_map=status_map,
        tz=tz,
        alias_separator=options.opt_str("alias_separator", ";") or ";",
    )


class _RowError(ValueError):
    pass


def parse_termination(value: str, tz: tzinfo) -> datetime | None:
    """ISO date (midnight in ``tz``) or ISO date-time (naive ones are read in ``tz``)."""
    text = value.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=tz)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _RowError(f"termination_date {value!r} is not an ISO date (YYYY-MM-DD) or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _person_from_row(row: Mapping[str, Any], s: _Settings) -> Person:
    def field(name: str) -> str:
        value = row.get(s.columns[name])
        if value is None:
            return ""
        return str(value).strip()

    employee_id = field("employee_id")
    email = field("email").lower() or None
    if not employee_id and not email:
        raise _RowError("has neither employee_id nor email")
    if not employee_id:
        raise _RowError("has no employee_id")
    raw_status = field("status")
    status = s.status_map.get(raw_status.lower())
    if status is None:
        raise _RowError(f"unknown status {raw_status!r} (map it with status_map)")
    terminated_at = parse_termination(field("termination_date"), s.tz)
    if status is PersonStatus.TERMINATED and terminated_at is None:
        raise _RowError("status is terminated but termination_date is empty")
    if status is not PersonStatus.TERMINATED:
        # An active person with a past termination date was rehired: the date no longer applies.
        terminated_at = None
    aliases_raw = row.get(s.columns["aliases"])
    aliases: tuple[str, ...] = ()
    if isinstance(aliases_raw, list):
        aliases = tuple(str(a).strip() for a in aliases_raw if str(a).strip())
    elif aliases_raw:
        aliases = tuple(a.strip() for a in str(aliases_raw).split(s.alias_separator) if a.strip())
    return Person(
        employee_id=employee_id,
        email=email,
        name=field("name"),
        status=status,
        terminated_at=terminated_at,
        aliases=aliases,
        source=s.name,
    )


def _collect(rows: Iterable[tuple[int, Mapping[str, Any]]], s: _Settings, origin: str) -> HRRead:
    people: dict[str, Person] = {}
    first_line: dict[str, int] = {}
    conflicted: set[str] = set()
    problems: list[RowProblem] = []
    for line, row in rows:
        try:
            person = _person_from_row(row, s)
        except _RowError as exc:
            # The employee id (when the row has one) keeps that person's last good record.
            raw_id = row.get(s.columns["employee_id"])
            problems.append(
                RowProblem(line, f"{origin} line {line}: {exc}", str(raw_id).strip() if raw_id else "")
            )
            continue
        key = person.employee_id
        if key in people:
            if people[key] != person:
                conflicted.add(key)
                problems.append(
                    RowProblem(
                        line,
                        f"{origin} line {line}: employee_id {key!r} also on line {first_line[key]} "
                        "with different data; both skipped",
                        key,
                    )
                )
            continue
        people[key] = person
        first_line[key] = line
    for key in conflicted:
        del people[key]
    if not people:
        detail = f" ({len(problems)} bad rows)" if problems else ""
        raise SourceError(f"{origin}: no usable people{detail}; an empty HR read is a failed read")
    return HRRead(people=tuple(people.values()), problems=tuple(problems))


class CsvHRSource:
    """Reads an HR CSV export. Handles a UTF-8 BOM, CRLF line ends and stray whitespace."""

    def __init__(self, name: str, path: Path, settings: _Settings) -> None:
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
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            raise SourceError(f"HR file {self.path} is empty") from None
        header = [h.strip() for h in header]
        missing = [f for f in REQUIRED_FIELDS if self._s.columns[f] not in header]
        if missing:
            names = ", ".join(repr(self._s.columns[f]) for f in missing)
            raise ConfigError(
                f"HR file {self.path} has no column {names} (header: {', '.join(header)}); "
                "map other header names with the source's `columns` table",
                key=f"sources.{self.name}.columns",
            )

        def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                yield reader.line_num, dict(zip(header, values, strict=False))

        return _collect(rows(), self._s, str(self.path))


class JsonHRSource:
    """Reads HR records from a JSON file or an HTTPS endpoint (``GET url`` with a bearer token)."""

    def __init__(
        self,
        name: str,
        settings: _Settings,
        path: Path | None,
        url: str | None,
        token: str | None,
        records_key: str | None,
        timeout: float,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self._s = settings
        self.path = path
        self.url = url
        self._token = token
        self.records_key = records_key
        self.timeout = timeout
        self._client = client

    def _fetch(self) -> tuple[str, str]:
        if self.path is not None:
            try:
                return self.path.read_text(encoding="utf-8-sig"), str(self.path)
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"cannot read HR file {self.path}: {exc}") from None
        assert self.url is not None
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        client = self._client or httpx.Client(timeout=self.timeout)
        try:
            response = client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            raise SourceError(f"HR endpoint {self.url} unreachable: {exc}") from None
        finally:
            if self._client is None:
                client.close()
        if response.status_code != 200:
            raise SourceError(f"HR endpoint {self.url} answered HTTP {response.status_code}")
        return response.text, self.url

    def read_people(self) -> HRRead:
        text, origin = self._fetch()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{origin} is not valid JSON: {exc}") from None
        records = self._records(doc, origin)
        for required in REQUIRED_FIELDS:
            header = self._s.columns[required]
            if records and not any(isinstance(r, dict) and header in r for r in records):
                raise ConfigError(
                    f"HR records in {origin} have no key {header!r}; map it with the `columns` table",
                    key=f"sources.{self.name}.columns",
                )

        def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
            for index, record in enumerate(records, start=1):
                yield index, record if isinstance(record, dict) else {}

        return _collect(rows(), self._s, f"{origin} record")

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


def make_csv_source(options: SourceOptions, ctx: SourceContext) -> CsvHRSource:
    """Factory for ``type = "hr_csv"``."""
    settings = _settings(options)
    return CsvHRSource(settings.name, options.file_path("path"), settings)


def make_json_source(options: SourceOptions, ctx: SourceContext) -> JsonHRSource:
    """Factory for ``type = "hr_json"``. ``ctx.clients[name]`` may be an ``httpx.Client``."""
    settings = _settings(options)
    path = options.opt_file_path("path")
    url = options.opt_str("url")
    if (path is None) == (url is None):
        raise options.error("path", "give exactly one of path or url")
    if url is not None:
        parsed = urlparse(url)
        loopback = parsed.hostname in {"localhost", "::1"} or (parsed.hostname or "").startswith("127.")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise options.error("url", "must be https:// (http:// is accepted for loopback hosts only)")
    token = options.secret("token_env", ctx.env, required=False)
    client = ctx.clients.get(settings.name)
    return JsonHRSource(
        settings.name,
        settings,
        path,
        url,
        token,
        options.opt_str("records_key"),
        options.duration("timeout", timedelta(seconds=30)).total_seconds(),
        client if isinstance(client, httpx.Client) else None,
    )
