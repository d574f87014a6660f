"""A change whose call failed is re-read before it is recorded (issue 17, item 3).

A call can reach the system and still fail on the way back (a connection reset after the request
was processed). The engine must record what the object shows, not what the call claimed:
``applied`` when the change is in place, ``failed`` (retried) when it is not, ``unknown`` (settled
on the next pass) when the re-read fails too.
"""

from __future__ import annotations

from datetime import timedelta

from offboard_audit.core.records import FindingStatus
from offboard_audit.report.evidence import collect_evidence
from offboard_audit.storage.actions import iter_events, load_actions
from tests.support.fake_connector import FakeRevoker
from tests.support.revocation import NOW, Env


def test_a_change_that_reached_the_system_before_the_connection_reset_is_recorded_applied(env: Env) -> None:
    env.world.update(lambda st: st.setdefault("reset_after", {}).update({"AK2": "Connection reset by peer"}))
    env.audit()
    report = env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in report.outcomes if o.credential_id == "AK2")
    assert ak2.status == "applied"
    assert "Connection reset by peer" in ak2.message and "in place" in ak2.message
    assert env.world.credential("AK2")["active"] is False
    # The next audit calls the finding revoked (not resolved), and undo works.
    env.audit(NOW + timedelta(minutes=1))
    (finding,) = [
        f for f in env.store.list_findings(None, person="E2") if f.credential.credential_id == "AK2"
    ]
    assert finding.status is FindingStatus.REVOKED
    # The evidence pack counts it as revoked, at the time of that pass, by that action.
    evidence = collect_evidence(env.store, "E2", NOW + timedelta(minutes=1, seconds=30))
    (key,) = [c for c in evidence.credentials if c.credential_id == "AK2"]
    assert key.revoked_at is not None and key.revoked_by_action == ak2.action_id
    assert evidence.revoked >= 1
    undone = env.engine().undo_action(ak2.action_id, NOW + timedelta(minutes=2))
    assert [o.status for o in undone.outcomes] == ["restored"]


def test_a_change_whose_call_failed_and_did_not_happen_is_failed_and_retried(env: Env) -> None:
    env.world.update(lambda st: st.setdefault("fail", {}).update({"AK2": "Throttling: Rate exceeded"}))
    env.audit()
    first = env.engine().revoke(NOW, apply=True, person="E2")
    assert next(o for o in first.outcomes if o.credential_id == "AK2").status == "failed"
    env.world.update(lambda st: st["fail"].clear())
    second = env.engine().revoke(NOW, apply=True, person="E2")
    assert [(o.credential_id, o.status) for o in second.outcomes] == [("AK2", "applied")]


def test_when_the_re_read_fails_too_the_outcome_is_unknown_and_settled_on_the_next_pass(env: Env) -> None:
    def lose_answer_and_reads(st: dict) -> None:
        st.setdefault("reset_after", {})["AK2"] = "Connection reset by peer"
        st.setdefault("block", {})["AK2"] = "after"

    env.world.update(lose_answer_and_reads)
    env.audit()

    def reads_fail(credential_id: str, when: str) -> None:
        env.world.update(lambda st: st.setdefault("unreadable", {}).update({"AK2": "endpoint unreachable"}))

    engine = env.engine(revoker=FakeRevoker(env.world.state_path, wait=reads_fail))
    report = engine.revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in report.outcomes if o.credential_id == "AK2")
    assert ak2.status == "unknown" and not report.ok
    (rec,) = [r for r in load_actions(env.store, person="E2") if r.credential_id == "AK2"]
    assert rec.status == "unknown"
    # While unknown, the plan holds the finding instead of applying the action again.
    held = env.engine().plan(NOW, person="E2")
    assert "AK2" not in {a.credential_id for a in held.actions}
    assert any("unknown" in h.reason for h in held.held)

    # Reads work again: the next pass re-reads, finds the key inactive and records applied.
    env.world.update(lambda st: st["unreadable"].clear())
    later = env.engine().revoke(NOW, apply=True, person="E2")
    assert [(o.credential_id, o.status) for o in later.recovered] == [("AK2", "applied")]
    assert load_actions(env.store, action_ids=[rec.action_id])[0].status == "applied"
    assert [e.kind for e in iter_events(env.store) if e.action_id == rec.action_id] == [
        "intent",
        "outcome",
        "recovered",
    ]


def test_an_undo_whose_call_failed_after_restoring_is_recorded_restored(env: Env) -> None:
    env.audit()
    applied = env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in applied.outcomes if o.credential_id == "AK2")
    env.world.update(lambda st: st.setdefault("reset_after", {}).update({"AK2": "Connection reset by peer"}))
    undone = env.engine().undo_action(ak2.action_id, NOW)
    assert [o.status for o in undone.outcomes] == ["restored"]
    assert env.world.credential("AK2")["active"] is True
    assert load_actions(env.store, action_ids=[ak2.action_id])[0].status == "undone"
