"""The revocation engine in process, against the fake JSON-file connector and SQLite.

Each test drives the real pipeline (audit) and the real engine; the only fake is the system
being revoked. Multi-process behaviour (crashes, concurrency, the CLI) is in
``test_revocation_processes.py``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from offboard_audit.core.records import Exemption
from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html, evidence_json
from offboard_audit.storage.actions import iter_events, load_actions
from tests.support.fake_connector import FakeRevoker, WritesNothingRevoker
from tests.support.revocation import NOW, Env

REVOCABLE = {"alice", "AK1", "group/g-admins", "bob", "AK2"}


def test_dry_run_plans_every_due_action_and_changes_nothing(env: Env) -> None:
    env.audit()
    report = env.engine().revoke(NOW, apply=False)
    assert report.refused is None and report.dry_run
    assert {o.credential_id for o in report.outcomes} == REVOCABLE
    assert all(o.status == "dry-run" for o in report.outcomes)
    assert env.world.changes() == []
    assert load_actions(env.store) == []
    assert list(iter_events(env.store)) == []


def test_apply_revokes_verifies_and_marks_findings_revoked_on_next_audit(env: Env) -> None:
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    assert report.refused is None
    assert {(o.credential_id, o.status) for o in report.outcomes} == {(c, "applied") for c in REVOCABLE}
    assert {c for _, c in env.world.changes()} == REVOCABLE
    assert env.world.credential("AK1")["active"] is False
    # Actions feed `findings`/`audit` JSON: latest action per finding.
    fid = env.finding_id("AK1")
    info = env.store.actions_by_finding([fid])
    assert [a.status for a in info[fid]] == ["applied"]
    env.audit(NOW + timedelta(minutes=5))
    revoked = {f.credential.credential_id for f in env.store.list_findings(["revoked"]) if f.credential}
    assert revoked == REVOCABLE


def test_second_apply_changes_nothing_and_says_so(env: Env) -> None:
    env.audit()
    engine = env.engine()
    engine.revoke(NOW, apply=True)
    again = engine.revoke(NOW, apply=True)
    assert again.refused is None
    assert again.outcomes == ()
    assert again.plan is not None and len(again.plan.done) == len(REVOCABLE)
    assert len(env.world.changes()) == len(REVOCABLE)
    # Also after a new audit (findings now revoked): still nothing to do.
    env.audit(NOW + timedelta(minutes=5))
    third = engine.revoke(NOW + timedelta(minutes=6), apply=True)
    assert third.outcomes == () and len(env.world.changes()) == len(REVOCABLE)


def test_credential_re_enabled_after_revocation_is_revoked_again(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True)

    def reenable(st: dict[str, Any]) -> None:
        for c in st["credentials"]:
            if c["id"] == "AK2":
                c["active"] = True

    env.world.update(reenable)
    later = NOW + timedelta(hours=1)
    env.audit(later)
    report = env.engine(later).revoke(later, apply=True)
    assert [(o.credential_id, o.status) for o in report.outcomes] == [("AK2", "applied")]
    assert env.world.changes().count(("deactivate_key", "AK2")) == 2


def test_blast_radius_cap_refuses_the_whole_plan_when_it_touches_too_many_people(env: Env) -> None:
    env.reload({"max_people_per_run": 1})
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    assert report.refused is not None and "blast-radius cap" in report.refused
    assert "2 people" in report.refused and "limit of 1" in report.refused
    assert report.outcomes == ()
    assert env.world.changes() == []
    assert load_actions(env.store) == []
    assert [e.kind for e in iter_events(env.store)] == ["refused"]


def test_the_old_cap_key_is_the_people_limit(env: Env) -> None:
    env.reload({"max_revocations_per_run": 2})
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    # Two people with five actions between them: within a people cap of 2.
    assert report.refused is None and len(report.outcomes) == 5


def test_the_action_cap_refuses_a_plan_with_too_many_actions(env: Env) -> None:
    env.reload({"max_actions_per_run": 4})
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    assert report.refused is not None and "5 actions" in report.refused and "limit of 4" in report.refused
    assert env.world.changes() == []


def test_max_option_lowers_the_people_cap_and_a_plan_within_it_applies(env: Env) -> None:
    env.audit()
    refused = env.engine().revoke(NOW, apply=True, max_people=1)
    assert refused.refused is not None and env.world.changes() == []
    ok = env.engine().revoke(NOW, apply=True, person="E2", max_people=1)
    assert ok.refused is None
    assert sorted(c for _, c in env.world.changes()) == ["AK2", "bob"]


def test_tripped_hr_circuit_breaker_applies_nothing_but_still_reports_findings(env: Env) -> None:
    env.reload({"min_breaker_count": 0})  # 3 people: one new termination trips the breaker
    env.audit()  # baseline read: two of three people terminated
    env.world.write_hr(
        [
            ("E1", "alice@example.com", "Alice", "terminated", "2026-01-10"),
            ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
            ("E3", "carol@example.com", "Carol", "terminated", "2026-02-27"),
        ]
    )
    result = env.audit(NOW + timedelta(minutes=1))
    assert result.circuit_breaker is not None
    # Daemon path: the run's breaker.
    auto = env.engine().auto_revoke(result, NOW + timedelta(minutes=1))
    assert auto.refused is not None and "circuit breaker" in auto.refused
    # CLI path: the latest stored run's breaker.
    cli = env.engine().revoke(NOW + timedelta(minutes=1), apply=True)
    assert cli.refused is not None and "circuit breaker" in cli.refused
    assert cli.plan is not None and {a.credential_id for a in cli.plan.actions} >= REVOCABLE | {"carol"}
    assert env.world.changes() == []


def test_failed_hr_read_applies_nothing(env: Env) -> None:
    env.audit()
    env.world.hr_path.unlink()
    result = env.audit(NOW + timedelta(minutes=1))
    assert result.circuit_breaker is not None and "HR source failed" in result.circuit_breaker
    report = env.engine().auto_revoke(result, NOW + timedelta(minutes=1))
    assert report.refused is not None and env.world.changes() == []


def test_revoke_refuses_before_any_audit_has_run(env: Env) -> None:
    report = env.engine().revoke(NOW, apply=True)
    assert report.refused is not None and "no audit has run" in report.refused


def test_protected_and_exempted_credentials_are_never_touched_even_when_named(env: Env) -> None:
    env.store.add_exemption(
        Exemption("x-1", "fake:bob:AK2", "legal hold", NOW + timedelta(days=30), "lead", NOW)
    )
    env.audit()
    named = [env.finding_id("breakglass"), env.finding_id("AK2")]
    report = env.engine().revoke(NOW, apply=True, finding_ids=named)
    assert report.refused is None and report.outcomes == ()
    assert report.plan is not None
    reasons = {h.credential_id: h.reason for h in report.plan.held}
    assert "protected" in reasons["breakglass"]
    assert "exempted by x-1" in reasons["AK2"]
    assert env.world.changes() == []


def test_exemption_added_after_the_audit_still_blocks_the_action(env: Env) -> None:
    env.audit()
    env.store.add_exemption(
        Exemption("x-2", "fake:alice:*", "handover", NOW + timedelta(days=1), "lead", NOW)
    )
    env.engine().revoke(NOW, apply=True)
    assert sorted(c for _, c in env.world.changes()) == ["AK2", "bob"]


def test_expired_exemption_stops_applying_and_the_next_audit_reports_the_finding(env: Env) -> None:
    env.store.add_exemption(Exemption("x-3", "fake:bob:AK2", "short", NOW + timedelta(hours=1), "lead", NOW))
    env.audit()
    assert env.store.list_findings(["exempted"])[0].credential.credential_id == "AK2"  # type: ignore[union-attr]
    later = NOW + timedelta(hours=2)
    env.audit(later)
    open_ids = {f.credential.credential_id for f in env.store.list_findings(["open"]) if f.credential}
    assert "AK2" in open_ids
    env.engine(later).revoke(later, apply=True, person="E2")
    assert ("deactivate_key", "AK2") in env.world.changes()


def test_failed_action_is_recorded_other_actions_go_on_and_it_is_retried(env: Env) -> None:
    env.world.update(lambda st: st.setdefault("fail", {}).update({"AK1": "throttled by the fake API"}))
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    statuses = {o.credential_id: (o.status, o.error) for o in report.outcomes}
    assert statuses["AK1"] == ("failed", "throttled by the fake API")
    assert all(s == "applied" for c, (s, _) in statuses.items() if c != "AK1")
    env.audit(NOW + timedelta(minutes=1))
    still_open = {f.credential.credential_id for f in env.store.list_findings(["open"]) if f.credential}
    assert "AK1" in still_open
    env.world.update(lambda st: st["fail"].clear())
    retry = env.engine().revoke(NOW + timedelta(minutes=2), apply=True)
    assert [(o.credential_id, o.status) for o in retry.outcomes] == [("AK1", "applied")]
    fid = env.finding_id("AK1")
    assert [a.status for a in env.store.actions_by_finding([fid])[fid]] == ["failed", "applied"]


def test_change_that_does_not_verify_on_re_read_is_failed(env: Env) -> None:
    env.audit()
    engine = env.engine(revoker=WritesNothingRevoker(env.world.state_path))
    report = engine.revoke(NOW, apply=True, person="E2")
    assert {o.status for o in report.outcomes} == {"failed"}
    assert all("not verified" in (o.error or "") for o in report.outcomes)
    assert env.world.changes() == []


def test_each_applied_action_reads_its_target_once_before_and_once_after_and_a_noop_once(
    env: Env,
) -> None:
    env.audit()
    # Someone else deactivated bob's key after the audit: the engine finds it already revoked.
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK2").update(active=False))
    fake = FakeRevoker(env.world.state_path)
    engine = env.engine(revoker=fake)
    report = engine.revoke(NOW, apply=True)
    statuses = {o.credential_id: o.status for o in report.outcomes}
    assert statuses == {
        "alice": "applied",
        "AK1": "applied",
        "group/g-admins": "applied",
        "bob": "applied",
    } | {"AK2": "noop"}
    reads = Counter(cid for _action, cid in fake.reads)
    assert reads == {"alice": 2, "AK1": 2, "group/g-admins": 2, "bob": 2, "AK2": 1}
    noop = next(o for o in report.outcomes if o.credential_id == "AK2")
    kinds = [e.kind for e in iter_events(env.store) if e.action_id == noop.action_id]
    assert kinds == ["intent", "outcome"] and noop.message == "already revoked"


def test_undo_restores_prior_state_and_reopens_the_finding(env: Env) -> None:
    env.audit()
    report = env.engine().revoke(NOW, apply=True)
    ak1 = next(o for o in report.outcomes if o.credential_id == "AK1")
    dry = env.engine().undo_action(ak1.action_id, NOW, apply=False)
    assert [o.status for o in dry.outcomes] == ["dry-run"] and env.world.credential("AK1")["active"] is False
    undone = env.engine().undo_action(ak1.action_id, NOW, apply=True)
    assert [o.status for o in undone.outcomes] == ["restored"]
    assert env.world.credential("AK1")["active"] is True
    (orig,) = load_actions(env.store, action_ids=[ak1.action_id])
    assert orig.status == "undone"
    assert ak1.finding_id not in env.store.revoked_finding_ids()
    kinds = [e.kind for e in iter_events(env.store) if e.action_id and e.action_id != ak1.action_id]
    assert "undo-intent" in kinds and "undo-outcome" in kinds
    again = env.engine().undo_action(ak1.action_id, NOW, apply=True)
    assert [o.message for o in again.outcomes] == ["already undone"]


def test_undo_person_restores_everything_of_that_person_only(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True)
    report = env.engine().undo_person("E1", NOW)
    assert {(o.credential_id, o.status) for o in report.outcomes} == {
        ("alice", "restored"),
        ("AK1", "restored"),
        ("group/g-admins", "restored"),
    }
    state = env.world.state()
    active = {c["id"]: c.get("active", True) for c in state["credentials"]}
    assert active["alice"] and active["AK1"] and active["group/g-admins"]
    assert not active["bob"] and not active["AK2"]


def test_delete_stage_waits_for_delete_after_and_undo_says_it_is_irreversible(env: Env) -> None:
    env.reload({"delete_after": "7d"})
    env.audit()
    first = env.engine().revoke(NOW, apply=True)
    assert {o.stage for o in first.outcomes} == {"disable"}
    env.audit(NOW + timedelta(hours=1))  # keys now revoked
    early = env.engine(NOW + timedelta(days=6)).revoke(NOW + timedelta(days=6), apply=True)
    assert early.outcomes == ()
    assert early.plan is not None and any("waits until" in h.reason for h in early.plan.held)
    late_now = NOW + timedelta(days=8)
    late = env.engine(late_now).revoke(late_now, apply=True)
    assert {(o.credential_id, o.action, o.status) for o in late.outcomes} == {
        ("AK1", "delete_key", "applied"),
        ("AK2", "delete_key", "applied"),
    }
    assert env.world.credential("AK1").get("exists") is False
    deleted = next(o for o in late.outcomes if o.credential_id == "AK1")
    undo = env.engine(late_now).undo_action(deleted.action_id, late_now)
    assert [o.status for o in undo.outcomes] == ["irreversible"]
    assert not undo.ok
    assert env.world.credential("AK1").get("exists") is False


def test_a_key_re_enabled_by_hand_is_disabled_again_and_kept_for_a_whole_delete_after(env: Env) -> None:
    env.reload({"delete_after": "7d"})
    env.audit()
    env.engine().revoke(NOW, apply=True)
    env.audit(NOW + timedelta(hours=1))
    # Someone turns AK1 back on by hand; the audit ten days later sees it active again.
    env.world.update(
        lambda st: next(c for c in st["credentials"] if c["id"] == "AK1").update({"active": True})
    )
    again = NOW + timedelta(days=10)
    env.audit(again)
    report = env.engine(again).revoke(again, apply=True)
    # Disabled again, not deleted in the same pass: the window starts afresh (AK2 stayed off).
    assert sorted((o.credential_id, o.action) for o in report.outcomes) == [
        ("AK1", "deactivate_key"),
        ("AK2", "delete_key"),
    ]
    assert env.world.credential("AK1").get("exists", True) is True
    env.audit(again + timedelta(hours=1))
    early = again + timedelta(days=6)
    assert env.engine(early).revoke(early, apply=True).outcomes == ()
    late = again + timedelta(days=8)
    assert [(o.credential_id, o.action) for o in env.engine(late).revoke(late, apply=True).outcomes] == [
        ("AK1", "delete_key")
    ]


def test_no_delete_stage_without_delete_after(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True)
    env.audit(NOW + timedelta(hours=1))
    far = NOW + timedelta(days=3650)
    report = env.engine(far).revoke(far, apply=True)
    assert report.outcomes == ()


def test_auto_revoke_for_one_person_touches_only_that_person(env: Env) -> None:
    result = env.audit()
    report = env.engine().auto_revoke(result, NOW, person="E2")
    assert report.refused is None
    assert sorted(o.credential_id for o in report.outcomes) == ["AK2", "bob"]
    assert sorted(c for _, c in env.world.changes()) == ["AK2", "bob"]


def test_every_action_has_intent_before_and_outcome_after_in_a_verified_chain(env: Env) -> None:
    from offboard_audit.core.chain_verify import verify_chain

    env.audit()
    report = env.engine(actor="cli:alice").revoke(NOW, apply=True)
    events = list(iter_events(env.store))
    for o in report.outcomes:
        mine = [e for e in events if e.action_id == o.action_id]
        assert [e.kind for e in mine] == ["intent", "outcome"]
        assert mine[0].payload["prior_state"]["active"] is True
        assert mine[1].payload["status"] == "applied" and mine[1].actor == "cli:alice"
    assert verify_chain(events).ok


def test_evidence_report_lists_accounts_last_use_revocations_and_time_to_revoke(env: Env) -> None:
    env.world.update(
        lambda st: next(c for c in st["credentials"] if c["id"] == "AK1").update(
            {"last_used_at": "2026-01-20T08:00:00+00:00"}
        )
    )
    env.audit()
    env.engine(actor="cli:secops").revoke(NOW, apply=True)
    env.audit(NOW + timedelta(minutes=1))
    evidence = collect_evidence(env.store, "E1", NOW + timedelta(minutes=2))
    data = evidence_json(evidence)
    accounts = {a["id"]: a for a in data["accounts"]}
    assert set(accounts) == {"alice", "breakglass"}
    creds = {c["id"]: c for c in accounts["alice"]["credentials"]}
    assert creds["AK1"]["last_used_at"] == "2026-01-20T08:00:00+00:00"
    assert creds["AK1"]["used_after_termination"] is True
    assert creds["AK1"]["revoked_by"] == "cli:secops"
    terminated = datetime(2026, 1, 10, tzinfo=UTC)
    assert creds["AK1"]["time_to_revoke_seconds"] == (NOW - terminated).total_seconds()
    bg = accounts["breakglass"]["credentials"][0]
    assert bg["revoked_at"] is None and bg["finding"]["status"] == "open"
    assert data["summary"]["open_findings"] == 1 and data["summary"]["fully_revoked_at"] is None
    assert data["audit_log"]["chain_verified"] is True
    assert len(data["audit_log"]["events"]) == 2 * 3
    page = evidence_html(evidence)
    assert "AK1" in page and "cli:secops" in page and "<script" not in page


def test_findings_json_shows_actions_per_finding(env: Env) -> None:
    from offboard_audit.report import json as output

    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    rows = env.store.list_findings(["open"])
    actions = env.store.actions_by_finding([f.finding_id for f in rows])
    out = {
        f.credential.credential_id: output.finding_json(f, actions)["actions"] for f in rows if f.credential
    }
    assert [a["status"] for a in out["AK2"]] == ["applied"]
    assert out["AK1"] == []


def test_a_leaver_in_forty_groups_is_one_person_and_is_revoked_under_the_default_caps(env: Env) -> None:
    def forty_groups(st: dict[str, Any]) -> None:
        st["credentials"] += [
            {"account_id": "bob", "id": f"group/g{i}", "kind": "group_membership", "detail": f"g{i}"}
            for i in range(40)
        ]

    env.world.update(forty_groups)
    env.reload({})  # default caps: 25 people, 1000 actions
    result = env.audit()
    report = env.engine().auto_revoke(result, NOW, person="E2")
    assert report.refused is None
    assert len(report.outcomes) == 42 and {o.status for o in report.outcomes} == {"applied"}
