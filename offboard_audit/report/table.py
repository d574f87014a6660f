"""The table format (rich): sources, warnings, the circuit breaker, findings and the summary.

**Values are data, never markup.** HR names and emails, directory attributes, IAM names and
error texts reach the terminal through :func:`plain` (a ``rich.text.Text``, which rich does not
parse for markup) or :func:`markup_safe` (for a value inside a markup string), and both pass
them through :func:`safe` first: a control character or an ANSI/OSC escape sequence in any
field is shown as ``\\x1b``-style text, never sent to the terminal (it could recolour, clear or
retitle the screen, hide lines, or plant a link). An email like ``mal[/x]lory@example.com`` is
printed as it is rather than crashing rich's markup parser.

**Findings fit the terminal.** One line per finding. At 80 columns the table shows the short
id, severity, person, system, account, credential and age (and the status when a finding is not
simply open); wider terminals add the rule, the last use, the status, the source and the latest
action, each only when the others still fit comfortably. Long values are shortened: ids from
the middle (both ends stay readable), names and emails at the end. The short id is the shortest prefix (8 characters at least) that is
unique among the findings shown; ``plan --finding`` and ``revoke --finding`` accept it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from offboard_audit.core.records import Finding, FindingStatus, Severity
from offboard_audit.core.runs import RunResult, SourceRun, SourceStatus
from offboard_audit.report.base import ActionInfo, Format, latest_action, sort_findings, summary

_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

# Width when the output is not a terminal and COLUMNS is not set (files, pipes, logs).
PIPE_WIDTH = 160
SHORT_ID_MIN = 8

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

    def write_run(self, out: TextIO, result: RunResult) -> None:
        print_run_table(console_for(out), result, self.actions)

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


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut from the middle so both ends stay readable
    (``arn:aws:iam::1234…:user/bleaver``): ids differ at their ends, seldom in the middle."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep = width - 1
    head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :] if keep // 2 else ""
    while cell_len(head) + cell_len(tail) > keep:  # wide characters: drop until it fits
        if cell_len(head) >= cell_len(tail) and head:
            head = head[:-1]
        else:
            tail = tail[1:]
    return f"{head}…{tail}"


def shorten_end(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut at the end: a name or an email is read from its start."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    while text and cell_len(text) > width - 1:
        text = text[:-1]
    return text + "…"


def short_ids(ids: Sequence[str], minimum: int = SHORT_ID_MIN) -> dict[str, str]:
    """Each id's shortest prefix of a common length (at least ``minimum``) unique among ``ids``."""
    distinct = set(ids)
    longest = max((len(i) for i in distinct), default=minimum)
    length = minimum
    while length < longest and len({i[:length] for i in distinct}) < len(distinct):
        length += 1
    return {i: i[:length] for i in distinct}


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


@dataclass
class _Column:
    header: str
    cells: list[str]
    flexible: bool = False  # may be shortened to fit
    minimum: int = 6  # never shortened below this
    comfortable: int = 0  # optional columns appear only when the flexible ones get this much
    styles: list[str] | None = None
    credential: list[tuple[str, str]] | None = None  # (kind, id) per row: shortened specially
    keep_start: bool = False  # cut at the end (names, emails), not in the middle (ids)

    def natural(self) -> int:
        return max([cell_len(self.header), *(cell_len(c) for c in self.cells)])


def _credential_cell(kind: str, cid: str, width: int) -> str:
    """The kind stays whole; the id gets what is left, shortened from the middle."""
    full = f"{kind} {cid}".strip()
    if cell_len(full) <= width:
        return full
    room = width - cell_len(kind) - 1
    if room >= 5:
        return f"{kind} {shorten(cid, room)}"
    return shorten_end(kind, width)


def _room(columns: Sequence[_Column], width: int) -> int:
    return width - 2 * (len(columns) - 1)  # two spaces between columns


def _fits_comfortably(columns: Sequence[_Column], width: int) -> bool:
    need = sum(min(c.natural(), c.comfortable) if c.flexible else c.natural() for c in columns)
    return need <= _room(columns, width)


def _fit(columns: Sequence[_Column], width: int) -> list[int]:
    """Column widths that fit ``width``: fixed columns keep theirs, the widest flexible column
    gives way first, none below its minimum."""
    widths = [c.natural() for c in columns]
    room = _room(columns, width)
    flexible = [i for i, c in enumerate(columns) if c.flexible]
    while sum(widths) > room:
        candidates = [i for i in flexible if widths[i] > columns[i].minimum]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


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

    def person(f: Finding) -> str:
        if f.candidates:
            return " | ".join(x.email or x.employee_id for x in f.candidates)
        if f.person:
            return f.person.email or f.person.employee_id
        return "-"

    def last_used(f: Finding) -> str:
        used = f.credential.last_used_at if f.credential else None
        return used.strftime("%Y-%m-%d") if used else "-"

    creds = [
        (f.credential.kind.value, f.credential.credential_id) if f.credential else ("-", "") for f in rows
    ]
    by_name = {
        "id": _Column("id", [ids[f.finding_id] for f in rows]),
        "severity": _Column(
            "severity", [f.severity.value for f in rows], styles=[_STYLE[f.severity] for f in rows]
        ),
        "rule": _Column("rule", [f.rule.value for f in rows]),
        "person": _Column(
            "person", [person(f) for f in rows], flexible=True, minimum=12, comfortable=24, keep_start=True
        ),
        "source": _Column("source", [f.source for f in rows], flexible=True, minimum=8, comfortable=12),
        "system": _Column("system", [f.system.removesuffix("_iam") for f in rows]),
        "account": _Column(
            "account",
            [f.account.username or f.account.account_id for f in rows],
            flexible=True,
            minimum=10,
            comfortable=24,
            keep_start=True,
        ),
        "credential": _Column(
            "credential",
            [f"{k} {i}".strip() for k, i in creds],
            flexible=True,
            minimum=20,
            comfortable=36,
            credential=creds,
        ),
        "last used": _Column("last used", [last_used(f) for f in rows]),
        "age": _Column("age", [finding_age(f, now) for f in rows]),
        "status": _Column("status", [f.status.value + (" (stale)" if f.stale else "") for f in rows]),
        "latest action": _Column(
            "latest action",
            [latest_action(f, actions) or "-" for f in rows],
            flexible=True,
            minimum=16,
            comfortable=40,
        ),
    }
    order = list(by_name)
    shown = ["id", "severity", "person", "system", "account", "credential", "age"]
    if any(f.status is not FindingStatus.OPEN or f.stale for f in rows):
        shown.append("status")  # a finding that is not simply open must say so at any width
    # More columns, most useful first, each only while the others still fit comfortably.
    extra = ["last used", "rule", "status", "source"] + (["latest action"] if actions else [])
    for name in extra:
        if name in shown:
            continue
        candidate = sorted([*shown, name], key=order.index)
        if _fits_comfortably([by_name[n] for n in candidate], width):
            shown = candidate
    cols = [by_name[n] for n in sorted(shown, key=order.index)]

    # Values are made safe before measuring: an escaped control takes four cells, not zero.
    for c in cols:
        c.cells = [safe(v) for v in c.cells]
        if c.credential is not None:
            c.credential = [(safe(k), safe(i)) for k, i in c.credential]
    widths = _fit(cols, width)

    table = Table(
        title=plain(title) if title else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        header_style="bold",
    )
    for c, w in zip(cols, widths, strict=True):
        table.add_column(c.header, no_wrap=True, overflow="ellipsis", max_width=w)
    for r in range(len(rows)):
        cells: list[Text] = []
        for c, w in zip(cols, widths, strict=True):
            if c.credential is not None:
                kind, cid = c.credential[r]
                text = _credential_cell(kind, cid, w)
            elif c.keep_start:
                text = shorten_end(c.cells[r], w)
            else:
                text = shorten(c.cells[r], w)
            cells.append(Text(text, style=c.styles[r] if c.styles else ""))
        table.add_row(*cells)
    return table


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


def print_run_table(console: Console, result: RunResult, actions: ActionInfo | None = None) -> None:
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
    else:
        console.print(plain("no findings", "green"))
    counts = summary(result.findings)
    console.print(plain("summary: " + ", ".join(f"{k}={v}" for k, v in counts.items())))
