"""Commands: config check and config reference."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from offboard_audit.cli.app import (
    EXIT_OK,
    config_app,
    err,
    fail,
    source_context,
    state,
)
from offboard_audit.config import Config
from offboard_audit.core.matching import validate_username_rules
from offboard_audit.core.selectors import known_prefixes, unknown_prefix
from offboard_audit.report.audit_trail import AuditTrail
from offboard_audit.report.table import console_for, markup_safe, plain


def permissions_table(config: Config) -> Table:
    table = Table(title="sources and the permissions they need", header_style="bold", show_lines=True)
    for col in ("source", "type", "read needs", "revoke actions (permissions)"):
        table.add_column(col)
    for s in config.sources:
        actions = [
            f"{a.name} ({a.stage.value}{'' if a.reversible else ', irreversible'}): {', '.join(a.permissions)}"
            for a in s.plugin.revoker_actions.values()
        ]
        # Text, never markup: a permission such as "s3:ListBucket ([sources.exposure])" names a
        # config table in brackets, which rich would take for a style tag and drop.
        table.add_row(plain(s.name), plain(s.type), _lines(s.plugin.read_permissions), _lines(actions))
    return table


def _lines(values: Sequence[str]) -> Text:
    """One value a line, each as text; "-" for none."""
    return Text("\n").join(plain(v) for v in values) if values else plain("-")


def audit_mode(config: Config) -> str:
    """One line: the audit trail's mode (docs/revocation.md, "What the audit trail proves")."""
    a = config.audit
    parts = [f"audit log: {AuditTrail.from_config(config).mode}"]
    if a.key is not None:
        parts.append(f"key from ${a.key_env} (key id {a.key.key_id})")
    if a.anchor_file is not None:
        parts.append(f"anchors in {a.anchor_file}")
    return "; ".join(parts)


def schedule_lines(config: Config, now: datetime) -> list[str]:
    """One line per daemon schedule: its expression, its time zone and its next three runs."""
    from offboard_audit.daemon.scheduler import next_fire_times, schedule_trigger

    sched = config.schedule
    tz = ZoneInfo(sched.timezone)  # checked when the config was read
    lines = []
    for key, expr in (("audit", sched.audit), ("hr_refresh", sched.hr_refresh)):
        if expr is None:
            continue
        # Refused as the daemon refuses it at start: an expression that never fires.
        times = next_fire_times(schedule_trigger(key, expr, tz, now), now)
        when = ", ".join(f"{t:%a %Y-%m-%d %H:%M:%S}" for t in times)
        lines.append(f"schedule.{key} = {expr!r} ({sched.timezone}): next runs {when}")
    return lines


def readiness_warnings(config: Config, env: Mapping[str, str]) -> list[str]:
    """What the file allows but a command will refuse later: warnings, not errors, as the
    missing prerequisite may be provided after the check (an HR export written by a job, the
    webhook secret set only in the daemon's environment)."""
    warnings = []
    if not config.hr_sources:
        warnings.append("no HR source configured; audits will refuse to run")
    for s in config.hr_sources:
        if "path" in s.options and not (path := s.options.file_path("path")).is_file():
            state = "is not a file" if path.exists() else "does not exist (yet)"
            problem = f"HR file {path} {state}: audits fail on this source until it is there"
            warnings.append(str(s.options.error("path", problem)))
    # A protected selector for a system not configured yet is allowed (the starter config
    # protects aws:root before any AWS source exists), but it protects nothing: say so.
    prefixes = known_prefixes((s.name, s.system) for s in config.sources)
    for selector in config.policy.protected:
        if (nothing := unknown_prefix(selector, prefixes)) is not None:
            warnings.append(str(config.error("policy.protected", f"{nothing}: it protects nothing")))
    webhook = config.webhook
    if webhook.enabled and not env.get(webhook.secret_env):
        # What the daemon refuses at start (daemon/service.check_webhook_secret).
        problem = (
            f"environment variable {webhook.secret_env} is not set: the daemon will refuse to start "
            "its webhook (set it there, or set [webhook] enabled = false, or run it with --no-webhook)"
        )
        warnings.append(str(config.error("webhook.secret_env", problem)))
    return warnings


@config_app.command("check")
def config_check(ctx: typer.Context) -> int:
    """Validate the config file and print the permissions each source needs."""
    st = state(ctx)
    config = st.config()
    problems = validate_username_rules(config.matching.username_rules)
    if problems:
        raise fail("matching.username_rules: " + "; ".join(problems))
    sctx = source_context(config)
    for s in config.sources:
        s.plugin.make_source(s.options, sctx)  # builds only; raises ConfigError naming the key
    # Every check before the first line of output: "ok" means all of them passed.
    schedules = schedule_lines(config, datetime.now(UTC))
    warnings = readiness_warnings(config, sctx.env)
    console = console_for()
    # Never the password: masked in the URL, and named by its variable when it came from one.
    password_from = f", password from ${config.database_password_env}" if config.database_password_env else ""
    console.print(
        f"[green]ok[/]: {markup_safe(config.path)} ({len(config.sources)} sources, "
        f"database {markup_safe(config.database_url_masked)}{markup_safe(password_from)})"
    )
    console.print(plain(audit_mode(config)))
    console.print(permissions_table(config))
    pol = config.policy
    console.print(
        plain(
            f"policy: grace_period={pol.grace_period}, auto_revoke={pol.auto_revoke}, "
            f"max_people_per_run={pol.max_people_per_run}, max_actions_per_run={pol.max_actions_per_run}, "
            f"max_new_terminations={pol.max_new_terminations}, max_missing_people={pol.max_missing_people}, "
            f"max_rehires={pol.max_rehires}, min_breaker_count={pol.min_breaker_count}, protected={list(pol.protected)}"
        )
    )
    for line in schedules:
        console.print(plain(line))
    for warning in warnings:
        err.print(plain("warning: ", "yellow") + plain(warning), highlight=False)
    return EXIT_OK


@config_app.command("reference")
def config_reference() -> int:
    """Print the reference of every config option (Markdown)."""
    from offboard_audit.config.reference import config_reference_markdown

    sys.stdout.write(config_reference_markdown())
    return EXIT_OK
