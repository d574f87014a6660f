"""HR rows -> :class:`Person` records. Pure: no I/O, no decision about who has left.

Every bad row becomes a :class:`RowProblem` with its line (CSV) or record number (JSON) and
the employee id it names, so the core keeps that person's last good record instead of taking
them as gone. A future termination date is passed through as it is: the core decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any

from connectors.hr_records.settings import HrSettings
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import (
    HRRead,
    Person,
    PersonStatus,
    RowProblem,
    canonical_identifier,
    storable_time_problem,
)


class RowError(ValueError):
    """One row cannot become a person; the message says why."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row the reader already knows is bad (a field over the CSV limit), with the employee id
    it names ("" when unknown)."""

    error: str
    employee_id: str = ""


# A date with its own offset and no time (XML Schema's xs:date, as some HR exports write it):
# midnight at that offset. Python 3.11's fromisoformat takes any character after the date as the
# date/time separator, so "2026-01-15+05:00" would otherwise read as 05:00 in the configured zone.
_DATE_WITH_OFFSET = re.compile(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})")


def parse_termination(value: str, tz: tzinfo) -> datetime | None:
    """ISO date (midnight in ``tz``), a date with an offset (midnight there) or an ISO
    date-time (``T`` or a space between date and time; naive ones are read in ``tz``)."""
    text = value.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=tz)
        if dated := _DATE_WITH_OFFSET.fullmatch(text):
            day, offset = dated.groups()
            text = f"{day}T00:00:00{offset}"
        elif len(text) > 10 and text[4] == "-" and text[10] not in "T ":
            raise ValueError(text)  # "2026-01-15/08:00" is not a date-time either
        parsed = datetime.fromisoformat(text)  # reads "Z" as UTC itself (Python 3.11+)
    except ValueError:
        raise RowError(f"termination_date {value!r} is not an ISO date (YYYY-MM-DD) or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


# A lone UTF-16 surrogate: JSON may carry one ("\\ud800"), but it is not text. No database can
# store it as UTF-8, nor a terminal print it: kept, it failed the whole audit when the people
# were saved.
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_of(value: str, name: str) -> str:
    """``value`` if it is text; raises :class:`RowError` for a lone UTF-16 surrogate in it."""
    if _SURROGATE.search(value):
        raise RowError(f"{name} holds a lone UTF-16 surrogate, which is not text: {value!r}")
    return value


def is_employee_id(value: Any) -> bool:
    """Whether a cell can be an employee id: text (every CSV cell), or a JSON integer."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _json_kind(value: Any) -> str:
    """``value`` as the JSON it was read from ("NaN", "1e+20", "true", "an object")."""
    if isinstance(value, bool | float):
        return json.dumps(value)  # NaN, Infinity, -Infinity and 1e+20 as written
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def person_from_row(row: Mapping[str, Any], s: HrSettings) -> Person:
    """One row (header name -> value) as a Person; raises :class:`RowError`."""

    def field(name: str) -> str:
        value = row.get(s.columns[name])
        if value is None:
            return ""
        return text_of(str(value).strip(), name)

    raw_id = row.get(s.columns["employee_id"])
    if raw_id is not None and not is_employee_id(raw_id):
        # A float is no id: JSON NaN (which Python's json reads) became the person "nan", 1e20
        # the person "1e+20", and true the person "True".
        raise RowError(f"employee_id must be a string or an integer, got {_json_kind(raw_id)}")
    # Identifiers in one Unicode form (core.records.canonical_identifier): matching compares them
    # as strings, so a zero-width space or a decomposed accent would hide who shares an address.
    employee_id = canonical_identifier(field("employee_id"))
    email = canonical_identifier(field("email")).lower() or None
    if not employee_id and not email:
        raise RowError("has neither employee_id nor email")
    if not employee_id:
        raise RowError("has no employee_id")
    raw_status = field("status")
    status = s.status_map.get(raw_status.lower())
    if status is None:
        raise RowError(f"unknown status {raw_status!r} (map it with status_map)")
    terminated_at = parse_termination(field("termination_date"), s.tz)
    if status is PersonStatus.TERMINATED and terminated_at is None:
        raise RowError("status is terminated but termination_date is empty")
    if status is not PersonStatus.TERMINATED:
        # An active person with a past termination date was rehired: the date no longer applies
        # (nor does a placeholder such as 9999-12-31, which is never stored).
        terminated_at = None
    elif terminated_at is not None and (problem := storable_time_problem(terminated_at)) is not None:
        # Would overflow on insert (or on every later read) and fail the whole audit.
        raise RowError(f"termination_date {field('termination_date')!r}: {problem}")
    aliases_raw = row.get(s.columns["aliases"])
    aliases: tuple[str, ...] = ()
    if isinstance(aliases_raw, list):
        listed = [text_of(str(a), "aliases") for a in aliases_raw]
    elif aliases_raw:
        listed = text_of(str(aliases_raw), "aliases").split(s.alias_separator)
    else:
        listed = []
    aliases = tuple(a for a in map(canonical_identifier, listed) if a)
    return Person(
        employee_id=employee_id,
        email=email,
        name=field("name"),
        status=status,
        terminated_at=terminated_at,
        aliases=aliases,
        source=s.name,
        manager_email=canonical_identifier(field("manager_email")).lower() or None,
    )


def people_from_rows(
    rows: Iterable[tuple[int, Mapping[str, Any] | BadRow]], s: HrSettings, origin: str
) -> HRRead:
    """Every good row as a person, every bad one as a problem; no usable row is a failed read."""
    people: dict[str, Person] = {}
    first_line: dict[str, int] = {}
    conflicted: set[str] = set()
    problems: list[RowProblem] = []
    # Employee ids with a row that cannot be read: the line of the first such row.
    bad_line: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, BadRow):
            bad_id = canonical_identifier(row.employee_id)
            problems.append(RowProblem(line, f"{origin} line {line}: {row.error}", bad_id))
            if bad_id:
                bad_line.setdefault(bad_id, line)
            continue
        try:
            person = person_from_row(row, s)
        except RowError as exc:
            # The employee id (when the row has one) keeps that person's last good record.
            raw_id = row.get(s.columns["employee_id"])
            eid = canonical_identifier(str(raw_id)) if is_employee_id(raw_id) else ""
            # An id that is not text names no stored person (none could be stored).
            eid = "" if _SURROGATE.search(eid) else eid
            problems.append(RowProblem(line, f"{origin} line {line}: {exc}", eid))
            if eid:
                bad_line.setdefault(eid, line)
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
    # A readable row beside an unreadable one for the same id is a conflict too: the unreadable
    # row may say something else (a termination with a date in another format), so neither
    # stands in for the person and their last good record is kept.
    for key in sorted((people.keys() & bad_line.keys()) - conflicted):
        conflicted.add(key)
        problems.append(
            RowProblem(
                first_line[key],
                f"{origin} line {first_line[key]}: employee_id {key!r} also on line {bad_line[key]}, "
                "which cannot be read; both skipped",
                key,
            )
        )
    for key in conflicted:
        del people[key]
    if not people:
        detail = f" ({len(problems)} bad rows)" if problems else ""
        raise SourceError(f"{origin}: no usable people{detail}; an empty HR read is a failed read")
    return HRRead(people=tuple(people.values()), problems=tuple(problems))
