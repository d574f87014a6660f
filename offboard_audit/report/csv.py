"""The CSV format: one row per finding, most severe first.

Every cell is neutralised against formula injection (OWASP, "CSV Injection"): names, account
names, reasons and credential details come from HR and from the systems, and a spreadsheet runs
a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula
(``=HYPERLINK(...)`` exfiltrates, ``=1+2`` computes). Such a cell gets a leading ``'``, which
spreadsheets show as text; the value is otherwise unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TextIO

from offboard_audit.core.records import Finding
from offboard_audit.core.rotation import owner_label
from offboard_audit.core.runs import RunResult
from offboard_audit.report.base import ActionInfo, Format, iso, latest_action, sort_findings


class CsvFormat(Format):
    name = "csv"

    def write_run(self, out: TextIO, result: RunResult, *, not_read: Sequence[Finding] = ()) -> None:
        # One row per finding of the run: the CLI says on stderr how many are left out.
        out.write(findings_csv(result.findings, self.actions))

    def write_findings(self, out: TextIO, findings: Sequence[Finding], *, title: str = "findings") -> None:
        out.write(findings_csv(findings, self.actions))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """A cell as text that no spreadsheet evaluates (see the module docstring)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


CSV_COLUMNS = (
    "id",
    "rule",
    "severity",
    "status",
    "source",
    "system",
    "scope",
    "account_id",
    "account_name",
    "credential_id",
    "credential_kind",
    "credential_active",
    "credential_last_used_at",
    "employee_id",
    "email",
    "person_name",
    "terminated_at",
    "first_seen",
    "due_at",
    "stale",
    "latest_action",
    "reason",
    # Exposure findings (issue 13): who rotates it, and each access as "<at> <how> <event id>".
    "rotate_owner",
    "exposure",
)


def _quoted(cell: str) -> str:
    # Like csv.writer's minimal quoting, but a carriage return is quoted too: csv.writer with a
    # "\n" line terminator leaves "\r" bare, and a bare CR ends the row in a spreadsheet, which
    # would start a new row (and a new, unneutralised first cell) inside one value.
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _line(cells: Sequence[object]) -> str:
    return ",".join(_quoted(neutralise(c)) for c in cells) + "\n"


def findings_csv(findings: Sequence[Finding], actions: ActionInfo | None = None) -> str:
    buf = io.StringIO()
    buf.write(_line(CSV_COLUMNS))
    for f in sort_findings(findings):
        c = f.credential
        p = f.person
        latest = latest_action(f, actions)
        row = [
            f.finding_id,
            f.rule.value,
            f.severity.value,
            f.status.value,
            f.source,
            f.system,
            f.account.scope,
            f.account.account_id,
            f.account.username,
            c.credential_id if c else "",
            c.kind.value if c else "",
            "" if c is None else str(c.active).lower(),
            iso(c.last_used_at) if c else "",
            p.employee_id if p else "",
            (p.email or "") if p else "",
            p.name if p else "",
            iso(p.terminated_at) if p else "",
            iso(f.first_seen),
            iso(f.due_at) or "",
            str(f.stale).lower(),
            latest,
            f.reason,
            owner_label(f.owner) if f.owner else "",
            "; ".join(f"{iso(a.at)} {a.how.value} {a.event_id}" for a in f.exposure),
        ]
        buf.write(_line(row))
    return buf.getvalue()
