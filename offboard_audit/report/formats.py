"""The output formats by name (``--format NAME``): one class each behind :class:`Format`."""

from __future__ import annotations

from collections.abc import Mapping

from offboard_audit.report.base import ActionInfo, Format
from offboard_audit.report.csv import CsvFormat
from offboard_audit.report.json import JsonFormat
from offboard_audit.report.table import TableFormat

FORMATS: Mapping[str, type[Format]] = {f.name: f for f in (TableFormat, JsonFormat, CsvFormat)}


def format_for(name: str, actions: ActionInfo | None = None) -> Format:
    """The format called ``name``, for an output listing ``actions`` with the findings; KeyError
    for an unknown one (the CLI checks first)."""
    return FORMATS[name](actions)
