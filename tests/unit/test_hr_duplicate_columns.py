"""An HR export that names one of the columns the source reads twice is not read by guesswork.

A CSV header with ``status`` twice (an export that appended another system's status, a join that
repeated a column) put both values under one name, and the reader silently took the last: a leaver
whose first ``status`` says terminated was read as active, their termination hidden. Which column
is HR's word cannot be told, so the read fails (nothing is revoked, nothing resolved) and says
which column. A column the source does not read may repeat.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hr_records import make_csv_source
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
