"""Revocation across processes: the CLI, a process killed mid-apply, two processes at once.

Every process is a real ``python -m offboard_audit`` with the fake connector registered through
OFFBOARD_AUDIT_EXTRA_SOURCES. Synchronisation is by pipes only: the fake revoker announces
``FAKE-BLOCKED <id> <when>`` on stderr and waits for a line on stdin; the engine announces
``waiting for the revocation lock`` on stderr.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.storage.actions import iter_events, load_actions
from offboard_audit.storage.store import Store
from tests.support.fake_connector import FakeWorld, cli, fake_env, standard_world
from tests.support.processes import TIMEOUT, Proc, start


@pytest.fixture
def sqlite_world(tmp_path: Path) -> FakeWorld:
    return standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.fixture
def store_of() -> Iterator[Callable[[FakeWorld], Store]]:
    opened: list[Store] = []

    def get(world: FakeWorld) -> Store:
        store = Store.open(world.db_url)
        opened.append(store)
        return store

    yield get
    for s in opened:
        s.engine.dispose()


def _block(world: FakeWorld, credential_id: str, when: str) -> None:
    world.update(lambda st: st.setdefault("block", {}).update({credential_id: when}))


# --- crash safety ---------------------------------------------------------------------------


def test_process_killed_after_the_change_is_recovered_as_applied_and_not_applied_again(
    sqlite_world: FakeWorld, store_of: Callable[[FakeWorld], Store]
) -> None:
    world = sqlite_world
    cli(world, "audit")
    _block(world, "AK2", "after")
    proc = start(world, "revoke", "--apply", "--person", "E2")
    proc.wait_for("FAKE-BLOCKED AK2 after")
    proc.popen.kill()
    proc.popen.wait(timeout=TIMEOUT)
    store = store_of(world)
    (row,) = [a for a in load_actions(store) if a.credential_id == "AK2"]
    assert row.status == "intent" and world.credential("AK2")["active"] is False

    code, _out, err = cli(world, "revoke", "--apply", "--person", "E2")
    assert code == 0, err
    assert "recovered interrupted action" in err
    assert world.changes().count(("deactivate_key", "AK2")) == 1
    (row,) = [a for a in load_actions(store) if a.credential_id == "AK2"]
    assert row.status == "applied"
    kinds = [e.kind for e in iter_events(store) if e.action_id == row.action_id]
    assert kinds == ["intent", "recovered"]
    assert verify_chain(iter_events(store)).ok


def test_process_killed_before_the_change_is_recorded_failed_and_applied_once_on_the_next_run(
    sqlite_world: FakeWorld, store_of: Callable[[FakeWorld], Store]
) -> None:
    world = sqlite_world
    cli(world, "audit")
    _block(world, "AK2", "before")
    proc = start(world, "revoke", "--apply", "--person", "E2")
    proc.wait_for("FAKE-BLOCKED AK2 before")
    proc.popen.kill()
    proc.popen.wait(timeout=TIMEOUT)
    assert world.credential("AK2").get("active", True) is True

    code, _out, err = cli(world, "revoke", "--apply", "--person", "E2")
    assert code == 0, err
    assert world.changes().count(("deactivate_key", "AK2")) == 1
    assert world.credential("AK2")["active"] is False
    rows = [a.status for a in load_actions(store_of(world)) if a.credential_id == "AK2"]
    assert rows == ["failed", "applied"]


# --- concurrency ----------------------------------------------------------------------------


def _two_appliers(world: FakeWorld, store: Store) -> None:
    cli(world, "audit")
    _block(world, "alice", "before")  # the first action of the plan
    first = start(world, "revoke", "--apply")
    first.wait_for("FAKE-BLOCKED alice before")
    second = start(world, "revoke", "--apply")
    second.wait_for("waiting for the revocation lock")
    first.release()
    code1, _, err1 = first.finish()
    code2, _, err2 = second.finish()
    assert (code1, code2) == (0, 0), err1 + err2
    assert "nothing to do" in err2
    changes = world.changes()
    assert sorted(changes) == sorted(set(changes)) and len(changes) == 5
    actions = load_actions(store)
    assert len(actions) == 5 and {a.status for a in actions} == {"applied"}
    assert len({a.key for a in actions}) == 5
    assert verify_chain(iter_events(store)).ok


def test_two_processes_on_sqlite_never_apply_the_same_action_twice(
    sqlite_world: FakeWorld, store_of: Callable[[FakeWorld], Store]
) -> None:
    _two_appliers(sqlite_world, store_of(sqlite_world))


@pytest.mark.postgres
def test_two_processes_on_postgresql_never_apply_the_same_action_twice(
    tmp_path: Path, postgres_url: str, store_of: Callable[[FakeWorld], Store]
) -> None:
    world = standard_world(tmp_path, postgres_url)
    cli(world, "db", "upgrade")
    _two_appliers(world, store_of(world))


_APPEND = """
import sys
from datetime import UTC, datetime
from offboard_audit.storage.store import Store
from offboard_audit.storage.actions import NewEvent, append_event
store = Store.open(sys.argv[1])
sys.stderr.write("ready\\n"); sys.stderr.flush()
sys.stdin.readline()
for i in range(int(sys.argv[2])):
    append_event(store, NewEvent("test", datetime.now(UTC), sys.argv[3], {"i": i}))
"""


def _concurrent_appends(url: str, tmp_path: Path) -> None:
    Store.open(url).engine.dispose()  # migrate once, before the writers start
    procs = []
    for name in ("w1", "w2"):
        popen = subprocess.Popen(
            [sys.executable, "-c", _APPEND, url, "150", name],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=fake_env(),
            cwd=tmp_path,
        )
        p = Proc(popen)
        p.start_reader()
        p.wait_for("ready")
        procs.append(p)
    for p in procs:
        p.release()
    for p in procs:
        code, _, err = p.finish()
        assert code == 0, err
    store = Store.open(url)
    result = verify_chain(iter_events(store))
    store.engine.dispose()
    assert result.ok, result.problems
    assert result.events == 300


def test_concurrent_writers_keep_one_unbroken_chain_on_sqlite(tmp_path: Path) -> None:
    _concurrent_appends(f"sqlite:///{tmp_path / 'chain.db'}", tmp_path)


@pytest.mark.postgres
def test_concurrent_writers_keep_one_unbroken_chain_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    _concurrent_appends(postgres_url, tmp_path)


# --- the CLI contract -----------------------------------------------------------------------


def test_cli_dry_run_apply_idempotence_and_cap_exit_codes(sqlite_world: FakeWorld) -> None:
    world = sqlite_world
    cli(world, "audit")
    code, out, err = cli(world, "revoke")
    assert code == 0 and "dry run: 5 action(s) would be applied" in err and world.changes() == []
    code, out, err = cli(world, "revoke", "--max-actions", "4", "--apply")
    assert code == 1 and "blast-radius cap" in err and "5 actions" in err and world.changes() == []
    code, out, err = cli(world, "revoke", "--max", "1", "--apply")
    assert code == 1 and "blast-radius cap" in err and "2 people" in err and world.changes() == []
    code, out, err = cli(world, "revoke", "--apply", "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert body["summary"] == {"changed": 5, "failed": 0, "already_done": 0}
    code, out, err = cli(world, "revoke", "--apply")
    assert code == 0 and "nothing to do" in err and "5 action(s) already applied" in err
    assert len(world.changes()) == 5
    code, out, _ = cli(world, "findings", "--format", "json")
    latest = {
        f["credential"]["id"]: f["actions"][-1]["status"] for f in json.loads(out)["findings"] if f["actions"]
    }
    assert latest == dict.fromkeys(["alice", "AK1", "group/g-admins", "bob", "AK2"], "applied")


def test_cli_plan_file_applies_exactly_its_actions_and_edited_or_stale_files_are_refused(
    sqlite_world: FakeWorld,
) -> None:
    world = sqlite_world
    cli(world, "audit")
    plan = world.root / "plan.json"
    code, _out, err = cli(world, "plan", "--person", "E2", "--output", str(plan), "--format", "json")
    assert code == 0, err
    body = json.loads(plan.read_text())
    assert [a["action"] for a in body["actions"]] == ["disable_account", "deactivate_key"]
    assert all(a["reversible"] and a["permissions"] for a in body["actions"])
    assert {h["rule"] for h in body["held"]} == set()  # --person E2: nothing of E2 is held

    edited = world.root / "edited.json"
    tampered = dict(body)
    tampered["actions"] = body["actions"][:1]
    edited.write_text(json.dumps(tampered))
    code, _, err = cli(world, "revoke", "--plan", str(edited), "--apply")
    assert code == 1 and "edited" in err and world.changes() == []

    code, _, err = cli(world, "revoke", "--plan", str(plan), "--apply")
    assert code == 0, err
    assert sorted(c for _, c in world.changes()) == ["AK2", "bob"]

    full = world.root / "full.json"
    cli(world, "plan", "--output", str(full))

    def new_key(st: dict[str, Any]) -> None:
        st["credentials"].append({"account_id": "alice", "id": "AK9", "kind": "access_key"})

    world.update(new_key)
    cli(world, "audit")
    code, _, err = cli(world, "revoke", "--plan", str(full), "--apply")
    assert code == 1 and "stale" in err
    assert sorted(c for _, c in world.changes()) == ["AK2", "bob"]


def test_cli_protected_account_named_with_finding_is_not_touched(sqlite_world: FakeWorld) -> None:
    world = sqlite_world
    cli(world, "audit")
    code, out, _ = cli(world, "findings", "--format", "json")
    fid = next(f["id"] for f in json.loads(out)["findings"] if f["account"]["name"] == "breakglass")
    code, out, err = cli(world, "revoke", "--finding", fid, "--apply")
    assert code == 0 and "protected" in out and "nothing to do" in err
    assert world.changes() == []
    code, _, err = cli(world, "revoke", "--finding", "nope", "--apply")
    assert code == 2 and "unknown finding id" in err


def test_cli_undo_exempt_report_and_log_verify(sqlite_world: FakeWorld) -> None:
    world = sqlite_world
    code, out, _ = cli(
        world,
        "exempt",
        "add",
        "fake:bob:*",
        "--reason",
        "legal hold",
        "--until",
        "2099-01-01",
        "--by",
        "ciso",
    )
    assert code == 0
    exemption_id = out.strip()
    code, out, _ = cli(world, "exempt", "list", "--format", "json")
    assert [(e["id"], e["selector"], e["active"], e["by"]) for e in json.loads(out)] == [
        (exemption_id, "fake:bob:*", True, "ciso")
    ]
    cli(world, "audit")
    code, out, err = cli(world, "revoke", "--apply", "--format", "json")
    assert code == 0, err
    outcomes = json.loads(out)["outcomes"]
    assert sorted(o["credential_id"] for o in outcomes) == ["AK1", "alice", "group/g-admins"]
    assert cli(world, "exempt", "remove", exemption_id)[0] == 0

    key_action = next(o["action_id"] for o in outcomes if o["credential_id"] == "AK1")
    code, _, err = cli(world, "undo", key_action)
    assert code == 0 and "dry run" in err and world.credential("AK1")["active"] is False
    code, _, err = cli(world, "undo", key_action, "--apply")
    assert code == 0, err
    assert world.credential("AK1")["active"] is True

    code, out, _ = cli(world, "report", "--person", "E1", "--format", "json")
    report = json.loads(out)
    assert {a["id"] for a in report["accounts"]} == {"alice", "breakglass"}
    assert report["audit_log"]["chain_verified"] is True
    code, out, _ = cli(world, "report", "--person", "E1", "--format", "html")
    assert code == 0 and out.startswith("<!doctype html>")

    code, out, _ = cli(world, "log", "verify")
    assert code == 0 and out.startswith("ok:")
    head = out.split()[-1]
    db = world.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        seq = conn.execute("SELECT min(seq) FROM audit_events WHERE payload_json LIKE '%AK1%'").fetchone()[0]
        conn.execute(
            "UPDATE audit_events SET payload_json = replace(payload_json, 'AK1', 'AK7') WHERE seq = ?", (seq,)
        )
    code, out, err = cli(world, "log", "verify")
    assert code == 1 and f"event {seq}: content edited" in err
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE audit_events SET payload_json = replace(payload_json, 'AK7', 'AK1') WHERE seq = ?", (seq,)
        )
        last = conn.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
        conn.execute("DELETE FROM audit_events WHERE seq = ?", (last,))
    code, out, err = cli(world, "log", "verify")
    # A cut-off tail leaves an intact chain; the actions table still holds what the deleted
    # outcome recorded, and verify reports the disagreement (issue 11 item 1) ...
    assert code == 1 and "broken:" not in err and "discrepancy:" in err
    code, out, err = cli(world, "log", "verify", "--head", head)
    assert code == 1 and "cut off" in err  # ... and the head printed earlier exposes the cut
