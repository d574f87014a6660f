"""``offboard-audit`` command line.

Each module registers its commands on the shared app when it is imported; ``loader.py`` imports
a module only when one of its commands runs, so ``--help`` and ``audit`` stay fast.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import typer.main
from typer import Abort, Exit

try:  # Typer 0.2x vendors Click; older Typer raises the click package's exceptions.
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[assignment]

from offboard_audit.cli.app import EXIT_INTERNAL, EXIT_USAGE, anchor_failed, app, debug_wanted, err
from offboard_audit.cli.loader import tidy
from offboard_audit.core.errors import ConfigError

PROG_NAME = "offboard-audit"
# What a shell reports for a process killed by SIGPIPE: `offboard-audit findings | head`.
EXIT_BROKEN_PIPE = 141


class _SafeStderrHandler(logging.Handler):
    """Python's last-resort log handler (WARNING and above to stderr, used while nothing else
    is configured: every command but the daemon), with each line made terminal-safe: engine
    warnings quote source errors and names as they came."""

    def emit(self, record: logging.LogRecord) -> None:
        from offboard_audit.report.table import safe

        try:
            text = self.format(record)
            sys.stderr.write("".join(safe(line) + "\n" for line in text.splitlines()))
        except Exception:
            self.handleError(record)


def _say(prefix: str, message: str) -> None:
    """``prefix`` in bold red, then ``message`` as text (it may quote anything: never markup)."""
    from offboard_audit.report.table import plain

    err.print(plain(prefix, "bold red") + plain(message), highlight=False)


def _environment_failure(exc: BaseException) -> bool:
    """An error of the machine rather than of this program: a database or operating-system
    error (told apart by module, so that SQLAlchemy is never imported just to check)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(("sqlalchemy.", "sqlite3", "psycopg"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to the exit codes promised in design.md (4: internal error)."""
    logging.lastResort = _SafeStderrHandler(logging.WARNING)
    anchor_failed(clear=True)
    command = typer.main.get_command(app)
    with typer.Context(command, info_name=PROG_NAME) as ctx:
        tidy(command, ctx)
    try:
        rv = command.main(args=argv, prog_name=PROG_NAME, standalone_mode=False)
    except Exit as exc:
        sys.exit(_unless_unanchored(exc.exit_code))
    except ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except Abort:
        err.print("aborted")
        sys.exit(130)
    except ConfigError as exc:
        _say("config error: ", str(exc))
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown, and it is not a bug.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except Exception as exc:
        # A bug, not a finding: exit 4 with one line, the traceback only on request.
        if debug_wanted():
            traceback.print_exc()
        # The first line only (a database error quotes its whole statement); --debug has it all.
        first_line = next(iter(str(exc).splitlines()), "")
        _say("internal error: ", f"{type(exc).__name__}: {first_line}")
        if _environment_failure(exc):
            # A locked or full database, a full disk: not a bug, and not a result either.
            _say("", "the database or the disk failed; nothing can be concluded from this run")
        elif not debug_wanted():
            _say(
                "",
                "this is a bug in offboard-audit; run again with --debug (or OFFBOARD_AUDIT_DEBUG=1) "
                "to see the traceback, and report it",
            )
        sys.exit(EXIT_INTERNAL)
    sys.exit(_unless_unanchored(rv if isinstance(rv, int) else 0))


def _unless_unanchored(code: int) -> int:
    """``code``, except that a command that would exit 0 but could not write the audit anchor of
    the events it appended exits 4: the disk failed, and cron or CI must not read it as done."""
    return EXIT_INTERNAL if code == 0 and anchor_failed() else code


__all__ = ["app", "main"]
