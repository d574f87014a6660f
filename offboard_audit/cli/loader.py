"""How the command tree is built: lazily, with global options anywhere and help that shows
flags as flags.

* **Lazy commands.** ``offboard-audit --help`` lists every command without importing one of
  them, and ``offboard-audit audit`` imports only ``cli/audit.py`` (and what it uses), never the
  daemon, the webhook server (FastAPI, uvicorn) or the demo's fakes. :data:`COMMANDS` names the
  module that registers each command, and the one-line help the listing shows for it;
  ``tests/integration/test_cli_startup.py`` checks that line against the command's docstring.
* **Global options after the subcommand.** Every command also accepts ``--config``, ``--db``
  and ``--debug`` after its name (``offboard-audit audit --config x.toml``), as kubectl does;
  given both before and after, the one after wins.
* **Help without placeholders.** Typer prints the Python type of every parameter (``<bool>``
  on ``--apply`` and ``--help``, ``<list[str]>``, ``{selector}`` in the usage line) and has no
  setting for it. Each parameter is given a plain metavar instead (``--finding ID``, flags
  none, ``SELECTOR``) by :func:`tidy`, which swaps in the two subclasses below.
"""

from __future__ import annotations

import copy
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, get_args

from typer._click.core import Command, Context, Parameter
from typer._click.exceptions import UsageError
from typer._click.shell_completion import CompletionItem
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# command name -> (modules under offboard_audit.cli that register it, one-line help for the list)
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "demo": (("demo",), "Audit an embedded sample organisation: no config, no network, no server."),
    "audit": (("audit",), "Collect from every source, match, evaluate, store and print findings."),
    "findings": (("audit",), "Stored findings from earlier runs."),
    "runs": (("runs",), "The newest runs: their kind, status, open findings and failed sources."),
    "plan": (("plan",), "The revocation plan for open findings past their grace period (changes nothing)."),
    "revoke": (("revoke",), "Revoke what the plan says: a dry run unless --apply."),
    "undo": (
        ("revoke",),
        "Restore what an action (or all actions for a person) changed, from the recorded prior state.",
    ),
    "report": (
        ("report",),
        "Evidence pack for one leaver: accounts, credentials, last use, revocations, time to revoke.",
    ),
    "exempt": (("exempt",), "Exemptions: credentials that must not be revoked, until a date."),
    "log": (("log",), "The tamper-evident audit log."),
    "daemon": (
        ("daemon",),
        "Scheduled full reconciles, the HR webhook and targeted reconciles (see docs/daemon.md).",
    ),
    "config": (("config", "init"), "Write and check the configuration file."),
    "db": (("db",), "Database maintenance."),
}

# Options of the root command that every subcommand accepts too.
GLOBAL_OPTIONS = ("--config", "--db", "--debug")
GLOBAL_PANEL = "Global options"

# Metavars for value options that declare none; anything else gets one from its type.
_METAVARS = {
    "--config": "PATH",
    "--db": "URL",
    "--format": "FORMAT",
    "--output": "FILE",
    "--plan": "FILE",
    "--finding": "ID",
    "--person": "EMPLOYEE_ID",
    "--source": "NAME",
    "--fail-on": "SEVERITY",
    "--status": "STATUS",
    "--until": "DATE",
    "--reason": "TEXT",
    "--by": "NAME",
    "--head": "HASH",
    "--log-level": "LEVEL",
    "--poll-interval": "SECONDS",
    "--limit": "N",
}


def _modules(name: str) -> list[str]:
    return [f"offboard_audit.cli.{m}" for m in COMMANDS[name][0]]


def loaded(name: str) -> bool:
    return all(m in sys.modules for m in _modules(name))


class CommandUnavailable(UsageError):
    """A command whose module cannot be imported here (an optional dependency is missing)."""


class _Option(TyperOption):
    """A TyperOption whose help shows a metavar, or nothing for a flag, instead of a type."""

    def display_type_rich(self, ctx: Context) -> str | None:
        if self.is_flag or self.count:
            return None
        return self.metavar or _metavar_for(self)


class _Argument(TyperArgument):
    """A TyperArgument shown as ``SELECTOR`` (required) or ``[ACTION_ID]``, with no type."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or (self.name or "ARG").upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


def _metavar_for(option: TyperOption) -> str:
    for opt in option.opts:
        if opt in _METAVARS:
            return _METAVARS[opt]
    descriptor = option.type_descriptor
    if descriptor.is_path:
        return "PATH"
    annotation = descriptor.annotation
    if descriptor.is_list:
        (annotation,) = get_args(annotation) or (str,)
    if annotation in (int, float):
        return "N"
    return "TEXT"


def _tidy_param(param: Parameter) -> None:
    if type(param) is TyperOption:
        param.__class__ = _Option
        if param.is_flag or param.count:
            param.metavar = None
    elif type(param) is TyperArgument:
        param.__class__ = _Argument
        if param.metavar is None:
            param.metavar = (param.name or "ARG").upper()


def tidy(command: Command, ctx: Context) -> None:
    """Give every parameter of ``command`` (and of its subcommands) a plain help form."""
    for param in command.params:
        _tidy_param(param)
    help_option = command.get_help_option(ctx)  # created on first use: create it now to tidy it
    if help_option is not None:
        _tidy_param(help_option)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            tidy(sub, ctx)


def _global_copies(root: Command) -> list[Parameter]:
    from offboard_audit.cli.app import set_global_option

    copies: list[Parameter] = []
    for param in root.params:
        if not isinstance(param, TyperOption) or not set(param.opts) & set(GLOBAL_OPTIONS):
            continue
        dup = copy.copy(param)
        name = param.name or ""

        def store(ctx: Context, _param: Parameter, value: Any, name: str = name) -> None:
            set_global_option(ctx, name, value)

        dup.callback = store
        dup.expose_value = False
        dup.is_eager = False
        dup.rich_help_panel = GLOBAL_PANEL
        copies.append(dup)
    return copies


def add_global_options(command: Command, root: Command) -> None:
    """Let every leaf command under ``command`` accept the root's global options too."""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            add_global_options(sub, root)
        return
    have = {opt for p in command.params for opt in getattr(p, "opts", ())}
    command.params.extend(p for p in _global_copies(root) if not set(getattr(p, "opts", ())) & have)


def _stub(name: str) -> TyperCommand:
    """What the command list shows for a command whose module is not imported yet."""
    return TyperCommand(name=name, help=COMMANDS[name][1])


class LazyGroup(TyperGroup):
    """The root command: imports a command's module only when that command runs.

    Until then ``self.commands`` holds a stub per command (its name and one-line help), so the
    listing in ``--help``, shell completion of command names and "did you mean" suggestions
    work without importing anything.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        present = dict(self.commands)
        self.commands = {n: present.pop(n) if n in present else _stub(n) for n in COMMANDS} | present

    @contextmanager
    def listing(self) -> Iterator[None]:
        """Inside: get_command returns stubs rather than importing (help, completion of names)."""
        self._listing, before = True, self._listing
        try:
            yield
        finally:
            self._listing = before

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in COMMANDS and not self._listing and not loaded(cmd_name):
            self._load(ctx, cmd_name)
        return self.commands.get(cmd_name)

    def _load(self, ctx: Context, name: str) -> None:
        import typer.main

        from offboard_audit.cli.app import app

        for module in _modules(name):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.split(".")[0] in ("offboard_audit", "connectors"):
                    raise
                raise CommandUnavailable(
                    f"`{name}` is not available in this installation: it needs the Python package "
                    f"{exc.name!r}, which is not installed"
                ) from exc
        # The module registered its commands on the Typer app: build them as Click commands.
        fresh = typer.main.get_group(app).commands[name]
        tidy(fresh, ctx)
        add_global_options(fresh, self)
        self.commands[name] = fresh

    def format_help(self, ctx: Context, formatter: Any) -> None:
        with self.listing():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        with self.listing():
            return super().shell_complete(ctx, incomplete)


__all__ = ["COMMANDS", "LazyGroup", "add_global_options", "tidy"]
