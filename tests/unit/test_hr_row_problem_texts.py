"""The exact texts and lines of the HR row problems added this round: what an operator reads in
the audit's warnings to find and fix the row. Pure: :func:`people_from_rows` on raw rows."""

from __future__ import annotations

import pytest

from connectors.hr_records.translate import BadRow, people_from_rows
from tests.unit.test_mutation_holes_hr_translate import settings


def row(
    eid: str, name: str = "Ann", status: str = "active", date: str = "", **extra: object
) -> dict[str, object]:
    return {
        "employee_id": eid,
        "email": f"{eid.lower()}@example.com",
        "name": name,
        "status": status,
        "termination_date": date,
        **extra,
    }


def test_a_readable_row_beside_a_row_the_reader_refused_is_a_conflict_naming_both_lines() -> None:
    read = people_from_rows(
        [(2, row("E1")), (3, BadRow("a field is over the size limit", "E1")), (4, row("E2"))],
        settings(),
        "hr.csv",
    )
    assert [p.employee_id for p in read.people] == ["E2"]
    assert [(p.line, p.message, p.employee_id) for p in read.problems] == [
        (3, "hr.csv line 3: a field is over the size limit", "E1"),
        (2, "hr.csv line 2: employee_id 'E1' also on line 3, which cannot be read; both skipped", "E1"),
    ]


def test_the_conflict_names_the_first_unreadable_line_of_that_id() -> None:
    read = people_from_rows(
        [
            (5, row("E1", status="terminated", date="15/05/2026")),
            (6, row("E1")),
            (7, BadRow("too long", "E1")),
            (8, row("E2")),
        ],
        settings(),
        "hr.csv",
    )
    assert [p.employee_id for p in read.people] == ["E2"]
    conflict = [p for p in read.problems if "also on line" in p.message]
    assert [(p.line, p.message) for p in conflict] == [
        (6, "hr.csv line 6: employee_id 'E1' also on line 5, which cannot be read; both skipped")
    ]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("name", "Ann\ud800", "name"),
        ("email", "ann\udfff@example.com", "email"),
        ("aliases", ["ann", "a\ud800"], "aliases"),
        ("aliases", "ann;a\ud800", "aliases"),
    ],
)
def test_a_lone_surrogate_is_a_row_problem_naming_the_field_and_showing_the_value_escaped(
    field: str, value: object, named: str
) -> None:
    bad = row("E1")
    bad[field] = value
    read = people_from_rows([(2, bad), (3, row("E2"))], settings(), "hr.json")
    assert [p.employee_id for p in read.people] == ["E2"]
    ((line, message, eid),) = [(p.line, p.message, p.employee_id) for p in read.problems]
    shown = "a\\ud800" if field == "aliases" else repr(value if field != "email" else "ann\udfff@example.com")
    assert (line, eid) == (2, "E1")
    assert message.startswith(f"hr.json line 2: {named} holds a lone UTF-16 surrogate, which is not text: ")
    assert shown.strip("'") in message
    assert "\ud800" not in message and "\udfff" not in message  # printable: shown as an escape


def test_an_employee_id_that_is_not_text_names_nobody() -> None:
    # No stored person can have such an id, and the problem is printed: it carries no id at all.
    read = people_from_rows([(2, row("E\ud8001")), (3, row("E2"))], settings(), "hr.json")
    assert [p.employee_id for p in read.people] == ["E2"]
    assert [(p.line, p.employee_id) for p in read.problems] == [(2, "")]
