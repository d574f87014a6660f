"""The table format (rich): sources, warnings, the circuit breaker, findings and the summary.

**Values are data, never markup.** HR names and emails, directory attributes, IAM names and
error texts reach the terminal through :func:`plain` (a ``rich.text.Text``, which rich does not
parse for markup) or :func:`markup_safe` (for a value inside a markup string), and both pass
them through :func:`safe` first: a control character or an ANSI/OSC escape sequence in any
field is shown as ``\\x1b``-style text, never sent to the terminal (it could recolour, clear or
retitle the screen, hide lines, or plant a link). An email like ``mal[/x]lory@example.com`` is
printed as it is rather than crashing rich's markup parser.

**Findings fit the terminal.** One line per finding. At 80 columns the table shows the short
id, severity, person, system, account, credential and age (the status instead of the age when
a finding is not simply open); wider terminals add the age, the last use, the rule, the status,
the source and the latest action, each only when the others still fit comfortably
(``columns.py`` fits the columns). The status word of the latest action is never cut.
Long values are shortened: ids from the middle (both ends stay readable), names and emails at
the end. The short id is the shortest prefix (8 characters at least) that is unique among the
findings shown; ``plan --finding`` and ``revoke --finding`` accept it.

**A row never misattributes.** An ambiguous owner shows all candidates, or the first and how
many more (``heidi.smith@… +1``); a credential that is not the person's own (one the leaver
made for another account, a secret they had) says so in its cell (``made access_key …``,
``exposed secret …``) even when the rule column does not fit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from offboard_audit.core.records import Finding, FindingStatus, Rule, Severity
from offboard_audit.core.runs import RunResult, SourceRun, SourceStatus
from offboard_audit.report.base import ActionInfo, Format, latest_action, sort_findings, summary
from offboard_audit.report.columns import SHORT_ID_MIN as SHORT_ID_MIN
from offboard_audit.report.columns import Column, choose, fitted_table, kind_and_id, word_kept
from offboard_audit.report.columns import short_ids as short_ids
from offboard_audit.report.columns import shorten as shorten
from offboard_audit.report.columns import shorten_end as shorten_end

_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

# Width when the output is not a terminal and COLUMNS is not set (files, pipes, logs).
PIPE_WIDTH = 160

# C0 and C1 controls (ESC starts ANSI CSI/OSC sequences, BEL ends OSC ones; CR and backspace
# overwrite what was printed), DEL, and the Unicode controls that reorder or break text when
# shown (bidirectional overrides and isolates, line and paragraph separators).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """``value`` as text that is harmless on a terminal: controls become ``\\x1b``-style text."""
    return _UNSAFE.sub(_escape_char, str(value))


def plain(value: object, style: str = "") -> Text:
    """A value as a rich ``Text``: never parsed as markup, controls shown as text."""
    return Text(safe(value), style=style)


def markup_safe(value: object) -> str:
    """A value to put inside a markup string (``f"[red]refused:[/] {markup_safe(reason)}"``)."""
    return escape(safe(value))


class TableFormat(Format):
    name = "table"

    def write_run(self, out: TextIO, result: RunResult, *, not_read: Sequence[Finding] = ()) -> None:
        print_run_table(console_for(out), result, self.actions, not_read)

    def write_findings(self, out: TextIO, findings: Sequence[Finding], *, title: str = "findings") -> None:
        console = console_for(out)
        if findings:
            console.print(findings_table(findings, self.actions, title=title, width=console.width))
        else:
            console.print(plain(f"no {title}"))


class ReportConsole(Console):
    """rich's Console, except that a closed pipe (``| head``) raises BrokenPipeError for the CLI
    to end quietly with 141, where rich would exit 1: which cron reads as "findings"."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def console_for(file: TextIO | None = None) -> Console:
    """A console for reports: the terminal's width on a TTY; when piped, ``$COLUMNS`` if set
    (``COLUMNS=80 offboard-audit audit | less``), else 160 columns."""
    c = ReportConsole(file=file)
    if not c.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
        c = ReportConsole(file=file, width=width, no_color=file is not None)
    return c


def age(since: datetime | None, now: datetime) -> str:
    """kubectl-style age: ``42m``, ``5h``, ``59d``, ``2y``."""
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    days = seconds // 86400
    if days < 2 * 365:
        return f"{days}d"
    return f"{days // 365}y"


def finding_age(f: Finding, now: datetime) -> str:
    """How long the owner has been gone; without a departed owner, how long the finding is open."""
    if f.person is not None and f.person.terminated_at is not None:
        return age(f.person.terminated_at, now)
    return age(f.first_seen, now)


# Rules whose credential is not the person's own: the row's account is the leaver's and the
# credential belongs to another account or object (a key the leaver made for ``svc-build``, a
# secret they read). The credential cell says so, or the row reads as the leaver's own key.
_NOT_OWN = {Rule.PERSISTENCE_LEFT_BY_LEAVER: "made", Rule.SECRET_EXPOSED_TO_LEAVER: "exposed"}


def _candidates_cell(names: Sequence[str], width: int) -> str:
    """An ambiguous owner: all candidates when they fit, else the first and how many more
    (``heidi.smith@… +1``), never one cut-off name that reads as the owner."""
    full = " | ".join(names)
    if cell_len(full) <= width or len(names) < 2:
        return shorten_end(full, width)
    more = f"+{len(names) - 1}"
    if width - cell_len(more) - 1 >= 6:
        return word_kept(names[0], more, width)
    return shorten_end(f"{len(names)} candidates", width)


def findings_table(
    findings: Sequence[Finding],
    actions: ActionInfo | None = None,
    title: str = "",
    width: int = PIPE_WIDTH,
    now: datetime | None = None,
) -> Table:
    """One line per finding, as many columns as ``width`` allows (see the module docstring)."""
    now = now or datetime.now(UTC)
    rows = sort_findings(findings)
    ids = short_ids([f.finding_id for f in rows])
    # Values are made safe before measuring: an escaped control takes four cells, not zero.
    candidates = [[safe(x.email or x.employee_id) for x in f.candidates] for f in rows]

    def person(f: Finding) -> str:
        if f.person:
            return f.person.email or f.person.employee_id
        return "-"

    def last_used(f: Finding) -> str:
        used = f.credential.last_used_at if f.credential else None
        return used.strftime("%Y-%m-%d") if used else "-"

    creds = [
        (
            safe(" ".join(filter(None, (_NOT_OWN.get(f.rule), f.credential.kind.value)))),
            safe(f.credential.credential_id),
        )
        if f.credential
        else ("-", "")
        for f in rows
    ]

    latest = [actions[f.finding_id][-1] if actions and actions.get(f.finding_id) else None for f in rows]

    def latest_cell(r: int, w: int) -> str:
        """``action status time``: the time goes first, then the action's end; the status word
        (applied, restored, failed...) is never cut."""
        a = latest[r]
        if a is None:
            return "-"
        action, status, at = safe(a.action), a.status.value, a.updated_at.isoformat()
        for text in (f"{action} {status} {at}", f"{action} {status} {at[:10]}"):
            if cell_len(text) <= w:
                return text
        return word_kept(action, status, w)

    def person_cell(r: int, w: int) -> str:
        if candidates[r]:
            return _candidates_cell(candidates[r], w)
        return shorten_end(by_name["person"].cells[r], w)

    by_name = {
        "id": Column("id", [ids[f.finding_id] for f in rows]),
        "severity": Column(
            "severity", [f.severity.value for f in rows], styles=[_STYLE[f.severity] for f in rows]
        ),
        "rule": Column("rule", [f.rule.value for f in rows]),
        "person": Column(
            "person",
            [" | ".join(c) if c else safe(person(f)) for f, c in zip(rows, candidates, strict=True)],
            flexible=True,
            minimum=12,
            comfortable=24,
            render=person_cell,
        ),
        "source": Column("source", [safe(f.source) for f in rows], flexible=True, minimum=8, comfortable=12),
        "system": Column("system", [safe(f.system.removesuffix("_iam")) for f in rows]),
        "account": Column(
            "account",
            [safe(f.account.username or f.account.account_id) for f in rows],
            flexible=True,
            minimum=10,
            comfortable=24,
            keep_start=True,
        ),
        "credential": Column(
            "credential",
            [f"{k} {i}".strip() for k, i in creds],
            flexible=True,
            minimum=20,
            comfortable=36,
            render=lambda r, w: kind_and_id(*creds[r], w),
        ),
        "last used": Column("last used", [last_used(f) for f in rows]),
        "age": Column("age", [finding_age(f, now) for f in rows]),
        "status": Column("status", [f.status.value + (" (stale)" if f.stale else "") for f in rows]),
        "latest action": Column(
            "latest action",
            [safe(latest_action(f, actions)) or "-" for f in rows],
            flexible=True,
            minimum=16,
            comfortable=40,
            render=latest_cell,
        ),
    }
    shown = ["id", "severity", "person", "system", "account", "credential", "age"]
    if any(f.status is not FindingStatus.OPEN or f.stale for f in rows):
        # A finding that is not simply open must say so at any width: the status takes the
        # age's place at 80 columns (the age returns on wider terminals), and the person,
        # account and credential may give a few cells more.
        shown = [*shown[:-1], "status"]
        for name, minimum in (("person", 10), ("account", 8), ("credential", 16)):
            by_name[name].minimum = minimum
    # More columns, most useful first, each only while the others still fit comfortably.
    extra = ["age", "last used", "rule", "status", "source"] + (["latest action"] if actions else [])
    cols = [by_name[n] for n in choose(by_name, shown, extra, width)]
    return fitted_table(cols, len(rows), width, title=plain(title) if title else None)


def sources_table(sources: Sequence[SourceRun]) -> Table:
    table = Table(title="sources", header_style="bold")
    for col in ("source", "system", "status", "counts", "error"):
        table.add_column(col, overflow="fold")
    for s in sources:
        style = {SourceStatus.OK: "green", SourceStatus.DEGRADED: "yellow", SourceStatus.FAILED: "bold red"}[
            s.status
        ]
        status = plain(s.status.value, style) + plain(" (stale data)" if s.stale else "")
        counts = ", ".join(f"{k}={v}" for k, v in s.counts)
        table.add_row(plain(s.name), plain(s.system), status, plain(counts), plain(s.error or ""))
    return table


def print_run_table(
    console: Console,
    result: RunResult,
    actions: ActionInfo | None = None,
    not_read: Sequence[Finding] = (),
) -> None:
    console.print(sources_table(result.sources))
    for s in result.sources:
        for w in s.warnings[:20]:
            console.print(plain("warning ", "yellow") + plain(f"{s.name}: {w}"))
        if len(s.warnings) > 20:
            console.print(plain("warning ", "yellow") + plain(f"{s.name}: … and {len(s.warnings) - 20} more"))
    if result.circuit_breaker:
        console.print(
            plain("circuit breaker: ", "bold yellow")
            + plain(f"{result.circuit_breaker} — nothing will be revoked")
        )
    if result.findings:
        console.print(
            findings_table(
                result.findings,
                actions,
                title=f"findings (run {result.run_id})",
                width=console.width,
                now=result.finished_at,
            )
        )
    elif not_read:
        console.print(plain("no findings in the sources this run read"))
    else:
        console.print(plain("no findings", "green"))
    if not_read:
        # Still open, and `revoke` still acts on them: "no findings" must not read as "all clear".
        n = len(not_read)
        by_severity = ", ".join(f"{k}={v}" for k, v in summary(not_read).items() if v)
        console.print(
            plain(f"{n} open finding{'s' if n != 1 else ''} from sources not read in this run", "bold yellow")
            + plain(f" ({by_severity}; `offboard-audit findings` lists them)")
        )
    counts = ", ".join(f"{k}={v}" for k, v in summary(result.findings).items())
    console.print(plain(f"summary: {counts} (run {result.status.value})"))
