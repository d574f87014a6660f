"""``offboard-audit`` command line. Each module registers its commands on the shared app."""

from __future__ import annotations

import sys

import click

from offboard_audit.cli import audit as _audit  # noqa: F401  (registers commands)
from offboard_audit.cli.app import EXIT_USAGE, app, err
from offboard_audit.errors import ConfigError

_OPTIONAL_MODULES = ("offboard_audit.cli.revoke", "offboard_audit.cli.daemon")


def _register_optional() -> None:
    import importlib

    for name in _OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


_register_optional()


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to the exit codes promised in design.md."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except ConfigError as exc:
        err.print(f"[bold red]config error:[/] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["app", "main"]
