"""Issue 11 items 1 and 2: the evidence pack takes every revocation figure from the hash-chained
events, and the ``actions`` table (which the chain does not cover) is only compared with them.

The tampering is done the way an insider with database access would: plain SQL on the
``actions`` table, never through the tool.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html, evidence_json
from offboard_audit.storage.actions import iter_events, load_actions
from tests.support.fake_connector import FakeRevoker
from tests.support.revocation import NOW, Env

TERMINATED_E1 = datetime(2026, 1, 10, tzinfo=UTC)


def _sql(env: Env, statement: str, **params: object) -> None:
    with env.store.engine.begin() as conn:
        conn.execute(text(statement), params)


def _creds(data: dict) -> dict[str, dict]:
    return {c["id"]: c for a in data["accounts"] for c in a["credentials"]}


def _outcome_event(env: Env, action_id: str):
    return next(e for e in iter_events(env.store) if e.action_id == action_id and e.kind == "outcome")


def test_report_takes_when_and_who_from_the_chain_and_lists_the_edited_row_as_a_discrepancy(env: Env) -> None:
    env.audit()
    report = env.engine(actor="cli:secops").revoke(NOW, apply=True, person="E1")
    ak1 = next(o for o in report.outcomes if o.credential_id == "AK1")
    logged = _outcome_event(env, ak1.action_id)
    # An insider rewrites who revoked the key and when, in the table the chain does not cover.
    _sql(
        env,
        "UPDATE actions SET updated_at = :t, actor = 'cli:mallory' WHERE action_id = :a",
        t="2026-01-10 00:05:00.000000",
        a=ak1.action_id,
    )

    data = evidence_json(collect_evidence(env.store, "E1", NOW + timedelta(minutes=5)))

    key = _creds(data)["AK1"]
    assert key["revoked_by"] == "cli:secops" and key["revoked_by_action"] == ak1.action_id
    assert key["revoked_at"] == logged.at.isoformat()
    assert key["time_to_revoke_seconds"] == (logged.at - TERMINATED_E1).total_seconds()
    action = next(a for a in data["actions"] if a["id"] == ak1.action_id)
    assert action["actor"] == "cli:secops" and action["updated_at"] == logged.at.isoformat()
    # The chain itself is intact; the pack says where the table disagrees with it.
    assert data["audit_log"]["chain_verified"] is True
    fields = {(d["action_id"], d["field"]) for d in data["discrepancies"]}
    assert fields == {(ak1.action_id, "actor"), (ak1.action_id, "updated_at")}
    assert data["summary"]["discrepancies"] == 2
    actor = next(d for d in data["discrepancies"] if d["field"] == "actor")
    assert actor["actions_table"] == "'cli:mallory'" and actor["audit_log"] == "'cli:secops'"


def test_log_verify_reports_rows_that_disagree_with_the_chain_or_are_missing_from_it(env: Env) -> None:
    from offboard_audit.report.audit_trail import AuditTrail, check_trail

    env.audit()
    report = env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in report.outcomes if o.credential_id == "AK2")
    bob = next(o for o in report.outcomes if o.credential_id == "bob")
    assert check_trail(env.store, AuditTrail()).ok

    _sql(env, "UPDATE actions SET status = 'failed' WHERE action_id = :a", a=ak2.action_id)
    _sql(env, "DELETE FROM actions WHERE action_id = :a", a=bob.action_id)
    _sql(
        env,
        "INSERT INTO actions (action_id, plan_id, finding_id, source, system, scope, account_id, username,"
        " account_uid, credential_id, credential_kind, detail, action, stage, reversible,"
        " person_employee_id, status, actor, created_at, updated_at)"
        " VALUES ('a-forged', 'p-x', NULL, 'fake', 'fake', '', 'carol', 'carol', '', 'carol', 'account',"
        " '', 'disable_account', 'disable', 1, 'E3', 'applied', 'cli:mallory',"
        " '2026-03-01 12:00:00.000000', '2026-03-01 12:00:00.000000')",
    )

    check = check_trail(env.store, AuditTrail())
    assert check.result.ok and not check.ok
    found = sorted(str(d) for d in check.discrepancies)
    assert found == sorted(
        [
            "action a-forged: in the actions table but not in the audit log (row added, or its events deleted)",
            f"action {ak2.action_id}: status is 'failed' in the actions table but 'applied' in the audit log",
            f"action {bob.action_id}: in the audit log but its row in the actions table is missing",
        ]
    )


def test_undo_then_revoke_again_counts_the_revocation_in_force_and_lists_every_step_with_its_time(
    env: Env,
) -> None:
    t_revoke, t_undo, t_audit, t_again = (NOW + timedelta(hours=h) for h in (0, 1, 2, 3))
    env.audit(t_revoke)
    first = env.engine(t_revoke, actor="cli:alice").revoke(t_revoke, apply=True, person="E2")
    key = next(o for o in first.outcomes if o.credential_id == "AK2")
    undo = env.engine(t_undo, actor="cli:bob").undo_action(key.action_id, t_undo)
    assert [o.status for o in undo.outcomes] == ["restored"]
    env.audit(t_audit)  # sees the key active again: the finding is open again
    again = env.engine(t_again, actor="cli:carol").revoke(t_again, apply=True, person="E2")
    second = next(o for o in again.outcomes if o.credential_id == "AK2")
    env.audit(t_again + timedelta(minutes=1))  # the finding is revoked now

    evidence = collect_evidence(env.store, "E2", t_again + timedelta(minutes=2))
    data = evidence_json(evidence)
    ak2 = _creds(data)["AK2"]
    assert ak2["finding"]["status"] == "revoked"
    # The revocation in force now is the second one, by whoever made it, at its own time.
    assert ak2["revoked_by_action"] == second.action_id and ak2["revoked_by"] == "cli:carol"
    assert ak2["revoked_at"] == t_again.isoformat() and ak2["undone"] is False
    terminated = datetime(2026, 1, 12, tzinfo=UTC)
    assert ak2["time_to_revoke_seconds"] == (t_again - terminated).total_seconds()
    assert data["summary"]["revoked"] == 2  # bob's login and AK2, both in force
    assert data["summary"]["fully_revoked_at"] == t_again.isoformat()
    # Every step, each with its own time: revoke, its undo, revoke again.
    steps = [(h["step"], h["action_id"], h["actor"], h["at"]) for h in ak2["history"]]
    undo_id = undo.outcomes[0].action_id
    assert steps == [
        ("revoke", key.action_id, "cli:alice", t_revoke.isoformat()),
        ("undo", undo_id, "cli:bob", t_undo.isoformat()),
        ("revoke", second.action_id, "cli:carol", t_again.isoformat()),
    ]
    assert ak2["history"][0]["undone_at"] == t_undo.isoformat()
    first_action = next(a for a in data["actions"] if a["id"] == key.action_id)
    assert first_action["status"] == "undone"
    assert first_action["done_at"] == t_revoke.isoformat() and first_action["undone_at"] == t_undo.isoformat()
    assert data["discrepancies"] == []
    page = evidence_html(evidence)
    assert t_revoke.isoformat() in page and t_undo.isoformat() in page and t_again.isoformat() in page


def test_undone_revocation_with_nothing_since_is_not_in_force(env: Env) -> None:
    env.audit()
    first = env.engine().revoke(NOW, apply=True, person="E2")
    key = next(o for o in first.outcomes if o.credential_id == "AK2")
    env.engine(NOW + timedelta(hours=1)).undo_action(key.action_id, NOW + timedelta(hours=1))
    data = evidence_json(collect_evidence(env.store, "E2", NOW + timedelta(hours=2)))
    ak2 = _creds(data)["AK2"]
    assert ak2["revoked_at"] is None and ak2["undone"] is True and ak2["time_to_revoke_seconds"] is None
    assert data["summary"]["revoked"] == 1 and data["summary"]["fully_revoked_at"] is None


def test_no_discrepancy_after_applied_noop_failed_unknown_recovered_undone_and_target_changed(
    env: Env,
) -> None:
    """The comparison must not cry wolf: every way the engine writes an action agrees with its events."""
    from offboard_audit.report.audit_trail import AuditTrail, check_trail

    def setup(st: dict) -> None:
        st["credentials"].append({"account_id": "bob", "id": "AK3", "kind": "access_key"})
        st.setdefault("fail", {})["bob"] = "throttled"
        st.setdefault("reset_after", {})["AK2"] = "Connection reset by peer"
        st.setdefault("block", {})["AK2"] = "after"

    env.world.update(setup)
    env.audit()
    # Someone else deactivates AK3 (noop), and alice's account is re-created under the same
    # name (target-changed for all three of hers).
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK3").update(active=False))
    env.world.update(lambda st: next(a for a in st["accounts"] if a["id"] == "alice").update(uid="uid-new"))

    def reads_fail(credential_id: str, when: str) -> None:
        env.world.update(lambda st: st.setdefault("unreadable", {}).update({"AK2": "endpoint unreachable"}))

    engine = env.engine(revoker=FakeRevoker(env.world.state_path, wait=reads_fail))
    report = engine.revoke(NOW, apply=True)
    statuses = {o.credential_id: o.status for o in report.outcomes}
    assert statuses == {
        "alice": "target-changed",
        "AK1": "target-changed",
        "group/g-admins": "target-changed",
        "bob": "failed",
        "AK2": "unknown",
        "AK3": "noop",
    }
    env.world.update(lambda st: (st["unreadable"].clear(), st["fail"].clear()))
    t1 = NOW + timedelta(minutes=1)
    later = env.engine(t1).revoke(t1, apply=True, person="E2")
    assert [o.status for o in later.recovered] == ["applied"]
    assert [(o.credential_id, o.status) for o in later.outcomes] == [("bob", "applied")]
    t2 = NOW + timedelta(minutes=2)
    undone = env.engine(t2).undo_action(later.outcomes[0].action_id, t2)
    assert [o.status for o in undone.outcomes] == ["restored"]

    check = check_trail(env.store, AuditTrail())
    assert check.ok, check.problems
    kinds = {e.kind for e in iter_events(env.store)}
    assert {"intent", "outcome", "recovered", "undo-intent", "undo-outcome"} <= kinds
    assert {r.status.value for r in load_actions(env.store)} == {
        "target-changed",
        "failed",
        "applied",
        "noop",
        "undone",
        "restored",
    }
