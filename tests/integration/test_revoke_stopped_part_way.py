"""`revoke --apply` that stops part-way says what it had already changed (issue 17, item 12).

A pass can stop between two actions: Ctrl-C, or a database that can no longer be written (locked,
full, broken). Everything that ran has its intent and outcome in the audit log, but the operator
at the terminal must see, before the process exits, which credentials were already changed.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.support.fake_connector import FakeWorld, standard_world
from tests.support.processes import start


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    w = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    return w


def audit(world: FakeWorld) -> None:
    proc = start(world, "audit")
    code, _out, err = proc.finish()
    assert code == 1, err  # findings at/above high


def test_ctrl_c_between_actions_lists_what_was_already_revoked_and_exits_130(world: FakeWorld) -> None:
    audit(world)
    # alice's login is applied first, then the pass blocks before her key (AK1).
    world.update(lambda st: st.setdefault("block", {}).update({"AK1": "before"}))
    proc = start(world, "revoke", "--apply", "--person", "E1", "--format", "json")
    proc.wait_for("FAKE-BLOCKED AK1 before")
    proc.popen.send_signal(signal.SIGINT)
    code, out, err = proc.finish()

    assert code == 130, err
    assert "stopped part-way after 1 action(s), 1 of them changed" in err
    assert '"credential_id": "alice"' in out and '"status": "applied"' in out
    assert world.changes() == [("disable_account", "alice")]


def test_a_database_that_fails_mid_pass_lists_what_was_changed_and_exits_4(world: FakeWorld) -> None:
    audit(world)
    world.update(lambda st: st.setdefault("block", {}).update({"AK1": "before"}))
    proc = start(world, "revoke", "--apply", "--person", "E1")
    proc.wait_for("FAKE-BLOCKED AK1 before")
    # The database breaks while the pass waits: the outcome of AK1 can no longer be written.
    with sqlite3.connect(world.root / "db.sqlite") as db:
        db.execute("ALTER TABLE audit_events RENAME TO audit_events_gone")
    proc.release()
    code, out, err = proc.finish()

    assert code == 4, err
    assert "stopped part-way after 1 action(s), 1 of them changed" in err
    assert "alice" in out and "applied" in out
    assert "internal error" in err and "the database or the disk failed" in err
