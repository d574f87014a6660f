"""Mutation holes in build_plan (issue 10, batch 6): a finding held for one reason (no
credential, an earlier action of unknown outcome, no revoker, no action for its credential
kind) does not end the plan for the findings after it; a protected selector naming a single
credential protects that credential; the exact reasons of those holds; and with two disable
actions done at different times, the delete window counts from the later one.

Pure, like tests/unit/test_planning.py: findings are built here, expected values written out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_records import HeldFinding
from offboard_audit.core.planning import build_plan
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    Rule,
)
from offboard_audit.core.stored import ActionRecord, ActionStatus
from tests.support.planning import record_for

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEFT = datetime(2026, 2, 1, tzinfo=UTC)
RULE = Rule.CREDENTIAL_AFTER_TERMINATION
ALICE = Person("e1", "alice@x.org", "Alice Ng", PersonStatus.TERMINATED, LEFT, source="hr")

DEACTIVATE = ActionDef("deactivate_key", CredentialKind.ACCESS_KEY, Stage.DISABLE, True, (), "deactivate")
DEFS = {"src": {"deactivate_key": DEACTIVATE}}


def finding(
    fid: str,
    cred: str | None = "K1",
    *,
    username: str = "alice",
    source: str = "src",
    kind: CredentialKind = CredentialKind.ACCESS_KEY,
    status: FindingStatus = FindingStatus.OPEN,
    exemption_id: str | None = None,
) -> Finding:
    acct = Account(source, "ldap", f"uid={username}", username, True, uid=f"uuid-{username}")
    c = Credential(source, acct.account_id, cred, kind, True) if cred is not None else None
    return Finding(
        fid, RULE, RULE.severity, status, acct, ALICE, c, LEFT, LEFT, "left", exemption_id=exemption_id
    )


def record(f: Finding, action_id: str, action: str, status: ActionStatus, at: datetime) -> ActionRecord:
    return record_for(f, action, status, at, action_id=action_id, person="e1")


def planned(plan: object) -> list[tuple[str, str]]:
    return [(a.finding_id, a.action) for a in plan.actions]  # type: ignore[attr-defined]


def reasons(plan: object) -> list[tuple[str, str]]:
    return [(h.finding_id, h.reason) for h in plan.held]  # type: ignore[attr-defined]


def test_a_finding_without_a_credential_is_held_and_the_findings_after_it_are_still_planned() -> None:
    findings = [finding("f-nocred", None), finding("f-key", "K2", username="carol")]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert reasons(plan) == [("f-nocred", "no credential to act on")]
    assert planned(plan) == [("f-key", "deactivate_key")]


def test_a_protected_selector_naming_one_credential_protects_that_credential_and_not_its_siblings() -> None:
    findings = [finding("f-k1", "K1"), finding("f-k2", "K2")]
    plan = build_plan(findings, DEFS, PolicyConfig(protected=("src:alice:K1",)), NOW)
    assert reasons(plan) == [("f-k1", "protected by policy.protected 'src:alice:K1': never touched")]
    assert planned(plan) == [("f-k2", "deactivate_key")]


def test_a_finding_exempted_at_the_last_audit_is_held_naming_that_exemption() -> None:
    f = finding("f-ex", status=FindingStatus.EXEMPTED, exemption_id="ex-7")
    plan = build_plan([f], DEFS, PolicyConfig(), NOW)
    assert list(plan.held) == [
        HeldFinding("f-ex", RULE, "src", "alice", "K1", "e1", "exempted by ex-7 (as of the last audit)")
    ]
    assert planned(plan) == []


def test_earlier_actions_of_unknown_outcome_are_all_named_comma_separated_and_later_findings_still_planned() -> (
    None
):
    pending = finding("f-pending", "K1")
    later = finding("f-later", "K2", username="carol")
    history = [
        record(pending, "a-1", "deactivate_key", ActionStatus.INTENT, LEFT),
        record(pending, "a-2", "deactivate_key", ActionStatus.UNKNOWN, LEFT + timedelta(days=1)),
    ]
    plan = build_plan([pending, later], DEFS, PolicyConfig(), NOW, history=history)
    assert reasons(plan) == [
        ("f-pending", "outcome of earlier action a-1, a-2 is unknown (its target could not be re-read)")
    ]
    assert planned(plan) == [("f-later", "deactivate_key")]


def test_a_finding_whose_source_has_no_revoker_is_held_and_the_findings_after_it_are_still_planned() -> None:
    findings = [finding("f-norevoker", "K1", source="hr-only"), finding("f-key", "K2", username="carol")]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert reasons(plan) == [("f-norevoker", "source 'hr-only' has no revoker")]
    assert planned(plan) == [("f-key", "deactivate_key")]


def test_a_credential_kind_the_revoker_has_no_action_for_is_held_with_its_reason_and_later_findings_planned() -> (
    None
):
    findings = [
        finding("f-ssh", "SSH1", kind=CredentialKind.SSH_KEY),
        finding("f-key", "K2", username="carol"),
    ]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert list(plan.held) == [
        HeldFinding("f-ssh", RULE, "src", "alice", "SSH1", "e1", "src has no action for ssh_key credentials")
    ]
    assert planned(plan) == [("f-key", "deactivate_key")]


def test_with_two_disable_actions_done_the_delete_window_counts_from_the_later_one() -> None:
    # Two disable actions for one kind, applied in the opposite order of their names: the
    # credential counts as disabled from the later of the two, whatever order they are looked at.
    defs = {
        "src": {
            "a_disable": ActionDef("a_disable", CredentialKind.ACCESS_KEY, Stage.DISABLE, True, (), "a"),
            "b_disable": ActionDef("b_disable", CredentialKind.ACCESS_KEY, Stage.DISABLE, True, (), "b"),
            "delete_key": ActionDef(
                "delete_key", CredentialKind.ACCESS_KEY, Stage.DELETE, False, (), "delete"
            ),
        }
    }
    f = finding("f-1", "K1")
    early = NOW - timedelta(days=10)
    late = NOW - timedelta(days=3)
    history = [
        record(f, "a-a", "a_disable", ActionStatus.APPLIED, late),
        record(f, "a-b", "b_disable", ActionStatus.APPLIED, early),
    ]
    policy = PolicyConfig(delete_after=timedelta(days=7))
    plan = build_plan([f], defs, policy, NOW, history=history)
    assert planned(plan) == []
    assert list(plan.done) == ["f-1:a_disable", "f-1:b_disable"]
    waits_until = (late + timedelta(days=7)).isoformat()
    assert reasons(plan) == [("f-1", f"delete stage (delete_key) waits until {waits_until}")]

    # Once the window has passed since the later disable too, the delete is planned.
    plan = build_plan([f], defs, replace(policy, delete_after=timedelta(days=3)), NOW, history=history)
    assert planned(plan) == [("f-1", "delete_key")]
