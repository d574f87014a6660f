"""``--person`` with an employee id nothing is known about is a usage error (exit 2) naming it,
for plan, revoke and undo; a typo used to read as "nothing to do" and exit 0. Through the CLI
in a subprocess, with the fake connector world."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.fake_connector import FakeWorld, standard_world


def cli(world: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return world.run(*args)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> FakeWorld:
    root = tmp_path_factory.mktemp("people")
    w = standard_world(root, f"sqlite:///{root / 'db.sqlite'}")
    assert cli(w, "audit").returncode == 1  # findings for E1 and E2 stored
    return w


@pytest.mark.parametrize(
    "command", [("plan",), ("revoke",), ("revoke", "--apply"), ("undo",), ("undo", "--apply")]
)
def test_an_unknown_employee_id_is_a_usage_error_naming_it(
    world: FakeWorld, command: tuple[str, ...]
) -> None:
    proc = cli(world, *command, "--person", "E9999")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing is known about employee id 'E9999'" in proc.stderr


def test_a_known_employee_id_is_taken_even_with_nothing_to_do(world: FakeWorld) -> None:
    # carol (E3) is active: known from HR, no finding, nothing to revoke or undo.
    plan = cli(world, "plan", "--person", "E3")
    assert plan.returncode == 0, plan.stderr
    undo = cli(world, "undo", "--person", "E3")
    assert undo.returncode == 0, undo.stderr
    assert "nothing to undo" in undo.stderr
    revoke = cli(world, "revoke", "--person", "E2")
    assert revoke.returncode == 0, revoke.stderr
    assert "would be applied" in revoke.stderr
