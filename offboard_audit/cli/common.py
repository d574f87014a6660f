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
from rich.console import Console
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
from offboard_audit.core.records import Finding, FindingStatus, Severity
from offboard_audit.core.runs import RunResult
from offboard_audit.report.base import ActionInfo
from offboard_audit.report.columns import (
    Column,
    account_column,
    choose,
    fitted_table,
    kind_and_id,
    short_ids,
    source_column,
)
from offboard_audit.report.formats import FORMATS, format_for
from offboard_audit.report.table import plain, safe
from offboard_audit.storage.files import write_private_text

if TYPE_CHECKING:
    from offboard_audit.config import Config
    from offboard_audit.core.plan_records import Plan, PlannedAction
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


def plan_table(plan: Plan, width: int) -> Table:
    """One line per planned action, fitted to ``width`` like the findings table: at 80 columns
    the person, account, credential and action (and whether it is reversible when one is not);
    wider terminals add that, the source, the stage and the permissions it needs. Notes follow
    the table (:func:`print_plan_table`)."""
    rows = plan.actions
    creds = [(safe(a.credential_kind.value), safe(a.credential_id)) for a in rows]

    def who(a: PlannedAction) -> str:
        return f"{a.person} ({a.person_name})" if a.person and a.person_name else (a.person or "-")

    by_name = {
        "#": Column("#", [str(i) for i in range(1, len(rows) + 1)]),
        "person": Column(
            "person", [safe(who(a)) for a in rows], flexible=True, minimum=10, comfortable=24, keep_start=True
        ),
        "source": source_column([safe(a.source) for a in rows]),
        "account": account_column([safe(a.username) for a in rows]),
        "credential": Column(
            "credential",
            [f"{k} {i}" for k, i in creds],
            flexible=True,
            minimum=20,
            comfortable=36,
            render=lambda r, w: kind_and_id(*creds[r], w),
        ),
        # Cut only on a terminal too narrow for the longest names (30 characters).
        "action": Column(
            "action", [safe(a.action) for a in rows], flexible=True, minimum=21, keep_start=True
        ),
        "stage": Column("stage", [a.stage.value for a in rows]),
        "reversible": Column(
            "reversible",
            ["yes" if a.reversible else "NO" for a in rows],
            styles=["" if a.reversible else "bold red" for a in rows],
        ),
        "needs": Column(
            "needs",
            [safe(", ".join(a.permissions)) for a in rows],
            flexible=True,
            minimum=12,
            comfortable=40,
            wrap=True,
        ),
    }
    # "yes" in every row is left for wider terminals; a plan with an irreversible action shows
    # the column at any width.
    compact = ["#", "person", "account", "credential", "action"]
    if not all(a.reversible for a in rows):
        compact.append("reversible")
    shown = choose(by_name, compact, ["reversible", "source", "stage", "needs"], width)
    return fitted_table(
        [by_name[n] for n in shown], len(rows), width, title=plain(f"revocation plan {plan.plan_id}")
    )


def print_plan_table(console: Console, plan: Plan) -> None:
    """The plan table, then each action's note in full (``#2 note: revoked at ... but seen active
    again since``): a note is too long for a one-line row and too important to cut."""
    console.print(plan_table(plan, console.width))
    for i, a in enumerate(plan.actions, start=1):
        if a.note:
            console.print(plain(f"#{i} note: ", "dim") + plain(a.note), highlight=False)


def held_table(plan: Plan, width: int) -> Table:
    """What the plan lists but does not act on, fitted to ``width``: the finding's short id
    (``--finding`` accepts it), the rule, the account and why (wrapped, never cut); wider
    terminals add the credential and the source."""
    rows = plan.held
    ids = short_ids([h.finding_id for h in rows])
    by_name = {
        "finding": Column("finding", [ids[h.finding_id] for h in rows]),
        "rule": Column("rule", [h.rule.value for h in rows], flexible=True, minimum=14, keep_start=True),
        "source": source_column([safe(h.source) for h in rows]),
        "account": account_column([safe(h.username) for h in rows]),
        "credential": Column(
            "credential",
            [safe(h.credential_id or "-") for h in rows],
            flexible=True,
            minimum=10,
            comfortable=30,
        ),
        "why": Column(
            "why", [safe(h.reason) for h in rows], flexible=True, minimum=20, comfortable=40, wrap=True
        ),
    }
    shown = choose(by_name, ["finding", "rule", "account", "why"], ["credential", "source"], width)
    return fitted_table([by_name[n] for n in shown], len(rows), width, title=plain("listed, not planned"))


# A prefix shorter than this is refused even when it is unique: `revoke --finding a --apply`
# must not act on whichever finding happens to start with "a".
MIN_PREFIX = 6


def check_person(store: Store, employee_id: str | None) -> str | None:
    """``--person``: an employee id the database knows nothing about (no person from HR, no
    finding) is a usage error (exit 2) naming it; a typo used to read as "nothing to do"."""
    if employee_id is None:
        return None
    if store.person_states_for(employee_id) or store.list_findings(None, person=employee_id):
        return employee_id
    raise fail(f"nothing is known about employee id {employee_id!r}: no person from HR and no finding has it")


def _one_prefixed(noun: str, given: str, matches: Sequence[str]) -> str:
    """The one id that ``given`` (not an id itself) is a prefix of, among ``matches`` (at least
    one): a prefix shorter than ``MIN_PREFIX`` or starting several ids is a usage error (exit 2)
    naming the candidates. Findings and actions follow the same rule."""
    if len(given) < MIN_PREFIX:
        raise fail(f"{noun} id {given!r} is too short: give at least {MIN_PREFIX} characters")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise fail(f"{noun} id {given!r} is ambiguous: it starts {len(matches)} {noun}s ({shown})")
    return matches[0]


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
        matches = [k for k in known if k.startswith(given)]
        if not matches:
            raise fail(f"unknown finding id: {given}")
        resolved.append(_one_prefixed("finding", given, matches))
    return resolved


def check_action_id(store: Store, given: str) -> str:
    """The full action id for ``given``: the id itself or a unique prefix of one (the short id of
    the revoke and undo tables). An ambiguous or too short prefix is a usage error (exit 2)
    listing the candidates; an unknown id is returned as given, for the engine to refuse."""
    matches = store.action_ids_starting(given)
    if given in matches or not matches:
        return given
    return _one_prefixed("action", given, matches)


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


def render(
    result: RunResult,
    fmt: str,
    output_file: Path | None,
    actions: ActionInfo | None,
    not_read: Sequence[Finding] = (),
) -> None:
    """The run in ``fmt``; ``not_read``: the stored open findings of sources it did not read."""
    if output_file is not None:
        # Owner-only, like plan files: the report lists who left and which of their credentials
        # still work. Rendered in memory first, so that a failing format leaves no half file.
        buffer = io.StringIO()
        format_for(fmt, actions).write_run(buffer, result, not_read=not_read)
        write_private_text(output_file, buffer.getvalue())
        err.print(plain(f"wrote {output_file}"))
    else:
        format_for(fmt, actions).write_run(sys.stdout, result, not_read=not_read)
        sys.stdout.flush()


def exit_code(result: RunResult, threshold: Severity | None) -> int:
    """3 when a source failed (its results are incomplete), else 1 for open findings at/above
    threshold: the findings of the sources the run read, never the stored ones of sources it
    left out (``audit --source``), which it did not check again."""
    if result.any_source_failed:
        return EXIT_SOURCE_FAILED
    if threshold is not None and any(
        f.status is FindingStatus.OPEN and f.severity.rank >= threshold.rank for f in result.findings
    ):
        return EXIT_FINDINGS
    return EXIT_OK
