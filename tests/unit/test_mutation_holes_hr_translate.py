"""Mutation holes in the HR row translation (connectors/hr_records/translate.py): which
termination date strings are date-times, which rows become people, the exact message and
employee id of every bad row, and the message of a read with nobody usable in it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.hr_records.settings import DEFAULT_STATUS_MAP, FIELDS, HrSettings
from connectors.hr_records.translate import RowError, parse_termination, people_from_rows, person_from_row
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import PersonStatus, RowProblem

BERLIN = ZoneInfo("Europe/Berlin")


def settings(tz: Any = UTC) -> HrSettings:
    return HrSettings(
        name="hr",
        columns={f: f for f in FIELDS},
        status_map=dict(DEFAULT_STATUS_MAP),
        tz=tz,
        alias_separator=";",
    )


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "employee_id": "E1",
        "email": "a@x.io",
        "name": "A",
        "status": "active",
        "termination_date": "",
    }
    base.update(values)
    return {k: v for k, v in base.items() if v is not ...}


def numbered(*rows: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i + 2, r) for i, r in enumerate(rows)]


# --- parse_termination ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tz", "expected_utc"),
    [
        # xs:date with an offset: midnight at that offset, whatever the configured zone.
        ("2026-01-15+05:00", UTC, datetime(2026, 1, 14, 19, 0, tzinfo=UTC)),
        ("2026-01-15-08:00", BERLIN, datetime(2026, 1, 15, 8, 0, tzinfo=UTC)),
        ("2026-01-15Z", BERLIN, datetime(2026, 1, 15, 0, 0, tzinfo=UTC)),
        # Without an offset the configured zone still decides.
        ("2026-01-15", BERLIN, datetime(2026, 1, 14, 23, 0, tzinfo=UTC)),
        ("2026-01-15 10:00", BERLIN, datetime(2026, 1, 15, 9, 0, tzinfo=UTC)),
    ],
)
def test_a_date_with_an_offset_is_midnight_at_that_offset_not_a_clock_time(
    text: str, tz: Any, expected_utc: datetime
) -> None:
    parsed = parse_termination(text, tz)
    assert parsed is not None
    assert parsed == expected_utc


@pytest.mark.parametrize("text", ["2026-01-15/08:00", "2026-01-15x10:00", "2026-01-15+5"])
def test_a_date_followed_by_anything_but_a_time_or_an_offset_is_a_bad_date(text: str) -> None:
    with pytest.raises(RowError, match="is not an ISO date"):
        parse_termination(text, UTC)


def test_an_eleven_character_basic_iso_date_time_is_that_hour_in_the_configured_zone() -> None:
    # "20260115T09" is a date-time (basic ISO format, hour only), not a date: only 10 characters
    # are read as a date alone.
    assert parse_termination("20260115T09", BERLIN) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def test_a_lowercase_z_suffix_is_not_read_as_utc_but_rejected_as_a_bad_date() -> None:
    with pytest.raises(RowError) as exc:
        parse_termination("2026-01-15T17:30:00z", BERLIN)
    assert str(exc.value) == (
        "termination_date '2026-01-15T17:30:00z' is not an ISO date (YYYY-MM-DD) or date-time"
    )


def test_an_uppercase_z_suffix_is_utc_whatever_the_configured_zone() -> None:
    assert parse_termination("2026-01-15T17:30:00Z", BERLIN) == datetime(2026, 1, 15, 17, 30, tzinfo=UTC)


# --- person_from_row -----------------------------------------------------------------------


def test_a_row_with_an_employee_id_but_no_email_is_a_person_without_email() -> None:
    p = person_from_row(row(email=""), settings())
    assert (p.employee_id, p.email, p.status) == ("E1", None, PersonStatus.ACTIVE)


def test_a_row_with_an_email_but_no_employee_id_is_a_problem_saying_so() -> None:
    with pytest.raises(RowError) as exc:
        person_from_row(row(employee_id=" "), settings())
    assert str(exc.value) == "has no employee_id"


def test_a_terminated_row_without_a_date_is_a_problem_saying_so() -> None:
    with pytest.raises(RowError) as exc:
        person_from_row(row(status="terminated", termination_date=""), settings())
    assert str(exc.value) == "status is terminated but termination_date is empty"


def test_blank_entries_of_a_json_alias_list_are_dropped() -> None:
    p = person_from_row(row(aliases=[" ann ", "", "  ", "a.lee"]), settings())
    assert p.aliases == ("ann", "a.lee")


# --- people_from_rows ----------------------------------------------------------------------


def test_a_bad_row_without_an_employee_id_field_names_no_employee() -> None:
    # A JSON record with no employee_id key at all: the problem names nobody (not "None").
    result = people_from_rows(numbered(row(), row(employee_id=...)), settings(), "hr.json")
    assert result.problems == (RowProblem(3, "hr.json line 3: has no employee_id", ""),)


def test_a_bad_row_with_an_employee_id_names_it_for_keeping_their_last_good_record() -> None:
    result = people_from_rows(
        numbered(row(), row(employee_id=" E2 ", status="retired")), settings(), "hr.csv"
    )
    assert result.problems == (
        RowProblem(3, "hr.csv line 3: unknown status 'retired' (map it with status_map)", "E2"),
    )


def test_conflicting_duplicates_are_both_skipped_with_a_problem_saying_so_and_later_rows_still_read() -> None:
    rows = numbered(
        row(employee_id="E1", name="Ann"),
        row(employee_id="E1", name="Anne"),  # same id, different data
        row(employee_id="E2", email="b@x.io", name="Bo"),
        row(employee_id="E2", email="b@x.io", name="Bo"),  # exact duplicate: kept once, no problem
        row(employee_id="E3", email="c@x.io", name="Cy"),
    )
    result = people_from_rows(rows, settings(), "hr.csv")
    assert [p.employee_id for p in result.people] == ["E2", "E3"]
    assert result.problems == (
        RowProblem(
            3, "hr.csv line 3: employee_id 'E1' also on line 2 with different data; both skipped", "E1"
        ),
    )


def test_an_empty_read_is_a_failed_read_without_a_bad_row_count() -> None:
    with pytest.raises(SourceError) as exc:
        people_from_rows([], settings(), "hr.csv")
    assert str(exc.value) == "hr.csv: no usable people; an empty HR read is a failed read"


def test_a_read_of_only_bad_rows_is_a_failed_read_counting_them() -> None:
    with pytest.raises(SourceError) as exc:
        people_from_rows(numbered(row(status="retired"), row(email="", employee_id="")), settings(), "hr.csv")
    assert str(exc.value) == "hr.csv: no usable people (2 bad rows); an empty HR read is a failed read"
