"""What several commands share: the acting user, the revocation engine, output helpers,
the plan tables and the check of the findings named on the command line."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from offboard_audit.cli.app import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_SOURCE_FAILED,
    err,
    fail,
    source_context,
    state,
)
from offboard_audit.config import Config
from offboard_audit.core.planning import Plan
from offboard_audit.core.records import FindingStatus, RunResult, Severity
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.report.base import ActionInfo
from offboard_audit.report.formats import FORMATS, format_for
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
    st = state(ctx)
    config = st.config()
    store = st.store(config)
    engine = RevocationEngine(
        config,
        store,
        source_context(config),
        actor(),
        reporter=lambda m: err.print(m, highlight=False, soft_wrap=True),
    )
    return config, store, engine


def check_format(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in allowed:
        raise fail(f"--format must be one of {', '.join(allowed)}; got {fmt!r}")


def plan_table(plan: Plan) -> Table:
    table = Table(title=f"revocation plan {plan.plan_id}", header_style="bold")
    for col in ("#", "person", "source", "account", "credential", "action", "stage", "reversible", "needs"):
        table.add_column(col)
    for i, a in enumerate(plan.actions, start=1):
        who = f"{a.person} ({a.person_name})" if a.person and a.person_name else (a.person or "-")
        table.add_row(
            str(i),
            who,
            a.source,
            a.username,
            f"{a.credential_kind.value} {a.credential_id}",
            a.action + (f"\n[dim]{a.note}[/]" if a.note else ""),
            a.stage.value,
            "yes" if a.reversible else "[bold red]NO[/]",
            "\n".join(a.permissions),
        )
    return table


def held_table(plan: Plan) -> Table:
    table = Table(title="listed, not planned", header_style="bold")
    for col in ("finding", "rule", "source", "account", "credential", "why"):
        table.add_column(col)
    for h in plan.held:
        table.add_row(h.finding_id, h.rule.value, h.source, h.username, h.credential_id or "-", h.reason)
    return table


def check_findings(store: Store, ids: Sequence[str]) -> None:
    if not ids:
        return
    known = {f.finding_id for f in store.list_findings(None, finding_ids=list(ids))}
    missing = [i for i in ids if i not in known]
    if missing:
        raise fail(f"unknown finding id(s): {', '.join(missing)}")


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda _m: None
        return
    with err.status("starting") as status:
        yield lambda message: status.update(message)


def check_output_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def emit(text: str, output_file: Path | None = None) -> None:
    """Write ``text`` (newline-terminated) to stdout, or to ``output_file`` and say so."""
    if output_file is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        output_file.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err.print(f"wrote {output_file}")


def render(result: RunResult, fmt: str, output_file: Path | None, actions: ActionInfo | None) -> None:
    if output_file is not None:
        with output_file.open("w", encoding="utf-8") as fh:
            format_for(fmt).write_run(fh, result, actions)
        err.print(f"wrote {output_file}")
    else:
        format_for(fmt).write_run(sys.stdout, result, actions)
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
