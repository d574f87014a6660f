"""Load and validate ``offboard-audit.toml``.

Every problem becomes a :class:`ConfigError` naming the key (``sources[2].url``) and, when
it can be found, the line of the file it is on.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from offboard_audit.config.registry import plugin_for
from offboard_audit.core.audit_chain import MIN_KEY_BYTES, ChainKey
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.protocols import ConnectorPlugin, MatchSpec, SourceKind
from offboard_audit.storage.db import mask_url, redact, url_password, with_password

DEFAULT_CONFIG_NAME = "offboard-audit.toml"
CONFIG_ENV = "OFFBOARD_AUDIT_CONFIG"
DB_ENV = "OFFBOARD_AUDIT_DB"

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
    "since the last good HR read before nothing is revoked (0.05 = 5%)",
    "max_missing_people": "HR circuit breaker: largest share of the people in the last good HR read "
    "that may be missing from a new one before nothing is revoked (default 0.05 = 5%)",
    "min_breaker_count": "HR circuit breaker: a share above its limit trips the breaker only when the "
    "count behind it (newly terminated, missing, terminated by webhook) is also above this "
    "(default 3), so one termination in a small organisation does not stop everything",
    "orphan_accounts": "report enabled human accounts that match nobody in HR",
    "protected": 'selectors never revoked: "SOURCE_OR_SYSTEM:ACCOUNT[:CREDENTIAL]", globs allowed',
    "delete_after": "after this long disabled, plan the delete stage (unset: never delete)",
    "service_accounts_owned": "also flag credentials of service accounts owned by a departed person",
    "auto_rotate_secrets": "exposure findings: plan Secrets Manager RotateSecret for a secret a leaver "
    "could carry away, only where its rotation is already configured (default false: plan lists "
    "rotate tasks with their owner and rotates nothing)",
}
TOP_LEVEL_KEYS = {
    "database",
    "policy",
    "schedule",
    "webhook",
    "sources",
    "matching",
    "notifications",
    "audit",
}
DATABASE_OPTIONS = {
    "url": "SQLAlchemy URL: sqlite:///file.db (relative to the config file) or "
    "postgresql+psycopg://user@host/db; --db and OFFBOARD_AUDIT_DB override it. A new SQLite file "
    "(and its -wal/-shm files) is created owner-only (0600). Printed with its password masked",
    "password_env": "environment variable holding the database password (leave it out of the URL); "
    "applies to whichever URL is used, --db and OFFBOARD_AUDIT_DB included",
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
    "audit": 'cron for the full reconcile (default "*/15 * * * *")',
    "hr_refresh": "cron for an HR-only refresh (optional)",
    "timezone": "time zone the cron expressions are read in (default UTC)",
    "misfire_grace_time": 'how late a missed run may still start ("5m")',
}
WEBHOOK_OPTIONS = {
    "listen": 'HOST:PORT the webhook and metrics server binds to (default "127.0.0.1:8787")',
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
    "urls": "webhook URLs that get a JSON message (Slack-compatible `text`) on new critical/high "
    "findings, a tripped circuit breaker or failed actions",
    "urls_env": "environment variable with more URLs, comma separated (for URLs that embed tokens)",
    "timeout": 'per-request timeout ("5s")',
    "retries": "retries per URL before a notification can be given up (default 3)",
    "backoff": 'wait before the first retry, doubling at each retry (default "5s")',
    "max_backoff": 'the longest wait between two retries (default "10m")',
    "retry_for": "a notification is given up (undeliverable) only once it has been retried `retries` "
    'times and is older than this (default "1h")',
}
SOURCE_COMMON_OPTIONS = {
    "name": "unique name of this source (used in findings, --source and selectors)",
    "type": "connector type",
    "enabled": "set false to keep the table but skip the source",
    "match": "table: employee_id = [attributes], email = [attributes] that identify the owner",
}


@dataclass(frozen=True)
class ScheduleConfig:
    audit: str = "*/15 * * * *"
    hr_refresh: str | None = None
    timezone: str = "UTC"
    misfire_grace_time: timedelta = timedelta(minutes=5)


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

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
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

    @property
    def keyed(self) -> bool:
        return self.key is not None

    @property
    def anchored(self) -> bool:
        return self.anchor_file is not None


@dataclass(frozen=True)
class MatchingConfig:
    username_rules: tuple[str, ...] = ("alias", "email_local")


@dataclass(frozen=True, eq=False)
class SourceConfig:
    name: str
    type: str
    plugin: ConnectorPlugin
    options: SourceOptions
    match: MatchSpec
    enabled: bool = True

    @property
    def kind(self) -> SourceKind:
        return self.plugin.kind

    @property
    def system(self) -> str:
        return self.plugin.system


@dataclass(frozen=True, eq=False)
class Config:
    path: Path | None
    base_dir: Path
    # With the password from [database] password_env in it: print database_url_masked instead.
    database_url: str = field(repr=False)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    schedule: ScheduleConfig = ScheduleConfig()
    webhook: WebhookConfig = WebhookConfig()
    notifications: NotificationConfig = NotificationConfig()
    matching: MatchingConfig = MatchingConfig()
    sources: tuple[SourceConfig, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    audit: AuditConfig = AuditConfig()
    # The variable the database password came from ([database] password_env), if any.
    database_password_env: str | None = None

    @property
    def database_url_masked(self) -> str:
        """The database URL fit to print (config check, logs, errors, /healthz)."""
        return mask_url(self.database_url)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} (configured: {known})", key="--source")

    @property
    def hr_sources(self) -> tuple[SourceConfig, ...]:
        return tuple(s for s in self.sources if s.kind is SourceKind.HR and s.enabled)

    @property
    def account_sources(self) -> tuple[SourceConfig, ...]:
        return tuple(s for s in self.sources if s.kind is SourceKind.ACCOUNTS and s.enabled)


_HEADER_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]")
_HEADER_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]+\")\s*=")


def locate_keys(text: str) -> dict[str, int]:
    """Map dotted key paths (``policy.grace_period``, ``sources[1].url``) to 1-based lines.

    tomllib keeps no positions, so this scans the text; it understands the subset of TOML
    that config files use (tables, arrays of tables, ``key = value`` lines).
    """
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER_ARRAY.match(line):
            name = m.group(1)
            counters[name] = counters.get(name, -1) + 1
            current = f"{name}[{counters[name]}]"
            lines.setdefault(current, number)
            lines.setdefault(name, number)
            continue
        if m := _HEADER_TABLE.match(line):
            name = m.group(1)
            head, _, rest = name.partition(".")
            current = f"{head}[{counters[head]}].{rest}" if head in counters and rest else name
            lines.setdefault(current, number)
            continue
        if m := _KEY.match(line):
            key = m.group(1).strip('"')
            lines.setdefault(f"{current}.{key}" if current else key, number)
    return lines


def resolve_config_path(cli_value: str | None, env: Mapping[str, str]) -> Path:
    """--config beats $OFFBOARD_AUDIT_CONFIG beats ./offboard-audit.toml."""
    value = cli_value or env.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    return Path(value).expanduser()


def default_db_url(base_dir: Path) -> str:
    return f"sqlite:///{(base_dir / 'offboard-audit.db').resolve()}"


def _people_cap(table: SourceOptions) -> int:
    """``policy.max_people_per_run``, or its old name ``max_revocations_per_run`` (not both)."""
    if "max_revocations_per_run" in table and "max_people_per_run" in table:
        raise table.error(
            "max_revocations_per_run", "is the old name of max_people_per_run: set only one of them"
        )
    if "max_revocations_per_run" in table:
        return table.integer("max_revocations_per_run", 25, minimum=0)
    return table.integer("max_people_per_run", 25, minimum=0)


def load_config(path: Path, db_override: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file. Raises ``ConfigError`` for every problem."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found (pass --config, set {CONFIG_ENV}, "
            f"or try `offboard-audit demo` which needs none)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parse_config(text, path=path, db_override=db_override, env=env)


def parse_config(
    text: str,
    path: Path | None = None,
    db_override: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"not valid TOML: {exc}", line=line) from None
    return build_config(raw, locate_keys(text), path=path, db_override=db_override, env=env)


def build_config(
    raw: Mapping[str, Any],
    positions: Mapping[str, int] | None = None,
    path: Path | None = None,
    db_override: str | None = None,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate an already-parsed config document (the demo builds one in memory)."""
    env = os.environ if env is None else env
    positions = positions or {}
    base_dir = (base_dir or (path.parent if path else Path.cwd())).resolve()
    root = SourceOptions(raw, "", positions.get, base_dir)
    warnings: list[str] = []

    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise root.error(key, f"unknown section (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")

    database = root.table("database")
    _reject_unknown(database, DATABASE_OPTIONS)
    url = db_override or env.get(DB_ENV) or database.opt_str("url") or default_db_url(base_dir)
    url = _resolve_sqlite_path(url, base_dir)
    password_env = database.opt_str("password_env")
    if password_env:
        url = _database_password(database, url, password_env, env)

    audit = _audit_config(root.table("audit"), env)

    policy_t = root.table("policy")
    _reject_unknown(policy_t, POLICY_OPTIONS)
    max_new = policy_t.number("max_new_terminations", 0.05)
    if not 0 <= max_new <= 1:
        raise policy_t.error("max_new_terminations", f"must be a share between 0 and 1, got {max_new}")
    max_missing = policy_t.number("max_missing_people", 0.05)
    if not 0 <= max_missing <= 1:
        raise policy_t.error("max_missing_people", f"must be a share between 0 and 1, got {max_missing}")
    policy = PolicyConfig(
        grace_period=policy_t.duration("grace_period", timedelta(0)),
        auto_revoke=policy_t.flag("auto_revoke", False),
        max_people_per_run=_people_cap(policy_t),
        max_actions_per_run=policy_t.integer("max_actions_per_run", 1000, minimum=0),
        max_new_terminations=max_new,
        max_missing_people=max_missing,
        min_breaker_count=policy_t.integer("min_breaker_count", 3, minimum=0),
        orphan_accounts=policy_t.flag("orphan_accounts", True),
        protected=policy_t.strings("protected"),
        delete_after=policy_t.duration("delete_after") if "delete_after" in policy_t else None,
        service_accounts_owned=policy_t.flag("service_accounts_owned", True),
        auto_rotate_secrets=policy_t.flag("auto_rotate_secrets", False),
    )

    sched_t = root.table("schedule")
    _reject_unknown(sched_t, SCHEDULE_OPTIONS)
    schedule = ScheduleConfig(
        audit=sched_t.opt_str("audit", "*/15 * * * *") or "*/15 * * * *",
        hr_refresh=sched_t.opt_str("hr_refresh"),
        timezone=sched_t.opt_str("timezone", "UTC") or "UTC",
        misfire_grace_time=sched_t.duration("misfire_grace_time", timedelta(minutes=5)),
    )
    for key in ("audit", "hr_refresh"):
        expr = getattr(schedule, key)
        if expr is not None and len(expr.split()) != 5:
            raise sched_t.error(key, f"must be a 5-field cron expression, got {expr!r}")

    hook_t = root.table("webhook")
    _reject_unknown(hook_t, WEBHOOK_OPTIONS)
    webhook = WebhookConfig(
        listen=hook_t.opt_str("listen", "127.0.0.1:8787") or "127.0.0.1:8787",
        secret_env=hook_t.opt_str("secret_env", "OFFBOARD_WEBHOOK_SECRET") or "OFFBOARD_WEBHOOK_SECRET",
        enabled=hook_t.flag("enabled", True),
        undo_on_rehire=hook_t.flag("undo_on_rehire", False),
        job_lease=hook_t.duration("job_lease", timedelta(seconds=30)),
        retry_backoff=hook_t.duration("retry_backoff", timedelta(seconds=30)),
        retry_max_backoff=hook_t.duration("retry_max_backoff", timedelta(minutes=15)),
        event_retention=hook_t.duration("event_retention", timedelta(days=1)),
    )
    if webhook.job_lease <= timedelta(0):
        raise hook_t.error("job_lease", "must be longer than 0s")
    if webhook.retry_backoff <= timedelta(0):
        raise hook_t.error("retry_backoff", "must be longer than 0s")
    if webhook.retry_max_backoff < webhook.retry_backoff:
        raise hook_t.error("retry_max_backoff", "must be at least retry_backoff")
    if webhook.event_retention < MIN_EVENT_RETENTION:
        raise hook_t.error(
            "event_retention", "must be at least 10m (twice the webhook's 5-minute signature window)"
        )
    try:
        webhook.host_port  # noqa: B018 - validate now, not when the daemon starts
    except ValueError:
        raise hook_t.error("listen", f"must be HOST:PORT, got {webhook.listen!r}") from None

    notes_t = root.table("notifications")
    _reject_unknown(notes_t, NOTIFICATION_OPTIONS)
    notifications = NotificationConfig(
        urls=notes_t.strings("urls"),
        urls_env=notes_t.opt_str("urls_env"),
        timeout=notes_t.duration("timeout", timedelta(seconds=5)),
        retries=notes_t.integer("retries", 3, minimum=0),
        backoff=notes_t.duration("backoff", timedelta(seconds=5)),
        max_backoff=notes_t.duration("max_backoff", timedelta(minutes=10)),
        retry_for=notes_t.duration("retry_for", timedelta(hours=1)),
    )
    if notifications.max_backoff < notifications.backoff:
        raise notes_t.error("max_backoff", "must be at least backoff")

    match_t = root.table("matching")
    _reject_unknown(match_t, MATCHING_OPTIONS)
    matching = MatchingConfig(
        username_rules=match_t.strings("username_rules", ("alias", "email_local")),
    )

    sources = _parse_sources(raw, positions, base_dir)
    return Config(
        path=path,
        base_dir=base_dir,
        database_url=url,
        policy=policy,
        schedule=schedule,
        webhook=webhook,
        notifications=notifications,
        matching=matching,
        sources=sources,
        warnings=tuple(warnings),
        audit=audit,
        database_password_env=password_env or None,
    )


def _database_password(database: SourceOptions, url: str, var: str, env: Mapping[str, str]) -> str:
    """``url`` with the password from ``$var``; the password never goes into an error message."""
    if url.startswith("sqlite"):
        return url  # a file needs no password (a --db sqlite:// override for a test run)
    if url_password(url) is not None:
        raise database.error(
            "password_env",
            f"the database URL {mask_url(url)} already has a password: leave it out of the URL",
        )
    password = database.secret("password_env", env)
    assert password is not None
    try:
        return with_password(url, password)
    except Exception as exc:
        raise database.error("url", f"not a database URL: {redact(str(exc), url)}") from None


def _audit_config(table: SourceOptions, env: Mapping[str, str]) -> AuditConfig:
    _reject_unknown(table, AUDIT_OPTIONS)
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


def _parse_sources(
    raw: Mapping[str, Any], positions: Mapping[str, int], base_dir: Path
) -> tuple[SourceConfig, ...]:
    tables = raw.get("sources", [])
    if not isinstance(tables, list):
        raise ConfigError(
            "must be an array of tables ([[sources]])", key="sources", line=positions.get("sources")
        )
    result: list[SourceConfig] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        opts = SourceOptions(table, f"sources[{index}]", positions.get, base_dir)
        name = opts.string("name")
        if name in seen:
            raise opts.error("name", f"duplicate source name {name!r}")
        seen.add(name)
        type_name = opts.string("type")
        try:
            plugin = plugin_for(type_name)
        except ConfigError as exc:
            raise opts.error("type", exc.message) from None
        _reject_unknown(opts, {**SOURCE_COMMON_OPTIONS, **plugin.options})
        match_t = opts.table("match")
        _reject_unknown(match_t, {"employee_id": "", "email": ""})
        spec = MatchSpec(
            employee_id_attributes=match_t.strings("employee_id", plugin.match.employee_id_attributes),
            email_attributes=match_t.strings("email", plugin.match.email_attributes),
        )
        result.append(
            SourceConfig(
                name=name,
                type=type_name,
                plugin=plugin,
                options=opts,
                match=spec,
                enabled=opts.flag("enabled", True),
            )
        )
    return tuple(result)


def _reject_unknown(table: SourceOptions, known: Mapping[str, str]) -> None:
    for key in table:
        if key not in known:
            hint = ", ".join(sorted(known)) or "none"
            raise table.error(key, f"unknown key (known here: {hint})")


def _resolve_sqlite_path(url: str, base_dir: Path) -> str:
    """Relative SQLite paths are relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not Path(rest).is_absolute():
            return prefix + str((base_dir / rest).resolve())
    return url


def _toml_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None
