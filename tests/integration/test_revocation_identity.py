"""The engine acts only on the object it planned for (issue 10, item 1) and its last-moment guards.

The fake connector's accounts carry an immutable ``uid``; deleting ``bob`` and adding a new
``bob`` with another uid is a reused name. Each test drives the real pipeline and engine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.core.records import Exemption, FindingStatus
from offboard_audit.core.stored import ActionStatus
from offboard_audit.storage.actions import NewEvent, iter_events, load_actions, record_new_action
from offboard_audit.storage.tables import FINDINGS
from tests.support.fake_connector import FakeRevoker, WritesNothingRevoker
from tests.support.revocation import NOW, Env

BOB_CREDENTIALS = {"bob", "AK2"}


def recreate_bob(st: dict[str, Any]) -> None:
    """Delete bob with his credentials and hire a new person under the same account name."""
    st["accounts"] = [a for a in st["accounts"] if a["id"] != "bob"]
    st["credentials"] = [c for c in st["credentials"] if c["account_id"] != "bob"]
    st["accounts"].append({"id": "bob", "username": "bob", "enabled": True, "uid": "uid-bob-NEW-HIRE"})
    st["credentials"] += [
        {"account_id": "bob", "id": "bob", "kind": "account"},
        {"account_id": "bob", "id": "AK2", "kind": "access_key"},
    ]


def new_hire_untouched(env: Env) -> bool:
    state = env.world.state()
    bob = [c for c in state["credentials"] if c["account_id"] == "bob"]
    touched = [e for e in state.get("log", []) if e["credential_id"] in BOB_CREDENTIALS]
    return all(c.get("active", True) for c in bob) and not touched


def test_a_name_reused_between_plan_and_apply_is_target_changed_and_never_touched(env: Env) -> None:
    env.audit()
    planned = env.engine().plan(NOW, person="E2")
    assert {a.credential_id for a in planned.actions} == BOB_CREDENTIALS
    assert {a.account_uid for a in planned.actions} == {"uid-bob"}

    env.world.update(recreate_bob)
    report = env.engine().revoke(NOW, apply=True, person="E2")

    assert {(o.credential_id, o.status) for o in report.outcomes} == {
        ("bob", "target-changed"),
        ("AK2", "target-changed"),
    }
    assert all("uid-bob-NEW-HIRE" in (o.error or "") for o in report.outcomes)
    assert not report.ok  # the CLI exits 1: somebody has to look
    assert new_hire_untouched(env)
    # Logged to the audit chain with the identity that was found, and the chain verifies.
    events = [e for e in iter_events(env.store) if '"target-changed"' in e.payload_json]
    assert len(events) == 2 and all("uid-bob-NEW-HIRE" in e.payload_json for e in events)
    assert verify_chain(iter_events(env.store)).ok
    # Nothing was revoked: the findings stay open, and the next plan still holds no done keys.
    assert {f.status for f in env.store.list_findings(None, person="E2")} == {FindingStatus.OPEN}
    assert env.store.revoked_finding_ids() == set()


def test_an_account_deleted_since_the_plan_is_target_changed(env: Env) -> None:
    env.audit()
    env.world.update(lambda st: st.update(accounts=[a for a in st["accounts"] if a["id"] != "bob"]))
    report = env.engine().revoke(NOW, apply=True, person="E2")
    assert {o.status for o in report.outcomes} == {"target-changed"}
    assert all("no longer exists" in (o.error or "") for o in report.outcomes)


def test_undo_after_the_name_was_reused_is_target_changed_and_restores_nothing(env: Env) -> None:
    env.audit()
    applied = env.engine().revoke(NOW, apply=True, person="E2")
    assert {o.status for o in applied.outcomes} == {"applied"}
    env.world.update(recreate_bob)
    # The new hire's key is inactive by their own admin's choice: undo must not switch it on.
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK2").update(active=False))

    report = env.engine().undo_person("E2", NOW)

    assert {(o.credential_id, o.status) for o in report.outcomes} == {
        ("bob", "target-changed"),
        ("AK2", "target-changed"),
    }
    assert env.world.credential("AK2")["active"] is False
    originals = [r for r in load_actions(env.store, person="E2") if r.undo_of is None]
    assert {r.status for r in originals} == {"applied"}


def test_a_finding_without_a_recorded_identity_is_never_acted_on(env: Env) -> None:
    env.audit()
    with env.store.begin() as conn:  # a finding stored before identities were tracked
        conn.execute(update(FINDINGS).values(account_uid=""))
    report = env.engine().revoke(NOW, apply=True, person="E2")
    assert {o.status for o in report.outcomes} == {"target-changed"}
    assert all("run the audit again" in (o.error or "") for o in report.outcomes)
    assert env.world.changes() == []


def test_recovery_of_an_interrupted_action_whose_name_was_reused_records_target_changed(env: Env) -> None:
    env.audit()
    engine = env.engine()
    (pa,) = [a for a in engine.plan(NOW, person="E2").actions if a.credential_id == "AK2"]
    rec = engine.journal.new_record(pa, "p-test", NOW, action_id="a-interrupted")
    # A process wrote its intent and died; meanwhile the name was reused.
    record_new_action(
        env.store, rec, NewEvent("intent", NOW, "dead", {"action_id": rec.action_id}, rec.action_id)
    )
    assert load_actions(env.store, action_ids=["a-interrupted"])[0].status is ActionStatus.INTENT
    env.world.update(recreate_bob)

    report = env.engine().revoke(NOW, apply=True, person="E2")

    (recovered,) = report.recovered
    assert recovered.status == "target-changed"
    assert load_actions(env.store, action_ids=["a-interrupted"])[0].status == "target-changed"
    assert new_hire_untouched(env)


def test_an_exemption_added_while_a_pass_runs_stops_the_actions_not_yet_applied(env: Env) -> None:
    env.audit()

    def meanwhile(credential_id: str, when: str) -> None:
        # While the first action (alice's login) is in flight, someone exempts bob's key.
        env.store.add_exemption(
            Exemption("x-late", "fake:bob:AK2", "legal hold", NOW + timedelta(days=1), "lead", NOW)
        )

    env.world.update(lambda st: st.setdefault("block", {}).update({"alice": "before"}))
    engine = env.engine(revoker=FakeRevoker(env.world.state_path, wait=meanwhile))
    report = engine.revoke(NOW, apply=True)

    by_id = {o.credential_id: o for o in report.outcomes}
    assert by_id["alice"].status == "applied"
    assert by_id["AK2"].status == "skipped" and "x-late" in (by_id["AK2"].error or "")
    # The reason is in ``error``; the revoke table shows ``error or message``, so no message.
    assert by_id["AK2"].message == ""
    assert env.world.credential("AK2").get("active", True) is True


def test_an_undo_whose_re_read_does_not_show_the_restore_is_failed_and_stays_applied(env: Env) -> None:
    env.audit()
    applied = env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in applied.outcomes if o.credential_id == "AK2")
    engine = env.engine(revoker=WritesNothingRevoker(env.world.state_path))
    report = engine.undo_action(ak2.action_id, NOW)

    (outcome,) = report.outcomes
    assert outcome.status == "failed" and "not verified" in (outcome.error or "")
    assert load_actions(env.store, action_ids=[ak2.action_id])[0].status == "applied"
    assert env.world.credential("AK2")["active"] is False
