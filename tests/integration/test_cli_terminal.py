"""Outputs that cannot be turned against their reader (issue 11 item 6), through the real CLI.

HR rows, directory and IAM values, error texts and what the operator typed are data: rich must
never read them as markup (``mal[/x]lory@example.com`` crashed ``audit`` and ``findings`` with
exit 1, which cron reads as "findings"), and their control characters and ANSI/OSC escape
sequences must reach the terminal as harmless text (``\\x1b``), never as the escape itself.
Output is captured through pipes, where rich writes no styling of its own: any ESC byte in it
came from the data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fake_connector import FakeWorld, fake_env

ESC = "\x1b"
TIMEOUT = 60

# What a hostile HR export or a hostile directory/IAM administrator can put in a field.
EMAIL = "mal[/x]lory@example.com"  # closing tag with nothing open: rich raises MarkupError
NAME = "Bob \x1b]8;;https://evil.example/\x07Bob\x1b]8;;\x07"  # an OSC 8 hyperlink
USERNAME = "bob\x1b[2J\x1b[H"  # clear the screen, cursor home
KEY_ID = "AK2\x1b[8m"  # conceal everything after it
TITLE = "\x1b]0;pwned\x07"  # OSC 0: set the terminal's title


def hostile_world(root: Path, email: str = EMAIL) -> FakeWorld:
    world = FakeWorld(root, f"sqlite:///{root / 'db.sqlite'}")
    world.write_hr(
        [
            ("E1", email, "Mallory", "terminated", "2026-01-10"),
            ("E2", "bob@example.com", NAME, "terminated", "2026-01-12"),
            ("E3", "carol@example.com", "Carol", "active", ""),
        ]
    )
    world.write_state(
        [
            {"id": "mallory", "username": "mallory", "attributes": [["employeeNumber", "E1"]]},
            {"id": "bob", "username": USERNAME, "attributes": [["employeeNumber", "E2"]]},
        ],
        [
            {"account_id": "mallory", "id": "mallory", "kind": "account"},
            {"account_id": "bob", "id": KEY_ID, "kind": "access_key"},
        ],
    )
    world.write_config()
    return world


def cli(world: FakeWorld, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return world.run(*args, env=env, timeout=TIMEOUT)


def assert_no_escape(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ESC not in proc.stdout, proc.stdout
    assert ESC not in proc.stderr, proc.stderr
    assert "\x07" not in proc.stdout + proc.stderr


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return hostile_world(tmp_path)


@pytest.fixture
def escapes_only(tmp_path: Path) -> FakeWorld:
    """Control sequences without the markup email, so that each test fails for its own reason."""
    return hostile_world(tmp_path, email="mallory@example.com")


def test_markup_in_an_hr_email_is_printed_as_written_by_audit_and_findings(world: FakeWorld) -> None:
    audit = cli(world, "audit")
    assert audit.returncode == 1, audit.stderr  # high findings, not a crash
    assert EMAIL in audit.stdout
    found = cli(world, "findings")
    assert found.returncode == 0, found.stderr
    assert EMAIL in found.stdout


def test_control_sequences_from_hr_and_the_directory_never_reach_the_terminal(
    escapes_only: FakeWorld,
) -> None:
    audit = cli(escapes_only, "audit", env={"COLUMNS": "200"})
    assert audit.returncode == 1, audit.stderr
    assert_no_escape(audit)
    assert "bob\\x1b[2J\\x1b[H" in audit.stdout  # the account, shown as text
    found = cli(escapes_only, "findings", "--status", "all", env={"COLUMNS": "200"})
    assert found.returncode == 0, found.stderr
    assert_no_escape(found)
    assert "AK2\\x1b[8m" in found.stdout


def test_plan_and_revoke_tables_show_hostile_values_as_text(escapes_only: FakeWorld) -> None:
    world = escapes_only
    assert cli(world, "audit").returncode == 1
    plan = cli(world, "plan", env={"COLUMNS": "250"})
    assert plan.returncode == 0, plan.stderr
    assert_no_escape(plan)
    assert "\\x1b]8;;https://evil.example/\\x07" in plan.stdout  # the HR name, as text
    dry = cli(world, "revoke", env={"COLUMNS": "250"})
    assert dry.returncode == 0, dry.stderr
    assert_no_escape(dry)
    applied = cli(world, "revoke", "--apply", env={"COLUMNS": "250"})
    assert applied.returncode == 0, applied.stderr
    assert_no_escape(applied)
    assert "\\x1b[2J" in applied.stdout  # the outcomes table names the account


def test_a_failed_source_error_with_escapes_is_shown_as_text(escapes_only: FakeWorld) -> None:
    world = escapes_only
    world.update(lambda st: st.update(source_error=f"{TITLE}[/x] cannot read {ESC}[31mred"))
    audit = cli(world, "audit", env={"COLUMNS": "250"})
    assert audit.returncode == 3, audit.stderr
    assert_no_escape(audit)
    assert "\\x1b]0;pwned\\x07[/x] cannot read" in audit.stdout


def test_exemptions_typed_by_an_operator_are_shown_as_text(world: FakeWorld) -> None:
    added = cli(world, "exempt", "add", f"fake:[/x]{ESC}[2J", "--reason", TITLE, "--until", "2099-01-01")
    assert added.returncode == 0, added.stderr
    assert_no_escape(added)
    listed = cli(world, "exempt", "list", env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert_no_escape(listed)
    assert "fake:[/x]\\x1b[2J" in listed.stdout and "\\x1b]0;pwned\\x07" in listed.stdout


def test_an_unknown_finding_id_is_echoed_as_text(world: FakeWorld) -> None:
    proc = cli(world, "plan", "--finding", f"[/x]{ESC}[2J")
    assert proc.returncode == 2
    assert_no_escape(proc)
    assert "[/x]\\x1b[2J" in proc.stderr


# --- an unexpected crash is not a finding -----------------------------------------------------

CRASH = """
import sys
from offboard_audit.engine import pipeline

def boom(self, *args, **kwargs):
    raise RuntimeError("simulated bug \\x1b[2J [/x]")

pipeline.Pipeline.run = boom  # a bug anywhere inside a command
from offboard_audit.cli import main
main(sys.argv[1:])
"""


def crash(
    world: FakeWorld, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CRASH, "--config", str(world.config_path), *args],
        cwd=world.root,
        env={**fake_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_an_unexpected_error_exits_4_with_one_short_message_and_no_traceback(world: FakeWorld) -> None:
    proc = crash(world, "audit")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "internal error: RuntimeError: simulated bug \\x1b[2J [/x]" in proc.stderr
    assert "--debug" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 6


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--debug", "audit"), {}), (("audit", "--debug"), {}), (("audit",), {"OFFBOARD_AUDIT_DEBUG": "1"})],
    ids=["--debug before", "--debug after", "env"],
)
def test_debug_shows_the_traceback_of_an_unexpected_error(
    world: FakeWorld, args: tuple[str, ...], env: dict[str, str]
) -> None:
    proc = crash(world, *args, env=env)
    assert proc.returncode == 4
    assert "Traceback (most recent call last)" in proc.stderr and "in boom" in proc.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(world: FakeWorld) -> None:
    """`offboard-audit findings | head`: not a crash (4), not "findings" (rich's own exit 1)."""
    assert cli(world, "audit", "--format", "json").returncode == 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "offboard_audit", "--config", str(world.config_path), "findings"],
        cwd=world.root,
        env=fake_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the command writes anything: its first write meets a closed pipe
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 141, err
    assert err == ""
