"""The Typer application and what every command shares (config, database, exit codes).

Imported by every ``offboard-audit`` invocation, ``--help`` included: it keeps to Typer and rich
at import time. The config loader, the store and the records are imported where they are used,
so that a command pays only for what it runs (``bench/cli_startup.py`` measures it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from offboard_audit.cli.loader import LazyGroup
from offboard_audit.core.errors import ConfigError

if TYPE_CHECKING:
    from typer._click.core import Context as ClickContext

    from offboard_audit.config import Config
    from offboard_audit.core.protocols import SourceContext
    from offboard_audit.core.records import Severity
    from offboard_audit.report.audit_trail import AuditTrail
    from offboard_audit.storage.store import Store

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_SOURCE_FAILED = 3
# An unexpected exception (a bug): distinct from 0-3 so that cron and CI never read a crash as
# "findings" (1) or "a source failed" (3).
EXIT_INTERNAL = 4
# Stopped by Ctrl-C (SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130

DEBUG_ENV = "OFFBOARD_AUDIT_DEBUG"

app = typer.Typer(
    name="offboard-audit",
    help="Make sure people who leave lose every credential they held.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
config_app = typer.Typer(help="Write and check the configuration file.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

# Messages are not wrapped by rich: a command or a path in them must stay copyable as one line.
err = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    config_path: Path
    db_url: str | None
    config_given: bool
    debug: bool = False
    # --db was given on the command line (not only OFFBOARD_AUDIT_DB from the environment).
    db_given: bool = False
    # Stores this command opened, with their [audit] settings (anchored by close()).
    opened: list[tuple[Store, AuditTrail]] = field(default_factory=list)

    def config(self) -> Config:
        from offboard_audit.config import load_config

        return load_config(self.config_path, db_override=self.db_url)

    def database_url(self) -> str:
        """The database for commands that may run without a config file (db upgrade)."""
        from offboard_audit.config import DB_ENV, database_url_problem, default_db_url

        if self.db_url:
            if problem := database_url_problem(self.db_url):
                raise ConfigError(problem, key=f"--db (or ${DB_ENV})")
            return self.db_url
        if self.config_path.exists() or self.config_given:
            return self.config().database_url
        return default_db_url(self.config_path.parent.resolve())

    def config_if_any(self) -> Config | None:
        """The config when there is one to read (commands that also run on --db alone)."""
        if self.config_path.exists() or self.config_given:
            return self.config()
        return None

    def store(self, config: Config | None = None) -> Store:
        from offboard_audit.report.audit_trail import AuditTrail, attach
        from offboard_audit.storage.store import Store

        config = config if config is not None else self.config_if_any()
        url = config.database_url if config is not None else self.database_url()
        store = Store.open(url)
        # [audit] key_env: every audit event this command appends is keyed; close() anchors them.
        trail = AuditTrail.from_config(config)
        attach(store, trail)
        self.opened.append((store, trail))
        return store

    def close(self) -> None:
        """When the command ends (however it ends): anchor what it appended to the audit log
        in [audit] anchor_file (report/audit_trail.py)."""
        from offboard_audit.report.audit_trail import write_anchor
        from offboard_audit.report.table import plain

        global _anchor_failed
        for store, trail in self.opened:
            try:
                write_anchor(store, trail, now_utc())
            except Exception as exc:
                # The command's own result stands (it is printed), but it may not exit 0:
                # main() makes that 4, as for a failed disk (README "Exit codes").
                _anchor_failed = True
                err.print(
                    plain("error: ", "bold red")
                    + plain(f"could not write the audit anchor to {trail.anchor_file}: {exc}"),
                    highlight=False,
                )
        self.opened.clear()


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def debug_wanted() -> bool:
    """--debug (before or after the subcommand) or OFFBOARD_AUDIT_DEBUG=1: show tracebacks."""
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


_debug = False
# Set when a command could not write the audit anchor of the events it appended (CliState.close).
_anchor_failed = False


def anchor_failed(clear: bool = False) -> bool:
    """A command ended without anchoring the events it appended: it must not exit 0. ``clear``:
    forget it (each ``main()`` starts afresh, as tests call it several times in one process)."""
    global _anchor_failed
    failed, _anchor_failed = _anchor_failed, _anchor_failed and not clear
    return failed


def source_context(config: Config) -> SourceContext:
    from offboard_audit.core.protocols import SourceContext

    return SourceContext(base_dir=config.base_dir, env=dict(os.environ))


def now_utc() -> datetime:
    return datetime.now(UTC)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise.

    ``message`` is plain text, never markup: it often quotes what the user typed or a value
    read from a source, which must be shown as it is and cannot style or break the terminal.
    """
    from offboard_audit.report.table import plain

    err.print(plain("error: ", "bold red") + plain(message), highlight=False)
    return typer.Exit(code)


def parse_severity(value: str) -> Severity | None:
    from offboard_audit.core.records import Severity

    if value.lower() in ("none", "never"):
        return None
    try:
        return Severity(value.lower())
    except ValueError:
        raise fail(f"--fail-on must be one of critical, high, medium, low, none; got {value!r}") from None


def show_progress(fmt: str, output: Path | None) -> bool:
    """Progress goes to stderr, only on a terminal and only for human-readable output."""
    return fmt == "table" and output is None and sys.stderr.isatty()


def _show_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from offboard_audit import __version__

    try:
        installed = version("offboard-audit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        installed = __version__
    sys.stdout.write(f"offboard-audit {installed}\n")
    raise typer.Exit(EXIT_OK)


def _set_debug(value: bool) -> None:
    global _debug
    _debug = _debug or value


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
    debug: bool = typer.Option(
        False,
        "--debug",
        help=f"On an unexpected error, show the traceback (also {DEBUG_ENV}=1).",
        callback=_set_debug,
        is_eager=True,
    ),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_show_version,
        is_eager=True,
    ),
) -> None:
    """Global options: --config, --db and --debug may also follow the subcommand."""
    from offboard_audit.config import resolve_config_path

    path = resolve_config_path(str(config) if config else None, os.environ)
    ctx.obj = CliState(
        config_path=path,
        db_url=db or os.environ.get("OFFBOARD_AUDIT_DB"),
        config_given=config is not None or "OFFBOARD_AUDIT_CONFIG" in os.environ,
        debug=debug_wanted(),
        db_given=db is not None,
    )
    ctx.call_on_close(ctx.obj.close)


def set_global_option(ctx: ClickContext, name: str, value: object) -> None:
    """A global option given after the subcommand: it overrides the one before it, if any."""
    if name == "debug":
        _set_debug(bool(value))
        return
    if value is None:
        return
    st = ctx.find_root().obj
    assert isinstance(st, CliState)
    if name == "config":
        from offboard_audit.config import resolve_config_path

        st.config_path = resolve_config_path(str(value), os.environ)
        st.config_given = True
    elif name == "db":
        st.db_url = str(value)
        st.db_given = True


__all__ = ["EXIT_INTERNAL", "ConfigError", "app"]
