"""HR records: who works here, who left and when (source types ``hr_csv`` and ``hr_json``).

HR sources only read: there is no revoker, and no demo part (the demo's HR file is
``offboard_audit/demo/hr.csv``, read through ``hr_csv``). See ``connectors/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from connectors.hr_records.clients import injected_client
from connectors.hr_records.settings import HR_OPTIONS, JSON_OPTIONS, parse_json_settings, parse_settings
from connectors.hr_records.source import CsvHRSource, JsonHRSource
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import ConnectorPlugin, HRSource, SourceContext, SourceKind


def make_csv_source(options: SourceOptions, ctx: SourceContext) -> CsvHRSource:
    """Factory for ``type = "hr_csv"``."""
    settings = parse_settings(options)
    return CsvHRSource(settings.name, options.file_path("path"), settings)


def make_json_source(options: SourceOptions, ctx: SourceContext) -> JsonHRSource:
    """Factory for ``type = "hr_json"``. ``ctx.clients[name]`` may be an ``httpx.Client``."""
    settings = parse_json_settings(options, ctx)
    return JsonHRSource(settings, injected_client(ctx, settings.rows.name))


def _hr_plugin(
    type_name: str,
    make_source: Callable[[SourceOptions, SourceContext], HRSource],
    read_permission: str,
    options: Mapping[str, str],
) -> ConnectorPlugin:
    """An HR source type of system ``hr``: it only reads (no revoker, no demo part)."""
    return ConnectorPlugin(
        type_name=type_name,
        kind=SourceKind.HR,
        system="hr",
        make_source=make_source,
        read_permissions=(read_permission,),
        options=options,
    )


CSV_PLUGIN = _hr_plugin("hr_csv", make_csv_source, "read access to the export file", HR_OPTIONS)
JSON_PLUGIN = _hr_plugin(
    "hr_json",
    make_json_source,
    "read access to the file, or a bearer token allowed to GET the URL",
    JSON_OPTIONS,
)

__all__ = ["CSV_PLUGIN", "JSON_PLUGIN", "CsvHRSource", "JsonHRSource", "make_csv_source", "make_json_source"]
