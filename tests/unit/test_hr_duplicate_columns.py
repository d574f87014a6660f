"""An HR export that names one of the columns the source reads twice is not read by guesswork.

A CSV header with ``status`` twice (an export that appended another system's status, a join that
repeated a column) put both values under one name, and the reader silently took the last: a leaver
whose first ``status`` says terminated was read as active, their termination hidden. Which column
is HR's word cannot be told, so the read fails (nothing is revoked, nothing resolved) and says
which column. A column the source does not read may repeat. In a JSON document (whose parser also
keeps the last of repeated keys) the record is a bad row naming its employee: the core keeps that
person's last good record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hr_records import make_csv_source, make_json_source
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import HRRead, PersonStatus


def csv_read(tmp_path: Path, text: str) -> HRRead:
    f = tmp_path / "hr.csv"
    f.write_text(text)
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f)}, "sources[0]")
    return make_csv_source(options, SourceContext(base_dir=tmp_path)).read_people()


def test_a_csv_header_naming_the_status_column_twice_fails_the_read(tmp_path: Path) -> None:
    text = (
        "employee_id,email,name,status,termination_date,status\n"
        "E1,alice@example.com,Alice,terminated,2026-01-15,active\n"
        "E2,bob@example.com,Bob,active,,active\n"
    )
    with pytest.raises(SourceError, match=r"column 'status' more than once"):
        csv_read(tmp_path, text)


def test_a_csv_header_naming_a_column_twice_after_trimming_fails_the_read(tmp_path: Path) -> None:
    # Header names are read trimmed: " employee_id" is the employee_id column again.
    text = (
        "employee_id,email,name,status,termination_date, employee_id\n"
        "E1,alice@example.com,Alice,terminated,2026-01-15,E9\n"
    )
    with pytest.raises(SourceError, match=r"column 'employee_id' more than once"):
        csv_read(tmp_path, text)


def test_a_repeated_column_the_source_does_not_read_is_harmless(tmp_path: Path) -> None:
    text = (
        "employee_id,email,name,status,termination_date,note,note\n"
        "E1,alice@example.com,Alice,terminated,2026-01-15,x,y\n"
    )
    (alice,) = csv_read(tmp_path, text).people
    assert alice.status is PersonStatus.TERMINATED


def json_read(tmp_path: Path, text: str) -> HRRead:
    f = tmp_path / "hr.json"
    f.write_text(text)
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(f)}, "sources[0]")
    return make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()


def test_a_json_record_with_the_status_key_twice_is_a_bad_row_naming_its_employee(tmp_path: Path) -> None:
    # JSON parsers keep the last of repeated keys: alice's "terminated" was read as "active".
    text = (
        '[{"employee_id": "E1", "email": "alice@example.com", "name": "Alice", "status": "terminated",'
        ' "termination_date": "2026-01-15", "status": "active"},'
        ' {"employee_id": "E2", "email": "bob@example.com", "name": "Bob", "status": "active",'
        ' "termination_date": ""}]'
    )
    read = json_read(tmp_path, text)
    assert [p.employee_id for p in read.people] == ["E2"]
    (problem,) = read.problems
    assert problem.employee_id == "E1"  # the core keeps alice's last good record
    assert "'status' more than once" in problem.message and "record line 1" in problem.message


def test_a_json_record_with_its_employee_id_twice_names_nobody(tmp_path: Path) -> None:
    text = (
        '[{"employee_id": "E1", "email": "alice@example.com", "name": "Alice", "status": "terminated",'
        ' "termination_date": "2026-01-15", "employee_id": "E9"},'
        ' {"employee_id": "E2", "email": "bob@example.com", "name": "Bob", "status": "active",'
        ' "termination_date": ""}]'
    )
    read = json_read(tmp_path, text)
    assert [p.employee_id for p in read.people] == ["E2"]
    (problem,) = read.problems
    assert problem.employee_id == "" and "'employee_id' more than once" in problem.message


def test_a_repeated_json_key_the_source_does_not_read_is_harmless(tmp_path: Path) -> None:
    text = (
        '[{"employee_id": "E1", "email": "alice@example.com", "name": "Alice", "status": "terminated",'
        ' "termination_date": "2026-01-15", "note": "x", "note": "y"}]'
    )
    (alice,) = json_read(tmp_path, text).people
    assert alice.status is PersonStatus.TERMINATED
