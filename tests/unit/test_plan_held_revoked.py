"""What a plan lists as held for a finding already revoked: such a finding matters only for the
delete stage, so what holds it back is listed, for every reason alike, when the policy has a
delete stage (``delete_after``), and nothing is listed without one. Before, an exemption or an
earlier action of unknown outcome was listed without a delete stage, while stale data, a
protection or a missing revoker were not listed even with one.

Pure, like tests/unit/test_planning.py: findings are built here, reasons written out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.planning import build_plan
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
)
from offboard_audit.core.stored import ActionRecord, ActionStatus
from tests.support.planning import record_for

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEFT = datetime(2026, 1, 1, tzinfo=UTC)
RULE = Rule.CREDENTIAL_AFTER_TERMINATION
KIND = CredentialKind.ACCESS_KEY
DISABLE = ActionDef("deactivate_key", KIND, Stage.DISABLE, True, (), "deactivate")
DELETE = ActionDef("delete_key", KIND, Stage.DELETE, False, (), "delete")
DEFS = {"src": {d.name: d for d in (DISABLE, DELETE)}}
ACCT = Account("src", "aws", "alice", "alice", True, uid="AIDAALICE")
KEY = Credential("src", "alice", "AKIA1", KIND, True)
ALICE = Person("e1", "alice@x.org", "Alice Ng", PersonStatus.TERMINATED, LEFT, source="hr")
WITH_DELETE = PolicyConfig(delete_after=timedelta(days=30))
WITHOUT_DELETE = PolicyConfig()


def revoked(**changes: Any) -> Finding:
    f = Finding("f-1", RULE, RULE.severity, FindingStatus.REVOKED, ACCT, ALICE, KEY, LEFT, LEFT, "left")
    return replace(f, **changes)


def held_reasons(
    f: Finding, policy: PolicyConfig, exemptions: Sequence[Exemption], history: Sequence[ActionRecord]
) -> list[str]:
    # The disable action was applied long ago: only the delete stage is left to plan.
    disabled = record_for(f, DISABLE.name, ActionStatus.APPLIED, LEFT)
    plan = build_plan([f], DEFS, policy, NOW, history=[disabled, *history], exemptions=exemptions)
    assert plan.actions == ()
    return [h.reason for h in plan.held]


EXEMPTION = Exemption(
    exemption_id="x-1",
    selector="src:alice",
    reason="legal hold",
    created_by="t",
    created_at=LEFT,
    until=NOW + timedelta(days=10),
)
UNKNOWN = record_for(
    revoked(), DELETE.name, ActionStatus.UNKNOWN, NOW - timedelta(hours=1), stage=Stage.DELETE
)

# Each reason a revoked finding can be held for, with the arguments that cause it and the
# start of the reason the plan gives.
CASES = [
    pytest.param(revoked(stale=True), (), (), WITH_DELETE, "data is stale", id="stale"),
    pytest.param(revoked(), [EXEMPTION], (), WITH_DELETE, "exempted by x-1 until", id="exempted"),
    pytest.param(revoked(), (), [UNKNOWN], WITH_DELETE, "outcome of earlier action", id="unknown-outcome"),
    pytest.param(
        revoked(),
        (),
        (),
        replace(WITH_DELETE, protected=("src:alice",)),
        "protected by policy.protected 'src:alice'",
        id="protected",
    ),
]


@pytest.mark.parametrize(("f", "exemptions", "history", "policy", "reason"), CASES)
def test_a_revoked_finding_held_back_is_listed_with_the_reason_only_when_the_policy_has_a_delete_stage(
    f: Finding,
    exemptions: Sequence[Exemption],
    history: Sequence[ActionRecord],
    policy: PolicyConfig,
    reason: str,
) -> None:
    reasons = held_reasons(f, policy, exemptions, history)
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    assert held_reasons(f, replace(policy, delete_after=None), exemptions, history) == []


def test_a_revoked_finding_of_a_source_without_a_revoker_is_listed_only_with_a_delete_stage() -> None:
    f = revoked(account=replace(ACCT, source="other"), credential=replace(KEY, source="other"))
    assert [h.reason for h in build_plan([f], DEFS, WITH_DELETE, NOW).held] == [
        "source 'other' has no revoker"
    ]
    assert build_plan([f], DEFS, WITHOUT_DELETE, NOW).held == ()


def test_an_open_finding_is_listed_as_held_with_or_without_a_delete_stage() -> None:
    # The rule for revoked findings does not hide an open one: it is held for its disable stage.
    f = replace(revoked(stale=True), status=FindingStatus.OPEN)
    for policy in (WITH_DELETE, WITHOUT_DELETE):
        plan = build_plan([f], DEFS, policy, NOW)
        assert [h.reason for h in plan.held] == [
            "data is stale (its source, or the part of it this comes from, was not read in the last audit): see that audit's warnings, then re-run it"
        ]
