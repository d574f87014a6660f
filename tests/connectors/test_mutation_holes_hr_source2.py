"""Mutation holes in the HR CSV source (connectors/hr_records/source.py, run at 162da01): the
failed read of an HR file with no header line says it is empty and names the file.

No module global is patched here (see 2097984): the csv module's field limit is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hr_records import make_csv_source
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"], ids=["zero-bytes", "only-a-utf8-bom"])
def test_an_hr_file_without_a_header_line_is_a_failed_read_saying_it_is_empty_and_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "hr.csv"
    path.write_bytes(content)
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(path)}, "sources[0]")
    source = make_csv_source(options, SourceContext(base_dir=tmp_path))
    with pytest.raises(SourceError) as exc:
        source.read_people()
    assert str(exc.value) == f"HR file {path} is empty"
