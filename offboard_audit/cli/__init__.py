"""``offboard-audit`` command line. Each module registers its commands on the shared app."""

from __future__ import annotations

import sys

from typer import Abort, Exit

try:  # Typer 0.2x vendors Click; older Typer raises the click package's exceptions.
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[assignment]

from offboard_audit.cli.app import EXIT_USAGE, app, err
from offboard_audit.core.errors import ConfigError

# One module per command group; importing a module registers its commands on ``app``.
_COMMAND_MODULES = ("audit", "demo", "plan", "revoke", "report", "exempt", "log", "db", "config")
_OPTIONAL_MODULES = ("offboard_audit.cli.daemon",)


def _register() -> None:
    import importlib

    for short in _COMMAND_MODULES:
        importlib.import_module(f"offboard_audit.cli.{short}")
    for name in _OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to the exit codes promised in design.md."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except Abort:
        err.print("aborted")
        sys.exit(130)
    except ConfigError as exc:
        err.print(f"[bold red]config error:[/] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["app", "main"]
