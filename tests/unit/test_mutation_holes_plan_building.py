"""Plan-building holes found by mutation testing (issue 10, batch 4): the naive ``now`` refusal
naming ``now``, every field of a held finding, the history records planning skips (undos and
records no longer tied to a finding) without them hiding the rest of the history, a finding of
another status not ending the plan early, and the findings fingerprint that makes a plan file
stale: each covered field changes it, the deliberately uncovered ones do not, and its exact
format (plan files outlive an upgrade; the fingerprint and the plan id derived from it are
written into them).

Pure, like tests/unit/test_planning.py: findings are built here, expected values written out.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_records import HeldFinding
from offboard_audit.core.planning import build_plan, findings_fingerprint
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

DEACTIVATE = ActionDef("deactivate_key", CredentialKind.ACCESS_KEY, Stage.DISABLE, True, (), "deactivate")
DEFS = {"src": {"deactivate_key": DEACTIVATE}}

# Source and system differ so that a held finding's source cannot pass for its system.
ACCT = Account("src", "ldap", "uid=alice", "alice", True, uid="uuid-alice")
KEY = Credential("src", "uid=alice", "K1", CredentialKind.ACCESS_KEY, True)
ALICE = Person("e1", "alice@x.org", "Alice Ng", PersonStatus.TERMINATED, LEFT, source="hr")


def finding(
    fid: str = "f-1",
    who: Person | None = ALICE,
    status: FindingStatus = FindingStatus.OPEN,
    stale: bool = False,
    source: str = "src",
) -> Finding:
    acct = replace(ACCT, source=source)
    key = replace(KEY, source=source)
    return Finding(fid, RULE, RULE.severity, status, acct, who, key, LEFT, LEFT, "left", stale=stale)


def record(
    f: Finding, action_id: str, status: ActionStatus, at: datetime, undo_of: str | None = None
) -> ActionRecord:
    return record_for(f, "deactivate_key", status, at, action_id=action_id, undo_of=undo_of, person="e1")


# --- build_plan ----------------------------------------------------------------------------------


def test_a_naive_now_is_refused_by_name_before_anything_is_planned() -> None:
    with pytest.raises(ValueError, match=r"^now must be timezone-aware, got naive datetime"):
        build_plan([], DEFS, PolicyConfig(), datetime(2026, 1, 1))


@pytest.mark.parametrize(("who", "person"), [(ALICE, "e1"), (None, None)])
def test_a_held_finding_carries_the_findings_id_rule_source_account_credential_and_person(
    who: Person | None, person: str | None
) -> None:
    plan = build_plan([finding(who=who, stale=True)], DEFS, PolicyConfig(), NOW)
    assert plan.held == (
        HeldFinding(
            finding_id="f-1",
            rule=RULE,
            source="src",
            username="alice",
            credential_id="K1",
            person=person,
            reason="data is stale (its source, or the part of it this comes from, was not read in the last audit): see that audit's warnings, then re-run it",
        ),
    )


@pytest.mark.parametrize("undo_status", [ActionStatus.APPLIED, ActionStatus.INTENT, ActionStatus.UNKNOWN])
def test_the_undo_of_a_revocation_neither_counts_as_it_taking_effect_nor_holds_the_finding(
    undo_status: ActionStatus,
) -> None:
    f = finding()
    undone = record(f, "a-1", ActionStatus.UNDONE, NOW - timedelta(hours=3))
    undo = record(f, "a-2", undo_status, NOW - timedelta(hours=2), undo_of="a-1")
    plan = build_plan([f], DEFS, PolicyConfig(), NOW, history=[undone, undo])
    assert [a.key for a in plan.actions] == ["f-1:deactivate_key"]
    assert plan.done == () and plan.held == ()


@pytest.mark.parametrize("skipped", ["undo", "no-finding"])
def test_a_history_record_planning_skips_does_not_hide_the_records_after_it(skipped: str) -> None:
    f = finding()
    first = record(f, "a-1", ActionStatus.UNDONE, NOW - timedelta(hours=3))
    if skipped == "undo":
        ignored = record(f, "a-2", ActionStatus.APPLIED, NOW - timedelta(hours=2), undo_of="a-1")
    else:
        ignored = replace(record(f, "a-2", ActionStatus.APPLIED, NOW - timedelta(hours=2)), finding_id=None)
    applied_again = record(f, "a-3", ActionStatus.APPLIED, NOW - timedelta(hours=1))
    plan = build_plan([f], DEFS, PolicyConfig(), NOW, history=[first, ignored, applied_again])
    assert plan.actions == ()
    assert plan.done == ("f-1:deactivate_key",)


def test_a_resolved_finding_is_skipped_and_the_findings_after_it_are_still_planned() -> None:
    findings = [finding("f-0", status=FindingStatus.RESOLVED), finding("f-1")]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert [a.key for a in plan.actions] == ["f-1:deactivate_key"]


# --- findings_fingerprint --------------------------------------------------------------------------


def base() -> Finding:
    return replace(finding(), exemption_id="x1")


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(replace(base(), finding_id="f-2"), id="finding-id"),
        pytest.param(replace(base(), status=FindingStatus.EXEMPTED), id="status-exempted"),
        pytest.param(replace(base(), status=FindingStatus.REVOKED), id="status-revoked"),
        pytest.param(replace(base(), due_at=LEFT + timedelta(days=1)), id="due-time"),
        pytest.param(replace(base(), due_at=None), id="due-never"),
        pytest.param(replace(base(), exemption_id="x2"), id="exemption-id"),
        pytest.param(replace(base(), exemption_id=None), id="exemption-gone"),
        pytest.param(replace(base(), stale=True), id="stale"),
        pytest.param(replace(base(), credential=replace(KEY, credential_id="K2")), id="credential-id"),
        pytest.param(replace(base(), credential=None), id="credential-gone"),
        pytest.param(replace(base(), account=replace(ACCT, uid="uuid-other")), id="account-uid"),
    ],
)
def test_changing_one_covered_field_of_a_finding_changes_the_fingerprint(changed: Finding) -> None:
    assert findings_fingerprint([changed]) != findings_fingerprint([base()])


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(replace(base(), reason="left; key last used yesterday"), id="reason-text"),
        pytest.param(replace(base(), first_seen=LEFT - timedelta(days=3)), id="first-seen"),
        # The account's immutable identity is its uid: a rename alone does not make a plan stale.
        pytest.param(replace(base(), account=replace(ACCT, username="alice.ng")), id="username"),
    ],
)
def test_changing_a_field_the_fingerprint_deliberately_leaves_out_keeps_it(changed: Finding) -> None:
    assert findings_fingerprint([changed]) == findings_fingerprint([base()])


def test_a_resolved_finding_does_not_enter_the_fingerprint() -> None:
    resolved = finding("f-9", status=FindingStatus.RESOLVED)
    assert findings_fingerprint([base(), resolved]) == findings_fingerprint([base()])


def test_the_fingerprint_is_the_sha256_of_one_line_per_finding_in_a_fixed_format() -> None:
    full = replace(base(), stale=True)
    bare = replace(finding("f-0"), due_at=None, credential=None)
    lines = [
        # finding id | status | due time | exemption | "stale" | credential id | account uid
        "f-0|open|||||uuid-alice",
        "f-1|open|2026-02-01T00:00:00+00:00|x1|stale|K1|uuid-alice",
    ]
    expected = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    assert findings_fingerprint([full, bare]) == expected
