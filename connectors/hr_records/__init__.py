"""HR records: who works here, who left and when (``hr_csv`` and ``hr_json``)."""

from connectors.hr_records.source import (
    HR_OPTIONS,
    JSON_OPTIONS,
    CsvHRSource,
    JsonHRSource,
    make_csv_source,
    make_json_source,
)
from offboard_audit.core.protocols import ConnectorPlugin, SourceKind

CSV_PLUGIN = ConnectorPlugin(
    type_name="hr_csv",
    kind=SourceKind.HR,
    system="hr",
    make_source=make_csv_source,
    read_permissions=("read access to the export file",),
    options=HR_OPTIONS,
)
JSON_PLUGIN = ConnectorPlugin(
    type_name="hr_json",
    kind=SourceKind.HR,
    system="hr",
    make_source=make_json_source,
    read_permissions=("read access to the file, or a bearer token allowed to GET the URL",),
    options=JSON_OPTIONS,
)

__all__ = ["CSV_PLUGIN", "JSON_PLUGIN", "CsvHRSource", "JsonHRSource"]
