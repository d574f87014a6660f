"""Mutation holes in the HR CSV parser (issue 10, batch 5): exact messages and line numbers of
every failed read and bad row, the header checks, rows shorter or longer than the header, blank
rows, CRLF inside quoted fields and the per-row field limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.hr_records import make_csv_source
from connectors.hr_records.source import MAX_FIELD, CsvHRSource
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import HRRead, PersonStatus, RowProblem

HEADER = "employee_id,email,name,status,termination_date,aliases"
SHORT_COLUMNS = {"employee_id": "id", "email": "em", "name": "nm", "status": "st", "termination_date": "td"}


def csv_source(tmp_path: Path, text: str, **opts: Any) -> CsvHRSource:
    f = tmp_path / "hr.csv"
    f.write_bytes(text.encode("utf-8"))
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f), **opts}, "sources[0]")
    return make_csv_source(options, SourceContext(base_dir=tmp_path))


def read(tmp_path: Path, text: str, **opts: Any) -> HRRead:
    result = csv_source(tmp_path, text, **opts).read_people()
    assert isinstance(result, HRRead)
    return result


def test_missing_columns_are_one_config_error_naming_each_the_header_and_the_columns_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hr.csv"
    with pytest.raises(ConfigError) as exc:
        read(tmp_path, " employee_id , email ,name\nE1,a@x.io,A\n")
    assert exc.value.message == (
        f"HR file {path} has no column 'status', 'termination_date' (header: employee_id, email, name); "
        "map other header names with the source's `columns` table"
    )
    assert exc.value.key == "sources.hr.columns"


def test_parse_keeps_a_crlf_or_lone_cr_inside_a_quoted_field_as_given(tmp_path: Path) -> None:
    # parse() itself translates no line ends (read_people's read_text already turned them into \n)
    text = f'{HEADER}\r\nE1,a@x.io,"Ann\r\nLee",active,,\r\nE2,b@x.io,"Bo\rB",active,,\r\n'
    ann, bo = csv_source(tmp_path, "").parse(text).people
    assert (ann.name, bo.name) == ("Ann\r\nLee", "Bo\rB")


def test_parse_reads_records_ended_by_a_lone_cr_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    text = f"{HEADER}\rE1,a@x.io,A,active,,\rE2,b@x.io,B,retired,,\r"
    result = csv_source(tmp_path, "").parse(text)
    assert [p.employee_id for p in result.people] == ["E1"]
    assert result.problems == (
        RowProblem(3, f"{path} line 3: unknown status 'retired' (map it with status_map)", "E2"),
    )


def test_bad_rows_name_the_file_and_line_in_their_message(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    text = f"{HEADER}\nE1,a@x.io,A,active,,\n\nE3,c@x.io,C,retired,,\nE4,d@x.io,{'n' * (MAX_FIELD + 1)},active,,\n"
    result = read(tmp_path, text)
    assert result.problems == (
        RowProblem(4, f"{path} line 4: unknown status 'retired' (map it with status_map)", "E3"),
        RowProblem(5, f"{path} line 5: field name is longer than {MAX_FIELD} characters", "E4"),
    )


def test_blank_rows_are_skipped_and_the_rows_after_them_read(tmp_path: Path) -> None:
    text = f"{HEADER}\nE1,a@x.io,A,active,,\n\n , ,,,,\nE4,d@x.io,D,terminated,2026-01-02,\n"
    result = read(tmp_path, text)
    assert [p.employee_id for p in result.people] == ["E1", "E4"] and result.problems == ()


def test_rows_shorter_or_longer_than_the_header_are_read(tmp_path: Path) -> None:
    text = f"{HEADER}\nE1,a@x.io,A,active\nE2,b@x.io,B,terminated,2026-01-02,b2,extra,{'x' * MAX_FIELD}\n"
    result = read(tmp_path, text)
    e1, e2 = result.people
    assert result.problems == ()
    assert (e1.employee_id, e1.status, e1.aliases) == ("E1", PersonStatus.ACTIVE, ())
    assert (e2.employee_id, e2.status, e2.aliases) == ("E2", PersonStatus.TERMINATED, ("b2",))


def test_a_long_field_past_the_header_is_a_bad_row_labelled_as_such(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    text = f"{HEADER}\nE1,a@x.io,A,active,,\nE2,b@x.io,B,active,,,{'x' * (MAX_FIELD + 1)}\n"
    assert read(tmp_path, text).problems == (
        RowProblem(
            3, f"{path} line 3: field (a column past the header) is longer than {MAX_FIELD} characters", "E2"
        ),
    )


def test_every_long_field_of_a_row_is_named_in_header_order(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    long = "x" * (MAX_FIELD + 1)
    text = f"{HEADER}\nE1,a@x.io,A,active,,\nE2,b@x.io,{long},active,,{long}\n"
    (problem,) = read(tmp_path, text).problems
    assert problem.message == f"{path} line 3: field name, aliases is longer than {MAX_FIELD} characters"


@pytest.mark.parametrize(
    ("employee_id", "named"),
    [
        (" E2 ", "E2"),  # stripped
        ("e" * MAX_FIELD, "e" * MAX_FIELD),  # at the limit: still an id
        ("e" * (MAX_FIELD + 1), ""),  # over it: too long to be anyone's id
    ],
    ids=["short", "at-the-limit", "over-the-limit"],
)
def test_the_bad_row_of_a_long_field_names_its_employee_id_unless_that_is_too_long(
    tmp_path: Path, employee_id: str, named: str
) -> None:
    text = f"{HEADER}\nE1,a@x.io,A,active,,\n{employee_id},b@x.io,{'n' * (MAX_FIELD + 1)},active,,\n"
    (problem,) = read(tmp_path, text).problems
    assert problem.employee_id == named


def test_a_long_field_in_a_row_too_short_to_reach_the_id_column_names_no_employee(tmp_path: Path) -> None:
    # employee_id is the last column and the row stops before it
    text = f"name,email,status,termination_date,employee_id\nA,a@x.io,active,,E1\n{'n' * (MAX_FIELD + 1)},b@x.io\n"
    (problem,) = read(tmp_path, text).problems
    assert (problem.line, problem.employee_id) == (3, "")


@pytest.mark.parametrize(
    ("text", "start"),
    [
        # the first record is the one cut off
        (f'{HEADER}\nE1,a@x.io,"Ann\nE2,b@x.io,B,active,,\n', 2),
        # a later record, after whole ones
        (f'{HEADER}\nE1,a@x.io,A,active,,\nE2,b@x.io,"Bob, the\nE3,c@x.io,C,terminated,2026-01-10,\n', 3),
        # after a record whose quoted field ends on a line of its own
        (f'{HEADER}\nE1,a@x.io,"Ann\n",active,,\nE2,b@x.io,"Bob', 4),
    ],
    ids=["first-record", "later-record", "after-a-multi-line-record"],
)
def test_a_file_cut_off_inside_a_quoted_field_names_the_line_the_field_starts_on(
    tmp_path: Path, text: str, start: int
) -> None:
    path = tmp_path / "hr.csv"
    with pytest.raises(SourceError) as exc:
        read(tmp_path, text)
    assert str(exc.value) == (
        f"HR file {path} ends inside a quoted field that starts on line {start}: "
        "the file is cut off (a partial export or transfer); not reading it"
    )
