"""Pure planning: which actions, in which order, and what is held back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_file import PlanFileError, plan_json, read_plan_json
from offboard_audit.core.planning import build_plan, findings_fingerprint
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Exemption,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    Rule,
    finding_id,
)
from offboard_audit.core.stored import ActionRecord, ActionStatus
from tests.support.planning import record_for

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEFT = datetime(2026, 2, 1, tzinfo=UTC)


def _def(name: str, kind: CredentialKind, stage: Stage = Stage.DISABLE, reversible: bool = True) -> ActionDef:
    return ActionDef(name, kind, stage, reversible, (f"perm:{name}",), f"does {name}")


DEFS = {
    "sys": {
        "lock": _def("lock", CredentialKind.ACCOUNT),
        "deactivate_key": _def("deactivate_key", CredentialKind.ACCESS_KEY),
        "delete_key": _def("delete_key", CredentialKind.ACCESS_KEY, Stage.DELETE, False),
    }
}


def person(eid: str) -> Person:
    return Person(eid, f"{eid}@x.org", eid.title(), PersonStatus.TERMINATED, LEFT, source="hr")


def finding(
    account: str,
    cred: str,
    kind: CredentialKind = CredentialKind.ACCESS_KEY,
    who: str | None = "e1",
    rule: Rule = Rule.CREDENTIAL_AFTER_TERMINATION,
    status: FindingStatus = FindingStatus.OPEN,
    due: datetime | None = LEFT,
    source: str = "sys",
    stale: bool = False,
) -> Finding:
    acct = Account(source, "sys", account, account, True, uid=f"uid-{account}")
    c = Credential(source, account, cred, kind, True)
    return Finding(
        finding_id(rule, source, account, cred),
        rule,
        rule.severity,
        status,
        acct,
        person(who) if who else None,
        c,
        LEFT,
        due,
        "reason",
        stale=stale,
    )


def record(
    f: Finding, action: str, status: ActionStatus, at: datetime, stage: Stage = Stage.DISABLE
) -> ActionRecord:
    return record_for(f, action, status, at, stage=stage)


def keys(plan: object) -> list[tuple[str | None, str, str]]:
    return [(a.person, a.credential_id, a.action) for a in plan.actions]  # type: ignore[attr-defined]


def test_due_findings_get_disable_actions_ordered_per_person_login_first() -> None:
    findings = [
        finding("bob", "K2", who="e2"),
        finding("alice", "K1"),
        finding("alice", "alice", CredentialKind.ACCOUNT),
        finding("bob", "bob", CredentialKind.ACCOUNT, who="e2"),
    ]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert keys(plan) == [
        ("e1", "alice", "lock"),
        ("e1", "K1", "deactivate_key"),
        ("e2", "bob", "lock"),
        ("e2", "K2", "deactivate_key"),
    ]
    first = plan.actions[0]
    assert first.reversible and first.permissions == ("perm:lock",) and first.stage is Stage.DISABLE


def test_finding_inside_its_grace_period_is_held_until_due() -> None:
    plan = build_plan([finding("alice", "K1", due=NOW + timedelta(hours=4))], DEFS, PolicyConfig(), NOW)
    assert plan.actions == ()
    assert "not due yet" in plan.held[0].reason


@pytest.mark.parametrize("rule", [Rule.AMBIGUOUS_OWNER, Rule.ORPHAN_ACCOUNT])
def test_ambiguous_and_orphan_findings_are_listed_but_never_planned(rule: Rule) -> None:
    f = finding("ghost", "ghost", CredentialKind.ACCOUNT, who=None, rule=rule, due=None)
    plan = build_plan([f], DEFS, PolicyConfig(), NOW, finding_ids=[f.finding_id])
    assert plan.actions == ()
    assert plan.held[0].finding_id == f.finding_id and "never revoked automatically" in plan.held[0].reason


def test_protected_account_is_held_even_when_named_by_id() -> None:
    f = finding("root", "root", CredentialKind.ACCOUNT)
    plan = build_plan([f], DEFS, PolicyConfig(protected=("sys:root",)), NOW, finding_ids=[f.finding_id])
    assert plan.actions == () and "protected" in plan.held[0].reason


def test_exempted_credential_is_held_and_an_expired_exemption_is_not() -> None:
    f = finding("alice", "K1")
    active = Exemption("x1", "sys:alice:k*", "hold", NOW + timedelta(days=1), "me", LEFT)
    expired = Exemption("x2", "sys:alice:k*", "hold", NOW - timedelta(days=1), "me", LEFT)
    held = build_plan([f], DEFS, PolicyConfig(), NOW, exemptions=[active], finding_ids=[f.finding_id])
    assert held.actions == () and "exempted by x1" in held.held[0].reason
    stored_exempt = build_plan(
        [finding("alice", "K1", status=FindingStatus.EXEMPTED)], DEFS, PolicyConfig(), NOW
    )
    assert stored_exempt.actions == ()
    free = build_plan([f], DEFS, PolicyConfig(), NOW, exemptions=[expired])
    assert keys(free) == [("e1", "K1", "deactivate_key")]


def test_stale_finding_and_source_without_revoker_are_held() -> None:
    plan = build_plan(
        [finding("alice", "K1", stale=True), finding("carl", "K3", source="other")], DEFS, PolicyConfig(), NOW
    )
    assert plan.actions == ()
    reasons = sorted(h.reason for h in plan.held)
    assert "stale" in reasons[0] and "has no revoker" in reasons[1]


def test_applied_action_is_not_planned_again_unless_the_credential_was_seen_active_after_it() -> None:
    f = finding("alice", "K1")
    applied = record(f, "deactivate_key", ActionStatus.APPLIED, NOW - timedelta(hours=1))
    seen_before = {f.finding_id: NOW - timedelta(hours=2)}
    plan = build_plan([f], DEFS, PolicyConfig(), NOW, history=[applied], observed_at=seen_before)
    assert plan.actions == () and plan.done == (f"{f.finding_id}:deactivate_key",)
    seen_after = {f.finding_id: NOW - timedelta(minutes=5)}
    again = build_plan([f], DEFS, PolicyConfig(), NOW, history=[applied], observed_at=seen_after)
    assert keys(again) == [("e1", "K1", "deactivate_key")] and "seen active again" in again.actions[0].note


def test_failed_and_undone_actions_are_planned_again() -> None:
    f = finding("alice", "K1")
    for status in (ActionStatus.FAILED, ActionStatus.UNDONE):
        rec = record(f, "deactivate_key", status, NOW - timedelta(hours=1))
        plan = build_plan([f], DEFS, PolicyConfig(), NOW, history=[rec])
        assert keys(plan) == [("e1", "K1", "deactivate_key")], status


def test_an_unresolved_intent_holds_the_finding() -> None:
    f = finding("alice", "K1")
    rec = record(f, "deactivate_key", ActionStatus.INTENT, NOW - timedelta(hours=1))
    plan = build_plan([f], DEFS, PolicyConfig(), NOW, history=[rec])
    assert plan.actions == () and "unknown" in plan.held[0].reason


def test_delete_stage_only_after_delete_after_since_the_disable_and_never_by_default() -> None:
    revoked = finding("alice", "K1", status=FindingStatus.REVOKED)
    disabled_at = NOW - timedelta(days=10)
    history = [record(revoked, "deactivate_key", ActionStatus.APPLIED, disabled_at)]
    never = build_plan([revoked], DEFS, PolicyConfig(), NOW, history=history)
    assert never.actions == () and never.held == ()
    too_early = build_plan(
        [revoked], DEFS, PolicyConfig(delete_after=timedelta(days=30)), NOW, history=history
    )
    assert too_early.actions == () and "waits until" in too_early.held[0].reason
    due = build_plan([revoked], DEFS, PolicyConfig(delete_after=timedelta(days=7)), NOW, history=history)
    assert keys(due) == [("e1", "K1", "delete_key")]
    assert due.actions[0].stage is Stage.DELETE and not due.actions[0].reversible
    not_disabled = build_plan([revoked], DEFS, PolicyConfig(delete_after=timedelta(days=7)), NOW)
    assert not_disabled.actions == ()
    deleted = [
        *history,
        record(revoked, "delete_key", ActionStatus.APPLIED, NOW - timedelta(days=1), Stage.DELETE),
    ]
    done = build_plan([revoked], DEFS, PolicyConfig(delete_after=timedelta(days=7)), NOW, history=deleted)
    assert done.actions == ()


def test_disable_comes_before_delete_in_one_plan() -> None:
    defs = {"sys": {**DEFS["sys"], "purge": _def("purge", CredentialKind.SSH_KEY, Stage.DELETE, False)}}
    ssh = finding("alice", "ssh1", CredentialKind.SSH_KEY, due=NOW - timedelta(days=40))
    key = finding("alice", "K1")
    plan = build_plan([ssh, key], defs, PolicyConfig(delete_after=timedelta(days=30)), NOW)
    assert [(a.action, a.stage) for a in plan.actions] == [
        ("deactivate_key", Stage.DISABLE),
        ("purge", Stage.DELETE),
    ]


def test_person_and_finding_filters_narrow_the_plan() -> None:
    a, b = finding("alice", "K1"), finding("bob", "K2", who="e2")
    assert keys(build_plan([a, b], DEFS, PolicyConfig(), NOW, person="e2")) == [
        ("e2", "K2", "deactivate_key")
    ]
    assert keys(build_plan([a, b], DEFS, PolicyConfig(), NOW, finding_ids=[a.finding_id])) == [
        ("e1", "K1", "deactivate_key")
    ]


def test_fingerprint_changes_when_findings_change_and_not_otherwise() -> None:
    a, b = finding("alice", "K1"), finding("bob", "K2", who="e2")
    assert findings_fingerprint([a, b]) == findings_fingerprint([b, a])
    assert findings_fingerprint([a]) != findings_fingerprint([a, b])
    assert findings_fingerprint([a]) != findings_fingerprint(
        [finding("alice", "K1", status=FindingStatus.EXEMPTED)]
    )


def test_plan_file_round_trips_and_any_edit_is_detected() -> None:
    plan = build_plan([finding("alice", "K1"), finding("bob", "K2", who="e2")], DEFS, PolicyConfig(), NOW)
    body = json.loads(json.dumps(plan_json(plan)))
    parsed = read_plan_json(body)
    assert parsed.keys == tuple(a.key for a in plan.actions) and parsed.fingerprint == plan.fingerprint
    for edit in (
        lambda d: d["actions"].pop(),
        lambda d: d["actions"][0].update(action="delete_key"),
        lambda d: d.update(findings_fingerprint="0" * 64),
    ):
        tampered = json.loads(json.dumps(body))
        edit(tampered)
        with pytest.raises(PlanFileError, match="edited"):
            read_plan_json(tampered)
    with pytest.raises(PlanFileError, match="not an offboard-audit plan"):
        read_plan_json({"actions": []})


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_plan([], DEFS, PolicyConfig(), datetime(2026, 1, 1))
