"""Commands: plan, revoke, undo, report, exempt add/list/remove, log verify.

Exit codes: 0 done (or nothing to do); 1 refused (blast-radius cap, circuit breaker, stale or
edited plan, lock held), an action failed, an undo hit an irreversible action, or the audit
log's chain is broken; 2 usage or config error.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from offboard_audit import output
from offboard_audit.audit_log import verify_chain
from offboard_audit.cli.app import EXIT_FINDINGS, EXIT_OK, app, err, fail, now_utc, source_context, state
from offboard_audit.config import Config
from offboard_audit.evidence import collect_evidence, evidence_html, evidence_json
from offboard_audit.planning import (
    TARGET_CHANGED,
    Plan,
    PlanFile,
    PlanFileError,
    plan_json,
    read_plan_json,
)
from offboard_audit.records import Exemption
from offboard_audit.revocation import ApplyReport, RevocationEngine
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.store import Store

exempt_app = typer.Typer(
    help="Exemptions: credentials that must not be revoked, until a date.", no_args_is_help=True
)
log_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(exempt_app, name="exempt")
app.add_typer(log_app, name="log")

EXIT_REFUSED = EXIT_FINDINGS


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}"


def _engine(ctx: typer.Context) -> tuple[Config, Store, RevocationEngine]:
    st = state(ctx)
    config = st.config()
    store = st.store(config)
    engine = RevocationEngine(
        config,
        store,
        source_context(config),
        _actor(),
        reporter=lambda m: err.print(m, highlight=False, soft_wrap=True),
    )
    return config, store, engine


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _check_fmt(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in allowed:
        raise fail(f"--format must be one of {', '.join(allowed)}; got {fmt!r}")


def _plan_table(plan: Plan) -> Table:
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


def _held_table(plan: Plan) -> Table:
    table = Table(title="listed, not planned", header_style="bold")
    for col in ("finding", "rule", "source", "account", "credential", "why"):
        table.add_column(col)
    for h in plan.held:
        table.add_row(h.finding_id, h.rule.value, h.source, h.username, h.credential_id or "-", h.reason)
    return table


def _print_plan(plan: Plan) -> None:
    console = output.console()
    if plan.actions:
        console.print(_plan_table(plan))
        for a in plan.actions:
            if not a.reversible:
                console.print(
                    f"[bold red]irreversible:[/] {a.action} on {a.username} {a.credential_id}: {a.description}"
                )
    else:
        console.print("no actions to plan")
    if plan.held:
        console.print(_held_table(plan))
    if plan.done:
        console.print(f"{len(plan.done)} action(s) already applied earlier are not planned again")


@app.command()
def plan(
    ctx: typer.Context,
    output_file: Path | None = typer.Option(
        None, "--output", help="Write the plan (JSON, with checksum) to FILE."
    ),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    finding: list[str] = typer.Option([], "--finding", help="Only these finding ids (repeatable)."),
    person: str | None = typer.Option(None, "--person", help="Only this employee id."),
) -> int:
    """The revocation plan for open findings past their grace period (changes nothing)."""
    _check_fmt(fmt, ("table", "json"))
    _config, store, engine = _engine(ctx)
    now = now_utc()
    _check_findings(store, finding)
    the_plan = engine.plan(now, finding_ids=finding, person=person)
    body = plan_json(the_plan)
    breaker = engine.stored_breaker()
    if output_file is not None:
        output_file.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        err.print(f"wrote {output_file} (apply with: offboard-audit revoke --plan {output_file} --apply)")
    if fmt == "json":
        _emit(output.dumps({**body, "circuit_breaker": breaker}))
    else:
        _print_plan(the_plan)
    if breaker:
        err.print(
            f"[bold yellow]note:[/] revoke would refuse right now: {breaker}", highlight=False, soft_wrap=True
        )
    return EXIT_OK


def _check_findings(store: Store, ids: Sequence[str]) -> None:
    if not ids:
        return
    known = {f.finding_id for f in store.list_findings(None, finding_ids=list(ids))}
    missing = [i for i in ids if i not in known]
    if missing:
        raise fail(f"unknown finding id(s): {', '.join(missing)}")


def _outcomes_table(report: ApplyReport, title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for col in ("action id", "person", "source", "account", "credential", "action", "result", "detail"):
        table.add_column(col)
    style = {
        "applied": "green",
        "restored": "green",
        "failed": "bold red",
        "irreversible": "bold red",
        "skipped": "yellow",
    }
    for o in (*report.recovered, *report.outcomes):
        s = style.get(o.status)
        result = f"[{s}]{o.status}[/]" if s else o.status
        table.add_row(
            o.action_id or "-",
            o.person or "-",
            o.source,
            o.account,
            o.credential_id,
            o.action + (f" (undo of {o.undo_of})" if o.undo_of else ""),
            result,
            o.error or o.message,
        )
    return table


def _report_json(report: ApplyReport) -> dict[str, object]:
    def one(o: object) -> dict[str, object]:
        return dict(vars(o)) if hasattr(o, "__dict__") else {}

    return {
        "refused": report.refused,
        "dry_run": report.dry_run,
        "limit": report.limit,
        "plan_id": report.plan.plan_id if report.plan else None,
        "recovered": [one(o) for o in report.recovered],
        "outcomes": [one(o) for o in report.outcomes],
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


def _print_report(report: ApplyReport, fmt: str, what: str) -> None:
    if fmt == "json":
        _emit(output.dumps(_report_json(report)))
        return
    console = output.console()
    if (report.dry_run or report.refused) and report.plan is not None and report.plan.actions:
        console.print(_plan_table(report.plan))
    elif report.outcomes or report.recovered:
        console.print(_outcomes_table(report, what))
    if report.plan is not None and report.plan.held:
        console.print(_held_table(report.plan))


@app.command()
def revoke(
    ctx: typer.Context,
    plan_path: Path | None = typer.Option(
        None, "--plan", help="Apply exactly this plan file (from `plan --output`)."
    ),
    finding: list[str] = typer.Option([], "--finding", help="Only these finding ids (repeatable)."),
    person: str | None = typer.Option(None, "--person", help="Only this employee id."),
    max_actions: int | None = typer.Option(
        None, "--max", min=0, help="Blast-radius cap for this run (overrides policy)."
    ),
    apply: bool = typer.Option(False, "--apply", help="Really change things (default: dry run)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> int:
    """Revoke what the plan says: a dry run unless --apply."""
    _check_fmt(fmt, ("table", "json"))
    _config, store, engine = _engine(ctx)
    _check_findings(store, finding)
    plan_file: PlanFile | None = None
    if plan_path is not None:
        try:
            plan_file = read_plan_json(json.loads(plan_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise fail(f"plan file {plan_path} not found") from None
        except (PlanFileError, json.JSONDecodeError) as exc:
            err.print(f"[bold red]refused:[/] plan file {plan_path}: {exc}", highlight=False, soft_wrap=True)
            return EXIT_REFUSED
    report = engine.revoke(
        now_utc(),
        apply=apply,
        finding_ids=finding,
        person=person,
        max_actions=max_actions,
        plan_file=plan_file,
    )
    _print_report(report, fmt, "revocation results")
    for o in report.recovered:
        err.print(
            f"recovered interrupted action {o.action_id}: {o.status} ({o.error or o.message})",
            highlight=False,
            soft_wrap=True,
        )
    if report.refused is not None:
        err.print(f"[bold red]refused:[/] {report.refused}", highlight=False, soft_wrap=True)
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
    changed_targets = sum(1 for o in report.outcomes if o.status == TARGET_CHANGED)
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
        None, help="The action to undo (see `revoke` output or `report`)."
    ),
    person: str | None = typer.Option(
        None, "--person", help="Undo every applied action of this employee id."
    ),
    apply: bool = typer.Option(False, "--apply", help="Really restore (default: dry run)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> int:
    """Restore what an action (or all actions for a person) changed, from the recorded prior state."""
    _check_fmt(fmt, ("table", "json"))
    if (action_id is None) == (person is None):
        raise fail("give either ACTION_ID or --person EMPLOYEE_ID")
    _config, _store, engine = _engine(ctx)
    now = now_utc()
    if action_id is not None:
        report = engine.undo_action(action_id, now, apply=apply)
    else:
        assert person is not None
        report = engine.undo_person(person, now, apply=apply)
    _print_report(report, fmt, "undo results" if apply else "undo (dry run)")
    if report.refused is not None:
        err.print(f"[bold red]refused:[/] {report.refused}", highlight=False, soft_wrap=True)
        return EXIT_REFUSED
    if not report.outcomes:
        err.print("nothing to undo", highlight=False, soft_wrap=True)
        return EXIT_OK
    for o in report.outcomes:
        if o.status == "irreversible":
            err.print(
                f"[bold red]irreversible:[/] {o.action_id} {o.action} on {o.account} {o.credential_id}: {o.error}",
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


@app.command()
def report(
    ctx: typer.Context,
    person: str = typer.Option(..., "--person", help="Employee id of the departed person."),
    fmt: str = typer.Option("json", "--format", help="json or html."),
    output_file: Path | None = typer.Option(None, "--output", help="Write to FILE instead of stdout."),
) -> int:
    """Evidence pack for one leaver: accounts, credentials, last use, revocations, time to revoke."""
    _check_fmt(fmt, ("json", "html"))
    st = state(ctx)
    store = st.store()
    evidence = collect_evidence(store, person, now_utc())
    if not evidence.people and not evidence.credentials and not evidence.actions:
        raise fail(f"nothing is known about employee id {person!r}")
    text = output.dumps(evidence_json(evidence)) if fmt == "json" else evidence_html(evidence)
    if output_file is not None:
        output_file.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err.print(f"wrote {output_file}")
    else:
        _emit(text)
    return EXIT_OK


# --- exemptions ---------------------------------------------------------------------------


def parse_until(value: str, now: datetime) -> datetime:
    """``YYYY-MM-DD`` (through the end of that day, UTC) or an ISO date-time with offset."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--until must be a date (YYYY-MM-DD) or an ISO date-time; got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


@exempt_app.command("add")
def exempt_add(
    ctx: typer.Context,
    selector: str = typer.Argument(..., help="SOURCE_OR_SYSTEM:ACCOUNT[:CREDENTIAL], globs allowed."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    until: str = typer.Option(..., "--until", help="Expiry: YYYY-MM-DD (end of day UTC) or ISO date-time."),
    by: str | None = typer.Option(None, "--by", help="Who approved it (default: the current user)."),
) -> int:
    """Exempt matching credentials from revocation until a date."""
    now = now_utc()
    if not selector.strip() or not reason.strip():
        raise fail("the selector and --reason must not be empty")
    expires = parse_until(until, now)
    if expires <= now:
        raise fail(f"--until {until} is in the past")
    st = state(ctx)
    store = st.store()
    ex = Exemption(
        exemption_id="x-" + uuid.uuid4().hex[:10],
        selector=selector.strip(),
        reason=reason.strip(),
        until=expires,
        created_by=by or _actor().removeprefix("cli:"),
        created_at=now,
    )
    store.add_exemption(ex)
    append_event(
        store,
        NewEvent(
            "exemption-added",
            now,
            _actor(),
            {
                "exemption_id": ex.exemption_id,
                "selector": ex.selector,
                "reason": ex.reason,
                "until": ex.until.isoformat(),
                "by": ex.created_by,
            },
        ),
    )
    _emit(ex.exemption_id)
    err.print(
        f"exemption {ex.exemption_id} for {ex.selector!r} until {ex.until.isoformat()}; the next audit applies it"
    )
    return EXIT_OK


@exempt_app.command("list")
def exempt_list(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table or json."),
    all_: bool = typer.Option(False, "--all", help="Include removed exemptions."),
) -> int:
    """Exemptions, with whether each still applies."""
    _check_fmt(fmt, ("table", "json"))
    store = state(ctx).store()
    now = now_utc()
    rows = store.list_exemptions(include_removed=all_)
    if fmt == "json":
        _emit(
            output.dumps(
                [
                    {
                        "id": e.exemption_id,
                        "selector": e.selector,
                        "reason": e.reason,
                        "until": e.until.isoformat(),
                        "by": e.created_by,
                        "created_at": e.created_at.isoformat(),
                        "active": e.active(now),
                    }
                    for e in rows
                ]
            )
        )
        return EXIT_OK
    if not rows:
        output.console().print("no exemptions")
        return EXIT_OK
    table = Table(title="exemptions", header_style="bold")
    for col in ("id", "selector", "until", "state", "by", "reason"):
        table.add_column(col)
    for e in rows:
        table.add_row(
            e.exemption_id,
            e.selector,
            e.until.isoformat(),
            "active" if e.active(now) else "expired",
            e.created_by,
            e.reason,
        )
    output.console().print(table)
    return EXIT_OK


@exempt_app.command("remove")
def exempt_remove(ctx: typer.Context, exemption_id: str = typer.Argument(..., help="Exemption id.")) -> int:
    """Remove an exemption; the next audit reports its findings again."""
    store = state(ctx).store()
    now = now_utc()
    if not store.remove_exemption(exemption_id, now):
        raise fail(f"no active exemption with id {exemption_id!r}")
    append_event(store, NewEvent("exemption-removed", now, _actor(), {"exemption_id": exemption_id}))
    err.print(f"removed {exemption_id}")
    return EXIT_OK


# --- audit log ----------------------------------------------------------------------------


@log_app.command("verify")
def log_verify(
    ctx: typer.Context,
    head: str | None = typer.Option(
        None, "--head", help="A head hash printed by an earlier verify: prove nothing was cut off since."
    ),
) -> int:
    """Check the audit log's hash chain; exit 1 naming each edited, reordered or deleted event."""
    store = state(ctx).store()
    result = verify_chain(iter_events(store), expected_head=head)
    if result.ok:
        _emit(f"ok: {result.events} events, chain intact; head {result.head_seq} {result.head_hash}")
        return EXIT_OK
    for p in result.problems:
        err.print(f"[bold red]broken:[/] {p}", highlight=False, soft_wrap=True)
    _emit(f"BROKEN: {len(result.problems)} problem(s) in {result.events} events")
    return EXIT_REFUSED
