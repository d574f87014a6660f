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
from pathlib import Path
from typing import Any

from offboard_audit.config.registry import plugin_for
from offboard_audit.config.sections import (
    AuditConfig,
    MatchingConfig,
    NotificationConfig,
    ScheduleConfig,
    WebhookConfig,
    audit_config,
    check_protected,
    matching_config,
    notification_config,
    policy_config,
    reject_unknown,
    schedule_config,
    webhook_config,
)
from offboard_audit.core import selectors
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.protocols import ConnectorPlugin, MatchSpec, SourceKind
from offboard_audit.storage.db import mask_url, redact, url_password, with_password

DEFAULT_CONFIG_NAME = "offboard-audit.toml"
CONFIG_ENV = "OFFBOARD_AUDIT_CONFIG"
DB_ENV = "OFFBOARD_AUDIT_DB"

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
# What the store runs on (storage/db.py): its SQL and its locks exist for these two only.
DATABASE_DIALECTS = ("sqlite", "postgresql")
DATABASE_OPTIONS = {
    "url": "SQLAlchemy URL: sqlite:///file.db (relative to the config file) or "
    "postgresql+psycopg://user@host/db (no other database is supported); --db and OFFBOARD_AUDIT_DB override it. A new SQLite file "
    "(and its -wal/-shm files) is created owner-only (0600). Printed with its password masked",
    "password_env": "environment variable holding the database password (leave it out of the URL); "
    "applies to whichever URL is used, --db and OFFBOARD_AUDIT_DB included",
}
SOURCE_COMMON_OPTIONS = {
    "name": "unique name of this source (used in findings, --source and selectors)",
    "type": "connector type",
    "enabled": "set false to keep the table but skip the source",
    "match": "table: employee_id = [attributes], email = [attributes] that identify the owner",
}


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
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    notifications: NotificationConfig = field(default_factory=NotificationConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    sources: tuple[SourceConfig, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    audit: AuditConfig = field(default_factory=AuditConfig)
    # The variable the database password came from ([database] password_env), if any.
    database_password_env: str | None = None
    # Lines of the file's keys (locate_keys), for problems found after reading (config check).
    positions: Mapping[str, int] = field(default_factory=dict, repr=False)

    def error(self, key: str, message: str) -> ConfigError:
        """A problem with ``key`` (a dotted path), with its line when the file has it."""
        return ConfigError(message, key=key, line=self.positions.get(key))

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
    reject_unknown(database, DATABASE_OPTIONS)
    url = db_override or env.get(DB_ENV) or database.opt_str("url", shown=False) or default_db_url(base_dir)
    if problem := database_url_problem(url):
        if db_override or env.get(DB_ENV):
            raise ConfigError(problem, key=f"--db (or ${DB_ENV})")
        raise database.error("url", problem)
    url = _resolve_sqlite_path(url, base_dir)
    password_env = database.opt_str("password_env")
    if password_env:
        url = _database_password(database, url, password_env, env)

    # Keyword arguments are evaluated in order: the sections are checked in this order.
    config = Config(
        path=path,
        base_dir=base_dir,
        database_url=url,
        database_password_env=password_env or None,
        audit=audit_config(root.table("audit"), env),
        policy=policy_config(root.table("policy")),
        schedule=schedule_config(root.table("schedule")),
        webhook=webhook_config(root.table("webhook")),
        notifications=notification_config(root.table("notifications"), env),
        matching=matching_config(root.table("matching")),
        sources=_parse_sources(raw, positions, base_dir),
        warnings=tuple(warnings),
        positions=positions,
    )
    # Selectors name sources, so they are checked once the sources are known.
    check_protected(
        root.table("policy"),
        config.policy.protected,
        selectors.known_prefixes((s.name, s.system) for s in config.sources),
    )
    return config


def database_url_problem(url: str) -> str | None:
    """Why ``url`` is not a database the store supports (SQLite or PostgreSQL, any driver), or
    None. Another one (``mysql://``) was accepted, and every command then failed with an
    "internal error ... this is a bug". The password is never shown."""
    scheme, sep, _ = url.partition("://")
    dialect = scheme.partition("+")[0].lower()
    if not sep:
        problem = "is not a database URL"
    elif dialect not in DATABASE_DIALECTS:
        problem = f"is a {dialect} database, which is not supported"
    else:
        return None
    return f"{mask_url(url)} {problem}: give sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"


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
        reject_unknown(opts, {**SOURCE_COMMON_OPTIONS, **plugin.options})
        match_t = opts.table("match")
        reject_unknown(match_t, {"employee_id": "", "email": ""})
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
