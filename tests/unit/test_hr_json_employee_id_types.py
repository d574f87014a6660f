"""An ``hr_json`` employee id is a string or an integer, nothing else.

Python's ``json`` reads ``NaN`` and ``Infinity``, and the row was read with ``str(value)``: a record
with ``"employee_id": NaN`` became the person "nan", ``1e20`` the person "1e+20", ``true`` the person
"True". Such a record is a bad row saying what it held and naming nobody (no stored person has
such an id); the rest of the feed is read as with any bad row. Integer ids are read as their digits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.hr_records import make_json_source
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import HRRead


def record(eid: str, email: str, status: str = "active") -> str:
    """One record, with ``eid`` written as raw JSON (``NaN``, ``7``, ``"E1"``)."""
    return (
        f'{{"employee_id": {eid}, "email": "{email}@example.com", "name": "P",'
        f' "status": "{status}", "termination_date": ""}}'
    )


def json_read(tmp_path: Path, *records: str) -> HRRead:
    f = tmp_path / "hr.json"
    f.write_text("[" + ", ".join(records) + "]")
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(f)}, "sources[0]")
    return make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()


@pytest.mark.parametrize(
    ("written", "named"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e20", "1e+20"),
        ("7.0", "7.0"),
        ("true", "true"),
        ("false", "false"),
        ('{"id": "E9"}', "an object"),
        ('["E9"]', "a list"),
    ],
)
def test_an_employee_id_that_is_not_a_string_or_an_integer_is_a_bad_row_saying_what_it_got(
    tmp_path: Path, written: str, named: str
) -> None:
    read = json_read(tmp_path, record('"E1"', "a"), record(written, "b"), record('"E3"', "c"))
    assert [p.employee_id for p in read.people] == ["E1", "E3"]
    assert [(p.line, p.message, p.employee_id) for p in read.problems] == [
        (
            2,
            f"{tmp_path / 'hr.json'} record line 2: employee_id must be a string or an integer, got {named}",
            "",
        )
    ]


def test_an_integer_employee_id_is_read_as_its_digits(tmp_path: Path) -> None:
    read = json_read(tmp_path, record("7", "a"), record("0", "b"), record('"E3"', "c"))
    assert [p.employee_id for p in read.people] == ["7", "0", "E3"]
    assert read.problems == ()


def test_a_bad_row_with_an_integer_employee_id_names_that_employee(tmp_path: Path) -> None:
    # Id 0 too: the bad row keeps person "0"'s last good record (it was dropped as falsy).
    read = json_read(tmp_path, record("0", "a", status="retired"), record('"E3"', "c"))
    assert [(p.line, p.employee_id) for p in read.problems] == [(1, "0")]


def test_a_record_with_a_repeated_key_and_an_integer_employee_id_names_that_employee(tmp_path: Path) -> None:
    twice = json.dumps({"employee_id": 7, "email": "s@example.com"})[:-1] + ', "status": "x", "status": "y"}'
    read = json_read(tmp_path, twice, record('"E3"', "c"))
    assert [(p.line, p.employee_id) for p in read.problems] == [(1, "7")]
