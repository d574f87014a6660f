"""Commands: revoke and undo (dry run unless --apply).

Exit codes: 0 done (or nothing to do); 1 refused (blast-radius cap, circuit breaker, stale or
edited plan, lock held), an action failed or its target changed, or an undo hit an
irreversible action; 2 usage or config error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from offboard_audit.cli.app import EXIT_INTERRUPTED, EXIT_OK, app, err, fail, now_utc
from offboard_audit.cli.common import (
    EXIT_REFUSED,
    check_action_id,
    check_findings,
    check_format,
    check_person,
    emit,
    engine_for,
    held_table,
    print_plan_table,
)
from offboard_audit.core.plan_file import PlanFile, PlanFileError, check_plan_file, read_plan_json
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.journal import ActionOutcome
from offboard_audit.engine.revocation import ApplyReport, PassInterrupted
from offboard_audit.report.columns import (
    Column,
    account_column,
    choose,
    fitted_table,
    short_ids,
    source_column,
)
from offboard_audit.report.json import dumps, loads_limited
from offboard_audit.report.table import console_for, markup_safe, plain, safe

_RESULT_STYLE = {
    "applied": "green",
    "restored": "green",
    "failed": "bold red",
    "irreversible": "bold red",
    "skipped": "yellow",
}
# An action id is never cut: the table shows a prefix long enough to tell the shown actions
# apart ("a-" and 8 hex digits at least), which `undo` accepts as it accepts the full id.
ACTION_ID_MIN = 10


def outcomes_table(outcomes: Sequence[ActionOutcome], title: str, width: int) -> tuple[Table, bool]:
    """One line per action, fitted to ``width`` like the findings table: at 80 columns the short
    action id, account, credential, action and result (never cut); wider terminals add the
    person, the source, what an undo undid and the detail. Also returns whether the detail
    column is shown (if not, :func:`print_outcomes` prints the errors below)."""
    ids = short_ids([o.action_id for o in outcomes if o.action_id], ACTION_ID_MIN)
    by_name = {
        "action id": Column("action id", [ids.get(o.action_id, "-") for o in outcomes]),
        "person": Column(
            "person",
            [safe(o.person or "-") for o in outcomes],
            flexible=True,
            minimum=6,
            comfortable=12,
            keep_start=True,
        ),
        "source": source_column([safe(o.source) for o in outcomes]),
        "account": account_column([safe(o.account) for o in outcomes]),
        "credential": Column(
            "credential", [safe(o.credential_id) for o in outcomes], flexible=True, minimum=10, comfortable=30
        ),
        "action": Column(
            "action", [safe(o.action) for o in outcomes], flexible=True, minimum=16, keep_start=True
        ),
        "undo of": Column("undo of", [safe(o.undo_of or "-") for o in outcomes]),
        "result": Column(
            "result",
            [safe(o.status) for o in outcomes],
            styles=[_RESULT_STYLE.get(o.status, "") for o in outcomes],
        ),
        "detail": Column(
            "detail",
            [safe(o.error or o.message) for o in outcomes],
            flexible=True,
            minimum=20,
            comfortable=40,
            wrap=True,
        ),
    }
    extra = ["person", *(["undo of"] if any(o.undo_of for o in outcomes) else []), "detail", "source"]
    shown = choose(by_name, ["action id", "account", "credential", "action", "result"], extra, width)
    table = fitted_table([by_name[n] for n in shown], len(outcomes), width, title=plain(title))
    return table, "detail" in shown


def print_outcomes(console: Console, report: ApplyReport, title: str) -> None:
    """The outcomes table; without room for the detail column, each error follows in full under
    the action's short id (an error cut to fit would hide what to fix)."""
    outcomes = (*report.recovered, *report.outcomes)
    table, with_detail = outcomes_table(outcomes, title, console.width)
    console.print(table)
    if with_detail:
        return
    ids = short_ids([o.action_id for o in outcomes if o.action_id], ACTION_ID_MIN)
    for o in outcomes:
        if o.error:
            console.print(
                plain(f"{ids.get(o.action_id, o.action)} {o.status}: ", _RESULT_STYLE.get(o.status, ""))
                + plain(o.error),
                highlight=False,
            )


def report_json(report: ApplyReport) -> dict[str, object]:
    return {
        "refused": report.refused,
        "dry_run": report.dry_run,
        "limit": report.limit,
        "plan_id": report.plan.plan_id if report.plan else None,
        "recovered": [asdict(o) for o in report.recovered],
        "outcomes": [asdict(o) for o in report.outcomes],
        "held": [
            {
                "finding_id": h.finding_id,
                "reason": h.reason,
                "account": h.username,
                "credential_id": h.credential_id,
            }
            for h in (report.plan.held if report.plan else ())
        ],
        "summary": {
            "changed": report.changed,
            "failed": len(report.failed),
            "already_done": len(report.plan.done) if report.plan else 0,
        },
    }


def print_report(report: ApplyReport, fmt: str, what: str) -> None:
    if fmt == "json":
        emit(dumps(report_json(report)))
        return
    console = console_for()
    if (report.dry_run or report.refused) and report.plan is not None and report.plan.actions:
        print_plan_table(console, report.plan)
    elif report.outcomes or report.recovered:
        print_outcomes(console, report, what)
    if report.plan is not None and report.plan.held:
        console.print(held_table(report.plan, console.width))


def stopped_part_way(stop: PassInterrupted, fmt: str, what: str) -> int:
    """A pass that stopped part-way: show what it had already changed, then stop as its cause
    says (130 for Ctrl-C; anything else is re-raised and exits 4, internal error)."""
    print_report(stop.report, fmt, f"{what} (stopped part-way)")
    done = [o for o in stop.report.outcomes if o.status in (ActionStatus.APPLIED, ActionStatus.RESTORED)]
    err.print(
        f"stopped part-way after {len(stop.report.outcomes)} action(s), {len(done)} of them changed "
        "(listed above; each has its intent and outcome in the audit log)",
        highlight=False,
        soft_wrap=True,
    )
    if isinstance(stop.cause, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    raise stop.cause


@app.command()
def revoke(
    ctx: typer.Context,
    plan_path: Path | None = typer.Option(
        None, "--plan", help="Apply exactly this plan file (from `plan --output`)."
    ),
    finding: list[str] = typer.Option(
        [], "--finding", help="Only these findings: the full id or the table's short id (repeatable)."
    ),
    person: str | None = typer.Option(None, "--person", help="Only this employee id."),
    max_people: int | None = typer.Option(
        None, "--max", min=0, help="Blast-radius cap for this run: at most N people (overrides policy)."
    ),
    max_actions: int | None = typer.Option(
        None,
        "--max-actions",
        min=0,
        help="Blast-radius cap for this run: at most N actions (overrides policy).",
    ),
    apply: bool = typer.Option(False, "--apply", help="Really change things (default: dry run)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> int:
    """Revoke what the plan says: a dry run unless --apply."""
    check_format(fmt, ("table", "json"))
    config, store, engine = engine_for(ctx)
    finding = check_findings(store, finding)
    person = check_person(store, person)
    plan_file: PlanFile | None = None
    if plan_path is not None:
        try:
            body = loads_limited(plan_path.read_text(encoding="utf-8"))
            # Checksum and plan id always; the signature when the audit key is set.
            plan_file = read_plan_json(body, config.audit.key)
            # Every mode: what the file says must be what a plan made now says (description,
            # person, account, permissions...): an edited, re-hashed file is refused, by field.
            check_plan_file(plan_file, engine.plan(now_utc(), finding_ids=finding, person=person))
        except FileNotFoundError:
            raise fail(f"plan file {plan_path} not found") from None
        except (PlanFileError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            err.print(
                f"[bold red]refused:[/] plan file {markup_safe(plan_path)}: {markup_safe(exc)}",
                highlight=False,
                soft_wrap=True,
            )
            return EXIT_REFUSED
    try:
        report = engine.revoke(
            now_utc(),
            apply=apply,
            finding_ids=finding,
            person=person,
            max_people=max_people,
            max_actions=max_actions,
            plan_file=plan_file,
        )
    except PassInterrupted as stop:
        return stopped_part_way(stop, fmt, "revocation results")
    print_report(report, fmt, "revocation results")
    for o in report.recovered:
        err.print(
            plain(f"recovered interrupted action {o.action_id}: {o.status} ({o.error or o.message})"),
            highlight=False,
            soft_wrap=True,
        )
    if report.refused is not None:
        err.print(f"[bold red]refused:[/] {markup_safe(report.refused)}", highlight=False, soft_wrap=True)
        return EXIT_REFUSED
    plan_ = report.plan
    done = len(plan_.done) if plan_ else 0
    if not report.outcomes:
        extra = f" ({done} action(s) already applied earlier)" if done else ""
        err.print(
            f"nothing to do: no action is due{extra}; nothing was changed", highlight=False, soft_wrap=True
        )
        return EXIT_OK
    if report.dry_run:
        err.print(
            f"dry run: {len(report.outcomes)} action(s) would be applied; nothing was changed. "
            "Run again with --apply to apply them.",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_OK
    noop = sum(1 for o in report.outcomes if o.status == "noop")
    changed_targets = sum(1 for o in report.outcomes if o.status == ActionStatus.TARGET_CHANGED)
    err.print(
        f"{report.changed} changed, {noop} already revoked, {len(report.failed)} failed"
        + (f", {changed_targets} target changed (nothing touched)" if changed_targets else "")
        + (" (failed actions stay open and are retried on the next run)" if report.failed else "")
        + ("; run the audit again to see who holds those names now" if changed_targets else ""),
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK if report.ok else EXIT_REFUSED


@app.command()
def undo(
    ctx: typer.Context,
    action_id: str | None = typer.Argument(
        None, help="The action to undo: its id or a unique prefix of it, as the `revoke` table shows it."
    ),
    person: str | None = typer.Option(
        None, "--person", help="Undo every applied action of this employee id."
    ),
    apply: bool = typer.Option(False, "--apply", help="Really restore (default: dry run)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> int:
    """Restore what an action (or all actions for a person) changed, from the recorded prior state."""
    check_format(fmt, ("table", "json"))
    if (action_id is None) == (person is None):
        raise fail("give either ACTION_ID or --person EMPLOYEE_ID")
    _config, store, engine = engine_for(ctx)
    now = now_utc()
    try:
        if action_id is not None:
            # The short id the revoke and undo tables show is a prefix: it names one action.
            report = engine.undo_action(check_action_id(store, action_id), now, apply=apply)
        else:
            report = engine.undo_person(check_person(store, person) or "", now, apply=apply)
    except PassInterrupted as stop:
        return stopped_part_way(stop, fmt, "undo results")
    print_report(report, fmt, "undo results" if apply else "undo (dry run)")
    if report.refused is not None:
        err.print(f"[bold red]refused:[/] {markup_safe(report.refused)}", highlight=False, soft_wrap=True)
        return EXIT_REFUSED
    if not report.outcomes:
        err.print("nothing to undo", highlight=False, soft_wrap=True)
        return EXIT_OK
    for o in report.outcomes:
        if o.status == "irreversible":
            err.print(
                f"[bold red]irreversible:[/] {markup_safe(o.action_id)} {markup_safe(o.action)} on "
                f"{markup_safe(o.account)} {markup_safe(o.credential_id)}: {markup_safe(o.error)}",
                highlight=False,
                soft_wrap=True,
            )
    if report.dry_run:
        err.print(
            "dry run: nothing was changed. Run again with --apply to restore.",
            highlight=False,
            soft_wrap=True,
        )
    elif person is not None and report.changed:
        err.print(
            "note: if this person is still terminated in HR, the next revoke will plan these again; "
            "add an exemption (`offboard-audit exempt add`) to stop that",
            highlight=False,
            soft_wrap=True,
        )
    return EXIT_OK if report.ok else EXIT_REFUSED
