"""What several commands share: the acting user, the revocation engine, output helpers,
the plan tables and the check of the findings named on the command line.

Every value from a source, the database or the command line reaches the terminal as text, never
as rich markup and never with its control characters (``plain``/``markup_safe`` from
``report/table.py``).
"""

from __future__ import annotations

import getpass
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from offboard_audit.cli.app import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_SOURCE_FAILED,
    err,
    fail,
    source_context,
    state,
)
from offboard_audit.core.records import FindingStatus, Severity
from offboard_audit.core.runs import RunResult
from offboard_audit.report.base import ActionInfo
from offboard_audit.report.formats import FORMATS, format_for
from offboard_audit.report.table import plain
from offboard_audit.storage.files import write_private_text

if TYPE_CHECKING:
    from offboard_audit.config import Config
    from offboard_audit.core.planning import Plan
    from offboard_audit.engine.revocation import RevocationEngine
    from offboard_audit.storage.store import Store

# Exit 1: a refusal (cap, breaker, stale plan, lock) or a failed action, like findings for `audit`.
EXIT_REFUSED = EXIT_FINDINGS


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}"


def engine_for(ctx: typer.Context) -> tuple[Config, Store, RevocationEngine]:
    # Imported here: `audit` and `findings` use this module but never revoke.
    from offboard_audit.engine.revocation import RevocationEngine

    st = state(ctx)
    config = st.config()
    store = st.store(config)
    engine = RevocationEngine(
        config,
        store,
        source_context(config),
        actor(),
        reporter=lambda m: err.print(plain(m), highlight=False, soft_wrap=True),
    )
    return config, store, engine


def check_format(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in allowed:
        raise fail(f"--format must be one of {', '.join(allowed)}; got {fmt!r}")


def plan_table(plan: Plan) -> Table:
    table = Table(title=plain(f"revocation plan {plan.plan_id}"), header_style="bold")
    for col in ("#", "person", "source", "account", "credential", "action", "stage", "reversible", "needs"):
        table.add_column(col)
    for i, a in enumerate(plan.actions, start=1):
        who = f"{a.person} ({a.person_name})" if a.person and a.person_name else (a.person or "-")
        action = plain(a.action) + (plain("\n") + plain(a.note, "dim") if a.note else plain(""))
        table.add_row(
            str(i),
            plain(who),
            plain(a.source),
            plain(a.username),
            plain(f"{a.credential_kind.value} {a.credential_id}"),
            action,
            plain(a.stage.value),
            plain("yes") if a.reversible else plain("NO", "bold red"),
            Text("\n").join(plain(p) for p in a.permissions),
        )
    return table


def held_table(plan: Plan) -> Table:
    table = Table(title="listed, not planned", header_style="bold")
    for col in ("finding", "rule", "source", "account", "credential", "why"):
        table.add_column(col)
    for h in plan.held:
        table.add_row(
            *(
                plain(v)
                for v in (h.finding_id, h.rule.value, h.source, h.username, h.credential_id or "-", h.reason)
            )
        )
    return table


# A prefix shorter than this is refused even when it is unique: `revoke --finding a --apply`
# must not act on whichever finding happens to start with "a".
MIN_PREFIX = 6


def check_findings(store: Store, ids: Sequence[str]) -> list[str]:
    """The full finding ids for ``ids``: each a full id or a unique prefix of one (the short id
    of the findings table). An unknown id or an ambiguous or too short prefix is a usage error
    (exit 2) naming it."""
    if not ids:
        return []
    exact = {f.finding_id for f in store.list_findings(None, finding_ids=list(ids))}
    if all(i in exact for i in ids):
        return list(ids)
    known = sorted(store.finding_first_seen())
    resolved: list[str] = []
    for given in ids:
        if given in exact:
            resolved.append(given)
            continue
        matches = [k for k in known if k.startswith(given)] if len(given) >= MIN_PREFIX else []
        if len(given) < MIN_PREFIX and any(k.startswith(given) for k in known):
            raise fail(f"finding id {given!r} is too short: give at least {MIN_PREFIX} characters")
        if not matches:
            raise fail(f"unknown finding id: {given}")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise fail(f"finding id {given!r} is ambiguous: it starts {len(matches)} findings ({shown})")
        resolved.append(matches[0])
    return resolved


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda _m: None
        return
    with err.status("starting") as status:
        yield lambda message: status.update(plain(message))


def check_output_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def emit(text: str, output_file: Path | None = None) -> None:
    """Write ``text`` (newline-terminated) to stdout, or to ``output_file`` (a new file is
    owner-only) and say so."""
    if output_file is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        write_private_text(output_file, text if text.endswith("\n") else text + "\n")
        err.print(plain(f"wrote {output_file}"))


def render(result: RunResult, fmt: str, output_file: Path | None, actions: ActionInfo | None) -> None:
    if output_file is not None:
        # Owner-only, like plan files: the report lists who left and which of their credentials
        # still work. Rendered in memory first, so that a failing format leaves no half file.
        buffer = io.StringIO()
        format_for(fmt, actions).write_run(buffer, result)
        write_private_text(output_file, buffer.getvalue())
        err.print(plain(f"wrote {output_file}"))
    else:
        format_for(fmt, actions).write_run(sys.stdout, result)
        sys.stdout.flush()


def exit_code(result: RunResult, threshold: Severity | None) -> int:
    """3 when a source failed (its results are incomplete), else 1 for open findings at/above threshold."""
    if result.any_source_failed:
        return EXIT_SOURCE_FAILED
    if threshold is not None and any(
        f.status is FindingStatus.OPEN and f.severity.rank >= threshold.rank for f in result.findings
    ):
        return EXIT_FINDINGS
    return EXIT_OK
