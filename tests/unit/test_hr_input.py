"""HR input details the core's trust depends on: the configured time zone, JSON documents that
are not a list of people, and bad rows that name the employee they belong to."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.hr_records import make_csv_source, make_json_source
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

HEADER = "employee_id,email,name,status,termination_date,aliases"


def csv_read(tmp_path: Path, rows: list[str], **opts: Any) -> Any:
    f = tmp_path / "hr.csv"
    f.write_text("\n".join([HEADER, *rows]) + "\n")
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f), **opts}, "sources[0]")
    return make_csv_source(options, SourceContext(base_dir=tmp_path)).read_people()


def json_source(tmp_path: Path, text: str, **opts: Any) -> Any:
    f = tmp_path / "hr.json"
    f.write_text(text)
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(f), **opts}, "sources[0]")
    return make_json_source(options, SourceContext(base_dir=tmp_path))


@pytest.mark.parametrize(
    ("zone", "value", "expected_utc"),
    [
        ("Europe/Berlin", "2026-09-30", datetime(2026, 9, 29, 22, 0, tzinfo=UTC)),  # CEST, +02:00
        ("Europe/Berlin", "2026-01-15", datetime(2026, 1, 14, 23, 0, tzinfo=UTC)),  # CET, +01:00
        ("America/New_York", "2026-01-15T17:30:00", datetime(2026, 1, 15, 22, 30, tzinfo=UTC)),
        ("Asia/Tokyo", "2026-03-01T08:00", datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),
        # An explicit offset is taken as written, whatever the zone.
        ("Asia/Tokyo", "2026-03-01T08:00:00+00:00", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        ("UTC", "2026-09-30", datetime(2026, 9, 30, 0, 0, tzinfo=UTC)),
    ],
)
def test_dates_without_an_offset_are_read_in_the_configured_time_zone(
    tmp_path: Path, zone: str, value: str, expected_utc: datetime
) -> None:
    (p,) = csv_read(tmp_path, [f"E1,a@example.com,A,terminated,{value},"], timezone=zone).people
    assert p.terminated_at == expected_utc


def test_json_dates_without_an_offset_are_read_in_the_configured_time_zone(tmp_path: Path) -> None:
    doc = [
        {
            "employee_id": "E1",
            "email": "a@x.com",
            "name": "A",
            "status": "terminated",
            "termination_date": "2026-07-01",
        }
    ]
    (p,) = json_source(tmp_path, json.dumps(doc), timezone="America/Los_Angeles").read_people().people
    assert p.terminated_at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["{not json", '[{"employee_id": "E1",', "", "\ufffe"])
def test_hr_json_that_is_not_json_is_a_failed_read_saying_so(tmp_path: Path, text: str) -> None:
    with pytest.raises(SourceError, match="is not valid JSON"):
        json_source(tmp_path, text).read_people()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("42", "int"),
        ('"people"', "str"),
        ("null", "NoneType"),
        ('{"employees": {"E1": {}}}', "dict"),
        ('{"count": 3, "next": null}', "dict"),
    ],
)
def test_hr_json_that_is_not_a_list_of_people_is_a_failed_read_saying_so(
    tmp_path: Path, text: str, kind: str
) -> None:
    with pytest.raises(SourceError, match=f"expected a list of people .*got {kind}"):
        json_source(tmp_path, text).read_people()


def test_hr_json_records_key_pointing_at_no_list_is_a_failed_read(tmp_path: Path) -> None:
    text = json.dumps({"workers": [{"employee_id": "E1"}], "people": "none"})
    with pytest.raises(SourceError, match="expected a list of people"):
        json_source(tmp_path, text, records_key="people").read_people()


def test_bad_rows_name_the_employee_so_their_last_good_record_is_kept(tmp_path: Path) -> None:
    read = csv_read(
        tmp_path,
        [
            "E1,a@example.com,A,active,,",
            "E2,b@example.com,B,terminated,31/05/2026,",
            "E3,c@example.com,C,retired,,",
            ",d@example.com,D,active,,",
            "E5,e@example.com,E,active,,",
            "E5,e2@example.com,E,active,,",
        ],
    )
    assert [p.employee_id for p in read.people] == ["E1"]
    assert sorted((p.line, p.employee_id) for p in read.problems) == [
        (3, "E2"),
        (4, "E3"),
        (5, ""),
        (7, "E5"),
    ]
