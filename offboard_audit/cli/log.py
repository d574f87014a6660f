"""Commands: log verify (the audit log: chain, MACs, anchors, actions table) and log anchor."""

from __future__ import annotations

import typer

from offboard_audit.cli.app import EXIT_OK, app, err, fail, now_utc, state
from offboard_audit.cli.common import EXIT_REFUSED, actor, emit
from offboard_audit.report.audit_trail import AUDIT_KEY_SET, AuditTrail, anchor_head, check_trail
from offboard_audit.report.table import markup_safe, plain
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.store import Store

# Typer reads help text as rich markup: "\[audit]" in a docstring shows "[audit]" (a bare one
# would be taken for a style tag and vanish).
log_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(log_app, name="log")


@log_app.command("verify")
def log_verify(
    ctx: typer.Context,
    head: str | None = typer.Option(
        None, "--head", help="A head hash printed by an earlier verify: prove nothing was cut off since."
    ),
) -> int:
    r"""Check the audit log: its hash chain, the MACs (\[audit] key_env), the anchors (\[audit]
    anchor_file) and the actions table against it; exit 1 naming each problem."""
    st = state(ctx)
    config = st.config_if_any()
    trail = AuditTrail.from_config(config)
    store = st.store(config)
    check = check_trail(store, trail, expected_head=head)
    result = check.result
    # stderr: what this verification proves (stdout stays one line ending in the head hash).
    err.print(plain(f"mode: {check.mode}"), highlight=False, soft_wrap=True)
    for line in [*check.proves, *check.notes]:
        err.print(plain(f"  {line}"), highlight=False, soft_wrap=True)
    for line in check.warnings:
        err.print(f"[bold yellow]warning:[/] {markup_safe(line)}", highlight=False, soft_wrap=True)
    if check.ok:
        emit(f"ok: {result.events} events, chain intact; head {result.head_seq} {result.head_hash}")
        return EXIT_OK
    for p in result.problems:
        err.print(f"[bold red]broken:[/] {markup_safe(p)}", highlight=False, soft_wrap=True)
    for line in check.anchor_problems:
        err.print(f"[bold red]broken:[/] {markup_safe(line)}", highlight=False, soft_wrap=True)
    for d in check.discrepancies:
        err.print(f"[bold red]discrepancy:[/] {markup_safe(d)}", highlight=False, soft_wrap=True)
    counts = [f"{len(result.problems) + len(check.anchor_problems)} problem(s)"]
    if check.discrepancies:
        counts.append(f"{len(check.discrepancies)} actions-table discrepancy(ies)")
    emit(f"BROKEN: {', '.join(counts)} in {result.events} events")
    return EXIT_REFUSED


@log_app.command("anchor")
def log_anchor(
    ctx: typer.Context,
    start_keyed: bool = typer.Option(
        False,
        "--start-keyed",
        help="The audit key is newly set on a log none of whose events carries a MAC: first append one "
        "keyed event (audit-key-set) that starts the keyed part, then anchor. Refused once any event "
        "carries a MAC.",
    ),
) -> int:
    r"""Append the log's current head to \[audit] anchor_file (after checking it: run this when you
    set up anchoring, so that the events written before are anchored too; with --start-keyed when
    you set \[audit] key_env at the same time on a log written without it)."""
    st = state(ctx)
    config = st.config_if_any()
    trail = AuditTrail.from_config(config)
    if trail.anchor_file is None:
        raise fail("no anchor file: set [audit] anchor_file in the config")
    store = st.store(config)
    started = _start_keyed(store, trail) if start_keyed else None
    check = check_trail(store, trail, anchoring_now=started)
    if not check.ok:
        for line in check.problems:
            err.print(f"[bold red]broken:[/] {markup_safe(line)}", highlight=False, soft_wrap=True)
        err.print(plain("refused: the log does not verify, so its head is not anchored"), highlight=False)
        return EXIT_REFUSED
    anchor = anchor_head(store, trail, now_utc())
    if anchor is None:
        emit("nothing to anchor: the audit log is empty")
        return EXIT_OK
    emit(f"anchored: head {anchor.seq} {anchor.hash} ({anchor.count} events) in {trail.anchor_file}")
    return EXIT_OK


def _start_keyed(store: Store, trail: AuditTrail) -> int:
    """Append the keyed event that starts the keyed part of a log written without the key.

    Only while no event carries a MAC: a chain whose MACs were stripped reads the same as one
    never keyed, and this must not vouch for it (verify names that case). The events before stay
    unkeyed; verify says what each part proves."""
    if trail.key is None:
        raise fail("--start-keyed needs the audit key: set [audit] key_env (and the variable it names)")
    keyed = next((ev.seq for ev in iter_events(store) if ev.mac), None)
    if keyed is not None:
        raise fail(
            f"--start-keyed refused: event {keyed} already carries a MAC, so the keyed part has begun; "
            "run `log verify` to see what it finds"
        )
    event = append_event(store, NewEvent(AUDIT_KEY_SET, now_utc(), actor(), {"key_id": trail.key.key_id}))
    err.print(plain(f"appended event {event.seq} (audit-key-set): the keyed part of the log starts here"))
    return event.seq
