"""The sections of ``offboard-audit.toml`` other than ``[database]`` and ``[[sources]]``: each
one's documented keys (``config reference`` prints them), its record and its parser.

Every parser takes the section's table and raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from offboard_audit.core import selectors
from offboard_audit.core.audit_chain import MIN_KEY_BYTES, ChainKey
from offboard_audit.core.cron import parse_cron
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.policy import PolicyConfig

# Documented here once; README and `config check` print them from this table.
POLICY_OPTIONS: dict[str, str] = {
    "grace_period": 'time after termination before a finding is due for revocation ("0h", "4h", "2d")',
    "auto_revoke": "daemon and webhook apply the plan themselves (the CLI needs --apply regardless)",
    "max_people_per_run": "blast-radius cap: a plan that revokes the access of more people than this "
    "is refused whole (default 25)",
    "max_actions_per_run": "blast-radius cap: a plan with more actions than this is refused whole "
    "(default 1000; a leaver in many groups has many actions)",
    "max_revocations_per_run": "old name of max_people_per_run, still read (setting both is an error)",
    "max_new_terminations": "HR circuit breaker: largest share of the workforce newly terminated "
    "since the last good HR read before nothing is revoked (0.05 = 5%); a termination dated in the future "
    "counts on the read that first lists it; the workforce is everybody the last good read did not have as "
    "terminated, and newcomers (leavers kept from earlier reads do not dilute the share)",
    "max_missing_people": "HR circuit breaker: largest share of the people in the last good HR read "
    "that may be missing from a new one before nothing is revoked (default 0.05 = 5%); terminated people "
    "who drop out do not count (they are kept as terminated)",
    "max_rehires": "HR circuit breaker: largest share of the people terminated in the last good HR read "
    "that a new read may list as not terminated again (rehired) before nothing is revoked (default "
    "0.05 = 5%); a share of the leavers, not of the workforce, so a feed that resets every status to "
    "active trips it however few the leavers are, while a rehire or two stays under min_breaker_count",
    "min_breaker_count": "HR circuit breaker: a share above its limit trips the breaker only when the "
    "count behind it (newly terminated, missing, rehired, terminated by webhook) is also above this "
    "(default 3), so one termination in a small organisation does not stop everything",
    "orphan_accounts": "report enabled human accounts that match nobody in HR",
    "protected": 'selectors never revoked: "PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]", PREFIX a source '
    "name or system, globs allowed; a configured source or system name alone protects all of it, "
    "any other word without a colon is an error",
    "delete_after": "after this long disabled, plan the delete stage (unset: never delete)",
    "service_accounts_owned": "also flag credentials of service accounts owned by a departed person",
    "auto_rotate_secrets": "exposure findings: plan Secrets Manager RotateSecret for a secret a leaver "
    "could carry away, only where its rotation is already configured (default false: plan lists "
    "rotate tasks with their owner and rotates nothing)",
}
AUDIT_OPTIONS = {
    "key_env": "environment variable holding the audit key (at least "
    f"{MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`): every audit event gets an HMAC with it, "
    "and plan files are signed with it. Events written before it was set stay unkeyed "
    '(docs/revocation.md, "What the audit trail proves")',
    "anchor_file": "JSON-lines file outside the database: after each pass that appended audit "
    "events, the head (sequence number, hash) and the number of events are appended to it (created "
    "0600); `log verify` checks the database against every line. Keep it where the database's "
    "writers cannot rewrite it (another host, an append-only file, a log shipper)",
}
SCHEDULE_OPTIONS = {
    "audit": 'cron for the full reconcile (default "*/15 * * * *"): 5 fields, or 6 with seconds first; '
    "day of week 0 and 7 are Sunday; read as cron reads it (docs/daemon.md, Cron expressions)",
    "hr_refresh": "cron for an HR-only refresh (optional; read as `audit` is)",
    "timezone": "time zone the cron expressions are read in (default UTC)",
    "misfire_grace_time": 'how late a missed run may still start ("5m")',
}
WEBHOOK_OPTIONS = {
    "listen": "HOST:PORT the webhook and metrics server binds to, the port from 1 to 65535 "
    '(default "127.0.0.1:8787")',
    "secret_env": "environment variable holding the HMAC secret shared with the HR system",
    "enabled": "serve the webhook at all (default true)",
    "undo_on_rehire": "on employee.rehired, undo that person's revocations (default false)",
    "job_lease": "how long a daemon owns a webhook job without renewing it before another replica takes "
    'it over (default "30s")',
    "retry_backoff": "a job whose read of its person failed is incomplete and retried after this long, "
    'doubling at each attempt (default "30s")',
    "retry_max_backoff": 'the longest wait between two attempts of an incomplete job (default "15m")',
    "event_retention": "how long accepted event ids are kept for the replay check (at least twice the "
    '5-minute signature window; default "1d"); bodies are dropped once their job is finished',
}
MATCHING_OPTIONS = {
    "username_rules": 'how a person\'s usernames are derived: "alias", "email_local", or templates '
    'using {first} {last} {first_initial} {email_local} {employee_id} (default ["alias", "email_local"])',
}
NOTIFICATION_OPTIONS = {
    "urls": "http(s) webhook URLs that get a JSON message (Slack-compatible `text`) on new "
    "critical/high findings, a tripped circuit breaker or failed actions",
    "urls_env": "environment variable with more URLs, comma separated (for URLs that embed tokens)",
    "timeout": 'per-request timeout ("5s")',
    "retries": "retries per URL before a notification can be given up (default 3)",
    "backoff": 'wait before the first retry, doubling at each retry (default "5s")',
    "max_backoff": 'the longest wait between two retries (default "10m")',
    "retry_for": "a notification is given up (undeliverable) only once it has been retried `retries` "
    'times and is older than this (default "1h")',
}


@dataclass(frozen=True)
class ScheduleConfig:
    audit: str = "*/15 * * * *"
    hr_refresh: str | None = None
    timezone: str = "UTC"
    misfire_grace_time: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        # Checked here, not by the reader of the file, so that a ScheduleConfig built in code
        # (tests, embedding) is refused the same way.
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'unknown time zone {self.timezone!r} (an IANA name such as "Europe/Berlin")'
            ) from None

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the cron expressions are read in."""
        return ZoneInfo(self.timezone)


# Replayed webhook event ids must be remembered for at least twice the signature window (5 min).
MIN_EVENT_RETENTION = timedelta(minutes=10)


@dataclass(frozen=True)
class WebhookConfig:
    listen: str = "127.0.0.1:8787"
    secret_env: str = "OFFBOARD_WEBHOOK_SECRET"
    enabled: bool = True
    undo_on_rehire: bool = False
    job_lease: timedelta = timedelta(seconds=30)
    retry_backoff: timedelta = timedelta(seconds=30)
    retry_max_backoff: timedelta = timedelta(minutes=15)
    event_retention: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        # Here, as ScheduleConfig checks its zone, so that a config built in code is refused too.
        listen_address(self.listen)

    @property
    def host_port(self) -> tuple[str, int]:
        return listen_address(self.listen)


def listen_address(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); ValueError unless the port is one a socket can bind (a port
    over 65535 was accepted, and the daemon died at bind time with an OverflowError traceback)."""
    host, _, port = listen.rpartition(":")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class NotificationConfig:
    urls: tuple[str, ...] = ()
    urls_env: str | None = None
    timeout: timedelta = timedelta(seconds=5)
    retries: int = 3
    backoff: timedelta = timedelta(seconds=5)
    max_backoff: timedelta = timedelta(minutes=10)
    retry_for: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: the keyed chain and the anchors. ``key`` is read from the environment
    variable ``key_env`` names; it is never printed (``ChainKey`` hides it from ``repr``)."""

    key_env: str | None = None
    anchor_file: Path | None = None
    key: ChainKey | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MatchingConfig:
    username_rules: tuple[str, ...] = ("alias", "email_local")


def reject_unknown(table: SourceOptions, known: Mapping[str, str]) -> None:
    for key in table:
        if key not in known:
            hint = ", ".join(sorted(known)) or "none"
            raise table.error(key, f"unknown key (known here: {hint})")


def _people_cap(table: SourceOptions) -> int:
    """``policy.max_people_per_run``, or its old name ``max_revocations_per_run`` (not both)."""
    if "max_revocations_per_run" in table and "max_people_per_run" in table:
        raise table.error(
            "max_revocations_per_run", "is the old name of max_people_per_run: set only one of them"
        )
    if "max_revocations_per_run" in table:
        return table.integer("max_revocations_per_run", 25, minimum=0)
    return table.integer("max_people_per_run", 25, minimum=0)


def policy_config(table: SourceOptions) -> PolicyConfig:
    """``[policy]``."""
    reject_unknown(table, POLICY_OPTIONS)
    max_new = table.number("max_new_terminations", 0.05)
    if not 0 <= max_new <= 1:
        raise table.error("max_new_terminations", f"must be a share between 0 and 1, got {max_new}")
    max_missing = table.number("max_missing_people", 0.05)
    if not 0 <= max_missing <= 1:
        raise table.error("max_missing_people", f"must be a share between 0 and 1, got {max_missing}")
    max_rehires = table.number("max_rehires", 0.05)
    if not 0 <= max_rehires <= 1:
        raise table.error("max_rehires", f"must be a share between 0 and 1, got {max_rehires}")
    return PolicyConfig(
        grace_period=table.duration("grace_period", timedelta(0)),
        auto_revoke=table.flag("auto_revoke", False),
        max_people_per_run=_people_cap(table),
        max_actions_per_run=table.integer("max_actions_per_run", 1000, minimum=0),
        max_new_terminations=max_new,
        max_missing_people=max_missing,
        max_rehires=max_rehires,
        min_breaker_count=table.integer("min_breaker_count", 3, minimum=0),
        orphan_accounts=table.flag("orphan_accounts", True),
        protected=table.strings("protected"),
        delete_after=table.duration("delete_after") if "delete_after" in table else None,
        service_accounts_owned=table.flag("service_accounts_owned", True),
        auto_rotate_secrets=table.flag("auto_rotate_secrets", False),
    )


def check_protected(table: SourceOptions, protected: Iterable[str], prefixes: frozenset[str]) -> None:
    """``policy.protected`` against the configured sources (parsed after ``[policy]``): a word
    without a colon that names none of them protects nothing, silently."""
    for selector in protected:
        problem = selectors.selector_problem(selector, prefixes, bare_source=True)
        if problem is not None:
            raise table.error("protected", problem)


def audit_config(table: SourceOptions, env: Mapping[str, str]) -> AuditConfig:
    """``[audit]``: the key is read from the variable ``key_env`` names."""
    reject_unknown(table, AUDIT_OPTIONS)
    key_env = table.opt_str("key_env")
    key: ChainKey | None = None
    if key_env:
        secret = table.secret("key_env", env)
        assert secret is not None
        try:
            key = ChainKey(secret.encode("utf-8"))
        except ValueError as exc:
            raise table.error("key_env", f"${key_env}: {exc}") from None
    anchor = table.opt_file_path("anchor_file")
    return AuditConfig(key_env=key_env or None, anchor_file=anchor, key=key)


def schedule_config(table: SourceOptions) -> ScheduleConfig:
    """``[schedule]``: the cron expressions are checked field by field (``core/cron.py``)."""
    reject_unknown(table, SCHEDULE_OPTIONS)
    audit = table.opt_str("audit", "*/15 * * * *") or "*/15 * * * *"
    hr_refresh = table.opt_str("hr_refresh")
    timezone = table.opt_str("timezone", "UTC") or "UTC"
    grace = table.duration("misfire_grace_time", timedelta(minutes=5))
    try:
        schedule = ScheduleConfig(audit, hr_refresh, timezone, grace)
    except ValueError as exc:
        raise table.error("timezone", str(exc)) from None
    for key in ("audit", "hr_refresh"):
        expr = getattr(schedule, key)
        if expr is None:
            continue
        try:
            parse_cron(expr)
        except ValueError as exc:
            raise table.error(key, f"not a valid cron expression: {exc}") from None
    return schedule


def webhook_config(table: SourceOptions) -> WebhookConfig:
    """``[webhook]``: durations, backoffs and the listen address checked."""
    reject_unknown(table, WEBHOOK_OPTIONS)
    listen = table.opt_str("listen", "127.0.0.1:8787") or "127.0.0.1:8787"
    try:
        listen_address(listen)
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None
    webhook = WebhookConfig(
        listen=listen,
        secret_env=table.opt_str("secret_env", "OFFBOARD_WEBHOOK_SECRET") or "OFFBOARD_WEBHOOK_SECRET",
        enabled=table.flag("enabled", True),
        undo_on_rehire=table.flag("undo_on_rehire", False),
        job_lease=table.duration("job_lease", timedelta(seconds=30)),
        retry_backoff=table.duration("retry_backoff", timedelta(seconds=30)),
        retry_max_backoff=table.duration("retry_max_backoff", timedelta(minutes=15)),
        event_retention=table.duration("event_retention", timedelta(days=1)),
    )
    if webhook.job_lease <= timedelta(0):
        raise table.error("job_lease", "must be longer than 0s")
    if webhook.retry_backoff <= timedelta(0):
        raise table.error("retry_backoff", "must be longer than 0s")
    if webhook.retry_max_backoff < webhook.retry_backoff:
        raise table.error("retry_max_backoff", "must be at least retry_backoff")
    if webhook.event_retention < MIN_EVENT_RETENTION:
        raise table.error(
            "event_retention", "must be at least 10m (twice the webhook's 5-minute signature window)"
        )
    return webhook


def notification_config(table: SourceOptions, env: Mapping[str, str]) -> NotificationConfig:
    """``[notifications]``: every URL (those in ``$urls_env`` too, when it is set) is http(s)."""
    reject_unknown(table, NOTIFICATION_OPTIONS)
    # Named by position, never shown: a URL may carry its token (NOTIFICATION_OPTIONS).
    for n, url in enumerate(table.strings("urls", shown=False), start=1):
        if problem := _url_problem(url):
            raise table.error("urls", f"URL {n}: {problem}")
    var = table.opt_str("urls_env")
    env_urls = [u.strip() for u in env.get(var, "").split(",") if u.strip()] if var else []
    for n, url in enumerate(env_urls, start=1):
        if problem := _url_problem(url):
            raise table.error("urls_env", f"${var}, URL {n}: {problem}")
    notifications = NotificationConfig(
        urls=table.strings("urls", shown=False),
        urls_env=table.opt_str("urls_env"),
        timeout=table.duration("timeout", timedelta(seconds=5)),
        retries=table.integer("retries", 3, minimum=0),
        backoff=table.duration("backoff", timedelta(seconds=5)),
        max_backoff=table.duration("max_backoff", timedelta(minutes=10)),
        retry_for=table.duration("retry_for", timedelta(hours=1)),
    )
    if notifications.max_backoff < notifications.backoff:
        raise table.error("max_backoff", "must be at least backoff")
    return notifications


def _url_problem(url: str) -> str | None:
    """Why the notifier (httpx) cannot post to ``url``, or None: it speaks http and https only."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return f"must start with http:// or https:// (it has {scheme})"
    if not parts.hostname:
        return "has no host (https://HOST/...)"
    return None


def matching_config(table: SourceOptions) -> MatchingConfig:
    """``[matching]``."""
    reject_unknown(table, MATCHING_OPTIONS)
    return MatchingConfig(username_rules=table.strings("username_rules", ("alias", "email_local")))
