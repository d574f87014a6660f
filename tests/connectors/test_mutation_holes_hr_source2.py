"""Mutation holes in the HR CSV source (connectors/hr_records/source.py, run at 162da01): the
failed read of an HR file with no header line says it is empty and names the file; blank lines
before the header are skipped.

No module global is patched here (see 2097984): the csv module's field limit is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hr_records import make_csv_source
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import HRSource, SourceContext
from offboard_audit.core.records import HRRead


@pytest.mark.parametrize(
    "content",
    [b"", b"\xef\xbb\xbf", b"\n \n\r\n", b",,,\n"],
    ids=["zero-bytes", "only-a-utf8-bom", "only-blank-lines", "only-empty-fields"],
)
def test_an_hr_file_without_a_header_line_is_a_failed_read_saying_it_is_empty_and_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "hr.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError) as exc:
        _source(tmp_path, path).read_people()
    assert str(exc.value) == f"HR file {path} is empty"


def _source(tmp_path: Path, path: Path) -> HRSource:
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(path)}, "sources[0]")
    return make_csv_source(options, SourceContext(base_dir=tmp_path))


def test_blank_lines_before_the_header_are_skipped_and_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    # Taken for the header, a blank first line made the read fail saying the file had no
    # 'employee_id' column and sent the operator to the `columns` mapping.
    path = tmp_path / "hr.csv"
    path.write_text(
        "\n  \nemployee_id,email,name,status,termination_date\n"
        "E1,a@example.com,A,active,\n"
        "E2,b@example.com,B,fired,\n"
    )
    read = _source(tmp_path, path).read_people()
    assert isinstance(read, HRRead)
    assert [p.employee_id for p in read.people] == ["E1"]
    (problem,) = read.problems
    assert (problem.line, problem.employee_id) == (5, "E2")  # the file's own line number
