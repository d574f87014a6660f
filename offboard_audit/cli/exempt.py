"""Commands: exempt add, list, remove."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import typer
from rich.table import Table

from offboard_audit.cli.app import EXIT_OK, app, err, fail, now_utc, state
from offboard_audit.cli.common import actor, check_format, emit
from offboard_audit.core.records import Exemption
from offboard_audit.core.selectors import known_prefixes, selector_problem, unknown_prefix
from offboard_audit.report.json import dumps
from offboard_audit.report.table import console_for, plain
from offboard_audit.storage.actions import NewEvent, append_event

exempt_app = typer.Typer(
    help="Exemptions: credentials that must not be revoked, until a date.", no_args_is_help=True
)
app.add_typer(exempt_app, name="exempt")


def parse_until(value: str, now: datetime) -> datetime:
    """``YYYY-MM-DD`` (through the end of that day, UTC) or an ISO date-time with offset.

    Any ISO date alone counts as a date (``20261231`` too, which ``datetime.fromisoformat``
    would read as midnight at the start of that day: an exemption ending a day early)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--until must be a date (YYYY-MM-DD) or an ISO date-time; got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


@exempt_app.command("add")
def exempt_add(
    ctx: typer.Context,
    selector: str = typer.Argument(
        ...,
        help="PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL] (PREFIX a source name or system), globs allowed; "
        "everything in a source or system is NAME:*.",
    ),
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
    config = st.config_if_any()
    # Without a config (--db alone) the sources are unknown: every bare word is refused then.
    prefixes = None if config is None else known_prefixes((s.name, s.system) for s in config.sources)
    problem = selector_problem(selector, prefixes, bare_source=False)
    if problem is None and prefixes is not None:
        problem = unknown_prefix(selector, prefixes)
    if problem is not None:
        raise fail(f"SELECTOR: {problem}")
    store = st.store(config)
    ex = Exemption(
        exemption_id="x-" + uuid.uuid4().hex[:10],
        selector=selector.strip(),
        reason=reason.strip(),
        until=expires,
        created_by=by or actor().removeprefix("cli:"),
        created_at=now,
    )
    store.add_exemption(ex)
    append_event(
        store,
        NewEvent(
            "exemption-added",
            now,
            actor(),
            {
                "exemption_id": ex.exemption_id,
                "selector": ex.selector,
                "reason": ex.reason,
                "until": ex.until.isoformat(),
                "by": ex.created_by,
            },
        ),
    )
    emit(ex.exemption_id)
    err.print(
        plain(
            f"exemption {ex.exemption_id} for {ex.selector!r} until {ex.until.isoformat()}; the next audit applies it"
        )
    )
    return EXIT_OK


@exempt_app.command("list")
def exempt_list(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table or json."),
    all_: bool = typer.Option(False, "--all", help="Include removed exemptions."),
) -> int:
    """Exemptions, with whether each still applies (state active, expired or removed)."""
    check_format(fmt, ("table", "json"))
    store = state(ctx).store()
    now = now_utc()
    rows = store.list_exemptions(include_removed=all_)
    if fmt == "json":
        emit(
            dumps(
                [
                    {
                        "id": e.exemption_id,
                        "selector": e.selector,
                        "reason": e.reason,
                        "until": e.until.isoformat(),
                        "by": e.created_by,
                        "created_at": e.created_at.isoformat(),
                        "active": e.active(now),
                        "state": e.state(now),
                        "removed_at": e.removed_at.isoformat() if e.removed_at is not None else None,
                    }
                    for e in rows
                ]
            )
        )
        return EXIT_OK
    if not rows:
        console_for().print("no exemptions")
        return EXIT_OK
    table = Table(title="exemptions", header_style="bold")
    for col in ("id", "selector", "until", "state", "by", "reason"):
        table.add_column(col)
    for e in rows:
        table.add_row(
            plain(e.exemption_id),
            plain(e.selector),
            plain(e.until.isoformat()),
            plain(e.state(now)),
            plain(e.created_by),
            plain(e.reason),
        )
    console_for().print(table)
    return EXIT_OK


@exempt_app.command("remove")
def exempt_remove(ctx: typer.Context, exemption_id: str = typer.Argument(..., help="Exemption id.")) -> int:
    """Remove an exemption; the next audit reports its findings again."""
    store = state(ctx).store()
    now = now_utc()
    if not store.remove_exemption(exemption_id, now):
        raise fail(f"no active exemption with id {exemption_id!r}")
    append_event(store, NewEvent("exemption-removed", now, actor(), {"exemption_id": exemption_id}))
    err.print(plain(f"removed {exemption_id}"))
    return EXIT_OK
