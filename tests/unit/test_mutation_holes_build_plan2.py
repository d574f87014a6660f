"""Mutation holes in build_plan (issue 10, batch 5): a finding never planned (ambiguous owner,
orphan account) is held without ending the plan, and a finding with no credential is held
with its own fields. Pure: findings built here, expected values written out."""

from __future__ import annotations

from datetime import UTC, datetime

from offboard_audit.core.plan_records import HeldFinding
from offboard_audit.core.planning import build_plan
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Account,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    Rule,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEFT = datetime(2026, 2, 1, tzinfo=UTC)
BOB = Person("e2", "bob@x.org", "Bob Li", PersonStatus.TERMINATED, LEFT, source="hr")


def finding(finding_id: str, rule: Rule, username: str, person: Person | None) -> Finding:
    acct = Account("aws", "aws", f"arn:aws:iam::111111111111:user/{username}", username, True)
    return Finding(finding_id, rule, rule.severity, FindingStatus.OPEN, acct, person, None, LEFT, LEFT, "r")


def test_a_never_planned_finding_is_held_and_the_findings_after_it_are_still_planned() -> None:
    findings = [
        finding("f-orphan", Rule.ORPHAN_ACCOUNT, "ghost", None),
        finding("f-nocred", Rule.CREDENTIAL_AFTER_TERMINATION, "bob", BOB),
    ]
    plan = build_plan(findings, {}, PolicyConfig(), NOW)
    assert list(plan.held) == [
        HeldFinding(
            "f-orphan",
            Rule.ORPHAN_ACCOUNT,
            "aws",
            "ghost",
            None,
            None,
            "orphan-account: never revoked automatically; resolve the owner by hand",
        ),
        HeldFinding(
            "f-nocred", Rule.CREDENTIAL_AFTER_TERMINATION, "aws", "bob", None, "e2", "no credential to act on"
        ),
    ]
    assert list(plan.actions) == []
