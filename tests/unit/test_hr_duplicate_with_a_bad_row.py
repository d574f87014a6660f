"""An employee id listed twice, once readable and once not, is a conflict like two readable rows
that differ: the readable row must not stand in for the person while the other row may say
something else (a termination with a date in the wrong format, say). Read through the CSV source's
own parser and merged with :func:`merge_hr_read`, as a full HR read is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.hr_records.source import CsvHRSource
from offboard_audit.core.people import merge_hr_read
from offboard_audit.core.records import PersonStatus
from offboard_audit.core.stored import PersonState
from tests.unit.test_mutation_holes_hr_translate import settings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HEADER = "employee_id,email,name,status,termination_date\n"
ACTIVE = "E1,ann@example.com,Ann,active,\n"
TERMINATED_BAD_DATE = "E1,ann@example.com,Ann,terminated,15/05/2026\n"
OTHERS = "E2,bo@example.com,Bo,active,\n"


def read(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    result = CsvHRSource("hr", Path("hr.csv"), settings()).parse(text)
    return sorted(p.employee_id for p in result.people), [(p.line, p.employee_id) for p in result.problems]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(ACTIVE + TERMINATED_BAD_DATE, id="readable-row-first"),
        pytest.param(TERMINATED_BAD_DATE + ACTIVE, id="unreadable-row-first"),
    ],
)
def test_a_readable_row_whose_employee_id_also_has_an_unreadable_row_is_skipped(rows: str) -> None:
    people, problems = read(HEADER + rows + OTHERS)
    assert people == ["E2"]
    assert sorted(problems) == [(2, "E1"), (3, "E1")]


def test_a_leaver_is_not_rehired_by_an_old_row_beside_an_unreadable_one() -> None:
    previous = CsvHRSource("hr", Path("hr.csv"), settings()).parse(
        HEADER + "E1,ann@example.com,Ann,terminated,2026-05-15\n" + OTHERS
    )
    stored = [PersonState(p, p, None, "hr:hr run r0") for p in previous.people]
    ann = next(s.person for s in stored if s.person.employee_id == "E1")
    assert ann.status is PersonStatus.TERMINATED

    now = CsvHRSource("hr", Path("hr.csv"), settings()).parse(HEADER + ACTIVE + TERMINATED_BAD_DATE + OTHERS)
    merged = merge_hr_read("hr", stored, now, NOW + timedelta(days=1), "hr:hr run r1")

    after = {p.employee_id: p for p in merged.people}
    # Her last good record stands: still terminated, her findings stay open.
    assert after["E1"] == ann
    assert merged.kept_bad_rows == ("E1",)
