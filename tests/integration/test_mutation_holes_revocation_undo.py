"""What an undo pass reports, writes and waits for: the report of a dry run, of an applied undo, of
an undo refused by a busy lock and of one stopped part-way; the revocation lock it holds and waits
for; the audit events and action rows of each undo. Found by a mutation run over
``RevocationEngine._undo``/``_undo_one`` in ``offboard_audit/engine/revocation.py``.

Everything runs in process (the fake JSON-file connector, SQLite, the real engine). Where a test
needs something to happen at an exact point of a pass it uses a hook of the engine or of the fake
connector: the ``reporter`` (told when the pass waits for the lock), the fake's ``wait`` (a blocked
change) or a hook on the fake's list of reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.config import load_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.locks import LockNotAcquired, acquire
from offboard_audit.engine.revocation import PassInterrupted, RevocationEngine
from offboard_audit.storage.actions import iter_events, load_actions
from offboard_audit.storage.locks import HeldLock, Locks
from tests.integration.test_revocation_identity import recreate_bob
from tests.support.fake_connector import FakeRevoker
from tests.support.revocation import NOW, Env

WAITING = "waiting for the revocation lock (held by "


class Interrupt(BaseException):
    """Stands for Ctrl-C: not an ``Exception``, so no step records it as a failed call."""


class ReadHook(list[tuple[str, str]]):
    """The fake revoker's list of reads, calling ``on_read(action, credential_id)`` on each."""

    def __init__(self, on_read: Callable[[str, str], None]) -> None:
        super().__init__()
        self.on_read = on_read

    def append(self, item: tuple[str, str]) -> None:
        super().append(item)
        self.on_read(*item)


def hooked_revoker(env: Env, on_read: Callable[[str, str], None]) -> FakeRevoker:
    revoker = FakeRevoker(env.world.state_path)
    revoker.reads = ReadHook(on_read)
    return revoker


def hold_lock(env: Env, owner: str = "daemon") -> HeldLock:
    """The revocation lock, held by another pass until released."""
    held = Locks(env.store, owner).try_acquire("revocation")
    assert held is not None
    return held


def action_id_of(env: Env, credential_id: str, action: str | None = None) -> str:
    (rec,) = [
        r
        for r in load_actions(env.store)
        if r.credential_id == credential_id and r.undo_of is None and action in (None, r.action)
    ]
    return rec.action_id


def undos_of(env: Env, action_id: str) -> list[ActionRecord]:
    return [r for r in load_actions(env.store) if r.undo_of == action_id]


def events_of(env: Env, action_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, json.loads(e.payload_json)) for e in iter_events(env.store) if e.action_id == action_id]


def leave_an_interrupted_revoke_of_ak1(env: Env) -> str:
    """A revoke pass stopped (Ctrl-C) after AK1 was changed and before its outcome was written:
    AK1's action row stays in ``intent``. Returns its action id."""

    def ctrl_c(credential_id: str, when: str) -> None:
        raise Interrupt("ctrl-c after the change")

    env.world.update(lambda st: st.setdefault("block", {}).update({"AK1": "after"}))
    stopping = env.engine(revoker=FakeRevoker(env.world.state_path, wait=ctrl_c))
    with pytest.raises(PassInterrupted):
        stopping.revoke(NOW, apply=True, finding_ids=[env.finding_id("AK1")])
    (left,) = load_actions(env.store, statuses=[ActionStatus.INTENT])
    assert left.credential_id == "AK1"
    assert env.world.credential("AK1")["active"] is False
    return left.action_id


# --- the report ------------------------------------------------------------------------------


def test_a_dry_run_undo_reports_dry_run_what_it_would_restore_and_takes_no_lock(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    events_before = len(list(iter_events(env.store)))
    blocker = hold_lock(env)  # a dry run neither waits for nor needs the lock

    report = env.engine(lock_timeout=0).undo_person("E2", NOW, apply=False)

    assert report.refused is None
    assert report.dry_run is True
    assert sorted((o.credential_id, o.status, o.message) for o in report.outcomes) == [
        ("AK2", "dry-run", "would restore AK2 to active"),
        ("bob", "dry-run", "would restore bob to active"),
    ]
    assert report.recovered == ()
    assert report.limit is None
    assert env.world.changes("undo") == []
    assert [r.status for r in load_actions(env.store)] == ["applied", "applied"]
    assert len(list(iter_events(env.store))) == events_before
    blocker.release()


def test_an_applied_undo_of_nothing_undoable_answers_at_once_without_the_lock_and_is_not_a_dry_run(
    env: Env,
) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    env.engine().undo_action(ak2, NOW)
    blocker = hold_lock(env)  # another pass runs: nothing to undo must not wait for it
    told: list[str] = []

    report = env.engine(lock_timeout=0, reporter=told.append).undo_action(ak2, NOW, apply=True)

    assert report.refused is None
    assert report.dry_run is False
    assert [(o.action_id, o.status, o.message) for o in report.outcomes] == [
        (ak2, "nothing", "already undone")
    ]
    assert report.recovered == ()
    assert told == []
    assert len(undos_of(env, ak2)) == 1
    blocker.release()


def test_an_undo_refused_by_a_busy_lock_says_who_holds_it_and_keeps_the_outcomes_already_known(
    env: Env,
) -> None:
    # alice's key AK1 deactivated, then deleted (irreversible): her undo knows that before the lock.
    env.reload({"delete_after": "7d"})
    env.audit()
    env.engine().revoke(NOW, apply=True)
    env.audit(NOW + timedelta(hours=1))
    late = NOW + timedelta(days=8)
    deleted = env.engine(late).revoke(late, apply=True)
    assert {(o.credential_id, o.action) for o in deleted.outcomes} == {
        ("AK1", "delete_key"),
        ("AK2", "delete_key"),
    }
    delete_ak1 = action_id_of(env, "AK1", "delete_key")
    blocker = hold_lock(env)
    told: list[str] = []

    def on_report(line: str) -> None:
        told.append(line)
        if line.startswith(WAITING):
            blocker.release()  # a pass that waited after all would then go on, and show it

    report = env.engine(now=late, lock_timeout=0, reporter=on_report).undo_person("E1", late)

    assert report.refused == f"the revocation lock is held by {blocker.holder}; try again later"
    assert [(o.action_id, o.credential_id, o.status) for o in report.outcomes] == [
        (delete_ak1, "AK1", "irreversible")
    ]
    assert report.dry_run is False
    assert told == []  # a lock_timeout of 0 never waits
    assert env.world.changes("undo") == []
    assert [r for r in load_actions(env.store) if r.undo_of is not None] == []
    blocker.release()


def test_an_undo_waits_for_the_lock_saying_so_and_then_sees_the_undo_done_meanwhile(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    blocker = hold_lock(env, "daemon")
    told: list[str] = []
    meanwhile: list[Any] = []

    def on_report(line: str) -> None:
        told.append(line)
        if line.startswith(WAITING) and not meanwhile:
            # The other pass ends after undoing the same action itself.
            blocker.release()
            meanwhile.append(env.engine(actor="cli:bob").undo_action(ak2, NOW))

    report = env.engine(actor="cli:alice", lock_timeout=1.5, reporter=on_report).undo_action(ak2, NOW)

    assert told[0].startswith(WAITING + "daemon@")
    assert [o.status for o in meanwhile[0].outcomes] == ["restored"]
    assert report.refused is None
    # Read again under the lock: already undone, not a second undo.
    assert [(o.action_id, o.status, o.message) for o in report.outcomes] == [
        (ak2, "nothing", "already undone")
    ]
    assert [(r.actor, r.status) for r in undos_of(env, ak2)] == [("cli:bob", "restored")]
    assert env.world.changes("undo") == [("deactivate_key", "AK2")]


def test_an_undo_holds_the_revocation_lock_in_the_name_of_its_actor(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    holders: list[str | None] = []

    def probe(action: str, credential_id: str) -> None:
        try:
            with acquire(env.store, "probe", 0):
                holders.append(None)
        except LockNotAcquired as exc:
            holders.append(exc.holder)

    report = env.engine(actor="cli:alice", revoker=hooked_revoker(env, probe)).undo_action(ak2, NOW)

    assert [o.status for o in report.outcomes] == ["restored"]
    assert len(holders) == 2  # the read before the restore and the re-read after it
    assert all(h is not None and h.startswith("cli:alice@") for h in holders), holders


def test_an_undo_pass_first_settles_an_interrupted_intent_and_reports_it_as_recovered(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    interrupted = leave_an_interrupted_revoke_of_ak1(env)

    report = env.engine().undo_action(ak2, NOW)

    assert report.refused is None
    assert [(o.action_id, o.status, o.message) for o in report.recovered] == [
        (interrupted, "applied", "recovered after an interruption: the change was found in place")
    ]
    assert [(o.undo_of, o.status) for o in report.outcomes] == [(ak2, "restored")]
    (settled,) = load_actions(env.store, action_ids=[interrupted])
    assert settled.status == "applied"
    assert [kind for kind, _ in events_of(env, interrupted)] == ["intent", "recovered"]


def test_an_undo_stopped_part_way_reports_what_it_restored_recovered_and_why_it_stopped(env: Env) -> None:
    env.audit()
    # bob's login revoked first, his key a minute later: his undo restores the key first.
    env.engine().revoke(NOW, apply=True, finding_ids=[env.finding_id("bob")])
    later = NOW + timedelta(minutes=1)
    env.engine(later).revoke(later, apply=True, finding_ids=[env.finding_id("AK2")])
    bob, ak2 = action_id_of(env, "bob"), action_id_of(env, "AK2")
    interrupted = leave_an_interrupted_revoke_of_ak1(env)
    ctrl_c = Interrupt("ctrl-c")

    def stop_at_bob(action: str, credential_id: str) -> None:
        if credential_id == "bob":
            raise ctrl_c

    undo_now = NOW + timedelta(minutes=2)
    undoing = env.engine(now=undo_now, revoker=hooked_revoker(env, stop_at_bob))
    with pytest.raises(PassInterrupted) as stopped:
        undoing.undo_person("E2", undo_now)

    assert stopped.value.cause is ctrl_c
    assert str(stopped.value) == "stopped part-way: Interrupt: ctrl-c"
    report = stopped.value.report
    assert report.refused is None
    assert report.dry_run is False
    assert [(o.undo_of, o.credential_id, o.status) for o in report.outcomes] == [(ak2, "AK2", "restored")]
    assert [(o.action_id, o.status) for o in report.recovered] == [(interrupted, "applied")]
    assert env.world.credential("AK2")["active"] is True
    assert env.world.credential("bob")["active"] is False
    assert undos_of(env, bob) == []
    assert [r.status for r in load_actions(env.store, action_ids=[bob, ak2])] == ["applied", "undone"]


# --- the action rows and audit events of one undo ---------------------------------------------


def test_an_undo_logs_the_state_to_restore_and_the_state_it_found_and_marks_the_original_undone(
    env: Env,
) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")

    report = env.engine(actor="cli:alice").undo_action(ak2, NOW)

    assert report.refused is None and report.dry_run is False and report.recovered == ()
    (done,) = report.outcomes
    assert (done.undo_of, done.credential_id, done.status) == (ak2, "AK2", "restored")
    (undo,) = undos_of(env, ak2)
    assert undo.action_id == done.action_id
    assert (undo.plan_id, undo.actor, undo.status) == ("undo", "cli:alice", "restored")
    assert undo.prior_state is not None
    assert (undo.prior_state.exists, undo.prior_state.active) == (True, False)
    off = {"exists": True, "active": False, "data": {"status": "off"}, "identity": "uid-bob"}
    on = {"exists": True, "active": True, "data": {"status": "on"}, "identity": "uid-bob"}
    events = events_of(env, undo.action_id)
    assert [kind for kind, _ in events] == ["undo-intent", "undo-outcome"]
    intent, result = events[0][1], events[1][1]
    assert (intent["restore_to"], intent["current"], intent["undo_of"]) == (on, off, ak2)
    assert (result["status"], result["after"]) == ("restored", on)
    (orig,) = load_actions(env.store, action_ids=[ak2])
    assert orig.status == "undone"


def test_an_undo_whose_revoker_cannot_be_built_fails_with_its_reason_in_an_undo_outcome_event(
    env: Env, tmp_path: Path
) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    # The same database, but the source the action was taken on is no longer configured.
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(env.world.config_path.read_text().replace('name = "fake"', 'name = "fake-renamed"'))
    config = load_config(renamed, env={})
    undoing = RevocationEngine(
        config, env.store, SourceContext(base_dir=config.base_dir), "test", clock=lambda: NOW
    )

    report = undoing.undo_action(ak2, NOW)

    (failed,) = report.outcomes
    assert (failed.undo_of, failed.status) == (ak2, "failed")
    assert failed.error == (
        "could not read the current state: --source: no source named 'fake' (configured: hr, fake-renamed)"
    )
    (undo,) = undos_of(env, ak2)
    assert (undo.status, undo.error) == ("failed", failed.error)
    events = events_of(env, undo.action_id)
    assert [(kind, p["status"], p["error"]) for kind, p in events] == [
        ("undo-outcome", "failed", failed.error)
    ]
    (orig,) = load_actions(env.store, action_ids=[ak2])
    assert orig.status == "applied"
    assert env.world.credential("AK2")["active"] is False


def test_an_undo_of_a_reused_name_logs_target_changed_as_its_undo_outcome(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = action_id_of(env, "AK2")
    env.world.update(recreate_bob)

    report = env.engine().undo_action(ak2, NOW)

    (changed,) = report.outcomes
    assert changed.status == "target-changed"
    (undo,) = undos_of(env, ak2)
    events = events_of(env, undo.action_id)
    assert [(kind, p["status"], p["observed_identity"]) for kind, p in events] == [
        ("undo-outcome", "target-changed", "uid-bob-NEW-HIRE")
    ]
    assert env.world.changes("undo") == []
