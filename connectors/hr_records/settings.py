"""The ``hr_csv`` / ``hr_json`` source tables, parsed once into frozen values.

``HR_OPTIONS`` / ``JSON_OPTIONS`` list every key with its help text (``PLUGIN.options``: the
config loader rejects other keys and ``config check`` prints them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import PersonStatus

# manager_email (optional): who rotates what a leaver could carry away when the secret names no owner.
FIELDS = ("employee_id", "email", "name", "status", "termination_date", "aliases", "manager_email")
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
    "columns": "table mapping our fields (employee_id, email, name, status, termination_date, aliases, "
    "manager_email) "
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
    "max_pages": 'url only: follow the answer\'s Link rel="next" header for up to this many pages in all, '
    "from url's scheme, host and port only, each page read and checked as the first (default 1: an "
    "answer that names a next page, by that header or a key such as next or has_more, fails the read)",
}


@dataclass(frozen=True)
class HrSettings:
    """How rows are read, for both sources: column names, status words, time zone."""

    name: str
    columns: Mapping[str, str]
    status_map: Mapping[str, PersonStatus]
    tz: tzinfo
    alias_separator: str


@dataclass(frozen=True)
class JsonSettings:
    """Where an ``hr_json`` source reads from: exactly one of ``path`` and ``url``."""

    rows: HrSettings
    path: Path | None
    url: str | None
    records_key: str | None
    timeout: float
    # How many pages of url a read may take (Link rel="next"); 1: a paginated answer fails the read.
    max_pages: int = 1
    # repr=False: a settings object may end up in a log line or a traceback.
    token: str | None = field(default=None, repr=False)


def parse_settings(options: SourceOptions) -> HrSettings:
    """The row settings shared by ``hr_csv`` and ``hr_json``; every error names its key."""
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
    return HrSettings(
        name=options.string("name"),
        columns=columns,
        status_map=status_map,
        tz=tz,
        alias_separator=options.opt_str("alias_separator", ";") or ";",
    )


def parse_json_settings(options: SourceOptions, ctx: SourceContext) -> JsonSettings:
    """``hr_json``: the row settings plus the file or URL (https only, but for loopback hosts)."""
    rows = parse_settings(options)
    path = options.opt_file_path("path")
    url = options.opt_str("url")
    if (path is None) == (url is None):
        raise options.error("path", "give exactly one of path or url")
    if url is not None:
        parsed = urlparse(url)
        loopback = parsed.hostname in {"localhost", "::1"} or (parsed.hostname or "").startswith("127.")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise options.error("url", "must be https:// (http:// is accepted for loopback hosts only)")
    max_pages = options.integer("max_pages", 1, minimum=1)
    if path is not None and "max_pages" in options:
        raise options.error("max_pages", "follows the pages of url; a file has one")
    token = options.secret("token_env", ctx.env, required=False)
    return JsonSettings(
        rows=rows,
        path=path,
        url=url,
        records_key=options.opt_str("records_key"),
        timeout=options.duration("timeout", timedelta(seconds=30)).total_seconds(),
        max_pages=max_pages,
        token=token,
    )
