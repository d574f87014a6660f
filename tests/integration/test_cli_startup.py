"""The command itself starts fast (issue 15, "Speed of the command itself").

Import time is measured by ``bench/cli_startup.py`` (CPU figures vary with the machine); these
tests pin down what makes it fast, which does not vary: the modules a command imports.
``--help`` imports no command at all, and ``audit`` (its help or a real run) nothing of the
daemon, the webhook server, the scheduler or the demo's fakes.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from offboard_audit.cli.app import app
from offboard_audit.cli.loader import COMMANDS

# What a command that does not serve HTTP, schedule or fake AWS must never import.
DAEMON_AND_WEBHOOK = (
    "offboard_audit.daemon",
    "offboard_audit.cli.daemon",
    "fastapi",
    "starlette",
    "uvicorn",
    "apscheduler",
    "prometheus_client",
    "moto",
)
# ... and what --help, which runs nothing, must not import either.
HEAVY = (
    *DAEMON_AND_WEBHOOK,
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "boto3",
    "botocore",
    "google",
    "grpc",
    "ldap3",
    "httpx",
    "offboard_audit.storage",
    "offboard_audit.engine",
    "offboard_audit.cli.audit",
    "offboard_audit.cli.revoke",
)

PROBE = """
import json, os, sys
from offboard_audit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""


def modules_after(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        env={**env, "MODULES_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), proc.stderr
    return proc.returncode, set(json.loads(out.read_text()))


def write_hr_only_config(tmp_path: Path) -> None:
    """A config with one HR CSV source (one active person) in ``tmp_path``."""
    (tmp_path / "hr.csv").write_text("employee_id,email,name,status,termination_date\nE1,a@x.org,A,active,\n")
    (tmp_path / "offboard-audit.toml").write_text(
        '[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n'
    )


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_help_imports_no_command_and_nothing_heavy(tmp_path: Path) -> None:
    code, modules = modules_after(tmp_path, "--help")
    assert code == 0
    assert imported(modules, HEAVY) == []


@pytest.mark.parametrize("args", [("audit", "--help"), ("audit", "--format", "json")], ids=["help", "run"])
def test_audit_imports_nothing_of_the_daemon_or_webhook(tmp_path: Path, args: tuple[str, ...]) -> None:
    write_hr_only_config(tmp_path)
    code, modules = modules_after(tmp_path, *args)
    assert code == 0
    assert "offboard_audit.cli.audit" in modules  # the probe did run the command
    assert imported(modules, DAEMON_AND_WEBHOOK) == []


def test_an_audit_of_a_csv_hr_file_does_not_import_the_http_client_only_json_sources_use(
    tmp_path: Path,
) -> None:
    write_hr_only_config(tmp_path)
    code, modules = modules_after(tmp_path, "audit", "--format", "json")
    assert code == 0
    assert "connectors.hr_records.source" in modules  # the HR source was loaded and read
    assert imported(modules, ("httpx",)) == []


def test_an_audit_on_a_database_already_at_the_newest_revision_does_not_import_alembic(
    tmp_path: Path,
) -> None:
    write_hr_only_config(tmp_path)
    code, first = modules_after(tmp_path, "audit", "--format", "json")
    assert code == 0
    assert "alembic" in first  # the first run created the database and stamped it
    code, again = modules_after(tmp_path, "audit", "--format", "json")
    assert code == 0
    assert "offboard_audit.storage.migrate" in again  # the schema was checked ...
    assert imported(again, ("alembic",)) == []  # ... without Alembic


def test_the_daemon_command_still_loads_when_asked_for(tmp_path: Path) -> None:
    code, modules = modules_after(tmp_path, "daemon", "--help")
    assert code == 0
    assert "offboard_audit.cli.daemon" in modules


def test_the_command_list_shows_each_commands_own_summary() -> None:
    """--help lists commands without importing them, from loader.COMMANDS: it must say what
    each command's docstring (its own --help) says."""
    for modules, _ in COMMANDS.values():
        for m in modules:
            importlib.import_module(f"offboard_audit.cli.{m}")
    real = typer.main.get_group(app).commands
    assert set(real) == set(COMMANDS)
    for name, command in real.items():
        first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert COMMANDS[name][1] == first_paragraph, name
