"""Out-of-range dates and oversized fields are bad rows, not failed reads or crashes (issue 17,
item 9); a file that is cut off or undecodable is still a failed read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.hr_records import make_csv_source, make_json_source
from connectors.hr_records.source import MAX_FIELD
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import EARLIEST_STORABLE, LATEST_STORABLE, HRRead, storable_time_problem

HEADER = "employee_id,email,name,status,termination_date,aliases"


def csv_read(tmp_path: Path, text: str, **opts: Any) -> HRRead:
    f = tmp_path / "hr.csv"
    f.write_text(text)
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f), **opts}, "sources[0]")
    read = make_csv_source(options, SourceContext(base_dir=tmp_path)).read_people()
    assert isinstance(read, HRRead)
    return read


@pytest.mark.parametrize(
    ("value", "zone"),
    [
        ("9999-12-31T20:00:00", "America/New_York"),  # year 10000 in UTC
        ("0001-01-01T00:00:00+05:00", "UTC"),  # year 0 in UTC
        ("0001-01-01", "America/New_York"),  # year 1, but no zone can read it back
    ],
)
def test_a_termination_date_that_cannot_be_stored_is_a_bad_row_with_its_line(
    tmp_path: Path, value: str, zone: str
) -> None:
    text = "\n".join(
        [
            HEADER,
            # Still employed: the date is not used, so a placeholder like this one is no problem.
            f"E1,a@example.com,A,active,{value},",
            f"E2,b@example.com,B,terminated,{value},",
            "E3,c@example.com,C,terminated,2026-01-10,",
        ]
    )
    read = csv_read(tmp_path, text + "\n", timezone=zone)
    assert sorted(p.employee_id for p in read.people) == ["E1", "E3"]
    assert next(p for p in read.people if p.employee_id == "E1").terminated_at is None
    (problem,) = read.problems
    assert problem.line == 3 and problem.employee_id == "E2"
    assert "line 3" in problem.message and value in problem.message and "out of range" in problem.message


def test_an_out_of_range_date_in_hr_json_is_a_bad_record_with_its_number(tmp_path: Path) -> None:
    doc = [
        {"employee_id": "E1", "email": "a@x.com", "name": "A", "status": "active", "termination_date": ""},
        {
            "employee_id": "E2",
            "email": "b@x.com",
            "name": "B",
            "status": "terminated",
            "termination_date": "9999-12-31T23:00:00-05:00",
        },
    ]
    f = tmp_path / "hr.json"
    f.write_text(json.dumps(doc))
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(f)}, "sources[0]")
    read = make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()
    assert [p.employee_id for p in read.people] == ["E1"]
    (problem,) = read.problems
    assert problem.line == 2 and problem.employee_id == "E2" and "out of range" in problem.message


def test_a_field_over_the_csv_limit_is_a_bad_row_and_the_rows_after_it_are_read_whole(tmp_path: Path) -> None:
    # A quoted field over the limit that spans lines: the csv module alone would fail the read,
    # or resume inside it and take its lines for rows (here, a line that looks like a person).
    huge = "\n".join(["E9,evil@example.com,Evil,terminated,2026-01-01,"] * 2) + "x" * MAX_FIELD
    text = "\n".join(
        [
            HEADER,
            "E1,a@example.com,A,active,,",
            f'E2,b@example.com,"{huge}",terminated,2026-01-10,',
            "E3,c@example.com,C,terminated,2026-01-10,",
            f"E4,d@example.com,{'n' * MAX_FIELD},active,,",  # exactly at the limit: fine
        ]
    )
    read = csv_read(tmp_path, text + "\n")
    assert sorted(p.employee_id for p in read.people) == ["E1", "E3", "E4"]
    (problem,) = read.problems
    assert problem.employee_id == "E2" and problem.line == 4  # the record ends on line 4
    assert f"longer than {MAX_FIELD}" in problem.message and "name" in problem.message


def test_a_csv_file_cut_off_inside_a_quoted_field_or_a_character_is_a_failed_read(tmp_path: Path) -> None:
    text = f'{HEADER}\nE1,a@example.com,A,active,,\nE2,b@example.com,"Bob, the\nE3,c@example.com,C,terminated,2026-01-10,\n'
    with pytest.raises(SourceError, match="cut off"):
        csv_read(tmp_path, text)
    f = tmp_path / "hr.csv"
    f.write_bytes(f"{HEADER}\nE1,a@example.com,".encode() + b"\xe2\x82")  # cut inside a character
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f)}, "sources[0]")
    with pytest.raises(SourceError, match="cannot read"):
        make_csv_source(options, SourceContext(base_dir=tmp_path)).read_people()


# --- the helper the webhook uses to answer 422 ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        datetime(9999, 12, 31, 20, tzinfo=ZoneInfo("America/New_York")),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        LATEST_STORABLE + timedelta(microseconds=1),
        EARLIEST_STORABLE - timedelta(microseconds=1),
    ],
)
def test_times_that_cannot_be_stored_and_read_back_in_every_zone_are_refused(value: datetime) -> None:
    problem = storable_time_problem(value)
    assert problem is not None and "out of range" in problem


def test_naive_times_are_refused_and_times_in_range_accepted() -> None:
    assert "no UTC offset" in (storable_time_problem(datetime(2026, 1, 1)) or "")
    for ok in (
        datetime(2026, 11, 28, 12, tzinfo=ZoneInfo("America/New_York")),
        datetime(9999, 12, 31, tzinfo=UTC),  # the usual "no end date" placeholder
        LATEST_STORABLE,
        EARLIEST_STORABLE,
    ):
        assert storable_time_problem(ok) is None
        for hours in (-15, 15):  # readable back in any session time zone
            ok.astimezone(timezone(timedelta(hours=hours, minutes=59)))
