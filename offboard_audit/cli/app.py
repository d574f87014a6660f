"""The Typer application and what every command shares (config, database, exit codes)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from offboard_audit.config import Config, default_db_url, load_config, resolve_config_path
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Severity
from offboard_audit.storage.store import Store

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_SOURCE_FAILED = 3

app = typer.Typer(
    name="offboard-audit",
    help="Make sure people who leave lose every credential they held.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration checks.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

err = Console(stderr=True)


@dataclass
class CliState:
    config_path: Path
    db_url: str | None
    config_given: bool

    def config(self) -> Config:
        return load_config(self.config_path, db_override=self.db_url)

    def database_url(self) -> str:
        """The database for commands that may run without a config file (db upgrade)."""
        if self.db_url:
            return self.db_url
        if self.config_path.exists() or self.config_given:
            return self.config().database_url
        return default_db_url(self.config_path.parent.resolve())

    def store(self, config: Config | None = None) -> Store:
        url = config.database_url if config is not None else self.database_url()
        return Store.open(url)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def source_context(config: Config) -> SourceContext:
    return SourceContext(base_dir=config.base_dir, env=dict(os.environ))


def now_utc() -> datetime:
    return datetime.now(UTC)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def parse_severity(value: str) -> Severity | None:
    if value.lower() in ("none", "never"):
        return None
    try:
        return Severity(value.lower())
    except ValueError:
        raise fail(f"--fail-on must be one of critical, high, medium, low, none; got {value!r}") from None


def show_progress(fmt: str, output: Path | None) -> bool:
    """Progress goes to stderr, only on a terminal and only for human-readable output."""
    return fmt == "table" and output is None and sys.stderr.isatty()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Config file (default ./offboard-audit.toml, env OFFBOARD_AUDIT_CONFIG).",
        show_default=False,
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (env OFFBOARD_AUDIT_DB; default: SQLite file next to the config).",
        show_default=False,
    ),
) -> None:
    path = resolve_config_path(str(config) if config else None, os.environ)
    ctx.obj = CliState(
        config_path=path,
        db_url=db or os.environ.get("OFFBOARD_AUDIT_DB"),
        config_given=config is not None or "OFFBOARD_AUDIT_CONFIG" in os.environ,
    )


__all__ = ["ConfigError", "app"]
