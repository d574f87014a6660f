"""Mutation holes in build_plan and Plan (issue 10, batch 6): a credential kind with several
disable actions (disabled since the latest of them; one already done does not stop the next
one; a revoked finding still counts all of them), several delete actions (one done, waiting
or skipped does not stop the next one), the exact boundaries of "due" and of the delete
window, the "not due yet" and "delete stage waits" reasons, the key of a delete action
already done, and the refusal of a plan with a naive creation time.

Pure, like tests/unit/test_planning.py: findings are built here, expected values written out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_records import Plan
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
KIND = CredentialKind.ACCESS_KEY

# Two disable and two delete actions for the same credential kind; planning takes each stage's
# actions in name order, so the "a_" action of a stage comes before its "b_" one.
A_DISABLE = ActionDef("a_deactivate", KIND, Stage.DISABLE, True, (), "deactivate")
B_DISABLE = ActionDef("b_tag", KIND, Stage.DISABLE, True, (), "tag")
A_DELETE = ActionDef("a_delete", KIND, Stage.DELETE, False, (), "delete")
B_DELETE = ActionDef("b_purge", KIND, Stage.DELETE, False, (), "purge")

ACCT = Account("src", "ldap", "uid=alice", "alice", True, uid="uuid-alice")
KEY = Credential("src", "uid=alice", "K1", KIND, True)
ALICE = Person("e1", "alice@x.org", "Alice Ng", PersonStatus.TERMINATED, LEFT, source="hr")
WINDOW = timedelta(days=30)


def defs(*ds: ActionDef) -> dict[str, dict[str, ActionDef]]:
    return {"src": {d.name: d for d in ds}}


def finding(status: FindingStatus = FindingStatus.OPEN, due: datetime | None = LEFT) -> Finding:
    return Finding("f-1", RULE, RULE.severity, status, ACCT, ALICE, KEY, LEFT, due, "left")


def done(f: Finding, d: ActionDef, at: datetime) -> ActionRecord:
    """``d`` applied to the credential of ``f`` at ``at``."""
    return record_for(
        f,
        d.name,
        ActionStatus.APPLIED,
        at,
        action_id=f"a-{d.name}",
        stage=d.stage,
        reversible=d.reversible,
        person="e1",
    )


def keys(plan: Plan) -> list[str]:
    return [a.key for a in plan.actions]


# --- several disable actions -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [FindingStatus.OPEN, FindingStatus.REVOKED])
def test_the_delete_window_counts_from_the_latest_of_several_disable_actions(status: FindingStatus) -> None:
    # The first disable action (by name) was applied 40 days ago, the second 10 days ago: the
    # credential is disabled since the later one, so the 30-day window has not passed yet.
    f = finding(status)
    history = [done(f, A_DISABLE, NOW - timedelta(days=40)), done(f, B_DISABLE, NOW - timedelta(days=10))]
    plan = build_plan(
        [f], defs(A_DISABLE, B_DISABLE, A_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history
    )
    assert keys(plan) == []
    waits_until = (NOW - timedelta(days=10) + WINDOW).isoformat()
    assert [h.reason for h in plan.held] == [f"delete stage (a_delete) waits until {waits_until}"]


def test_a_disable_action_already_done_does_not_stop_the_next_disable_action_being_planned() -> None:
    f = finding()
    history = [done(f, A_DISABLE, NOW - timedelta(days=1))]
    plan = build_plan([f], defs(A_DISABLE, B_DISABLE), PolicyConfig(), NOW, history=history)
    assert plan.done == ("f-1:a_deactivate",)
    assert keys(plan) == ["f-1:b_tag"]


# --- due time ----------------------------------------------------------------------------------------


def test_a_finding_due_exactly_now_is_planned() -> None:
    plan = build_plan([finding(due=NOW)], defs(A_DISABLE), PolicyConfig(), NOW)
    assert keys(plan) == ["f-1:a_deactivate"]
    assert plan.held == ()


def test_a_finding_not_yet_due_is_held_with_the_end_of_its_grace_period() -> None:
    due = NOW + timedelta(days=2)
    plan = build_plan([finding(due=due)], defs(A_DISABLE), PolicyConfig(), NOW)
    assert keys(plan) == []
    assert [h.reason for h in plan.held] == ["not due yet (grace period ends 2026-03-03T00:00:00+00:00)"]


def test_a_finding_with_no_due_time_is_held_as_never_due() -> None:
    plan = build_plan([finding(due=None)], defs(A_DISABLE), PolicyConfig(), NOW)
    assert keys(plan) == []
    assert [h.reason for h in plan.held] == ["not due yet (grace period ends never)"]


# --- several delete actions -------------------------------------------------------------------------


def test_a_delete_action_already_done_is_listed_by_its_key_and_the_next_delete_action_is_planned() -> None:
    f = finding(FindingStatus.REVOKED)
    history = [done(f, A_DISABLE, NOW - timedelta(days=40)), done(f, A_DELETE, NOW - timedelta(days=5))]
    plan = build_plan(
        [f], defs(A_DISABLE, A_DELETE, B_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history
    )
    assert plan.done == ("f-1:a_delete",)
    assert keys(plan) == ["f-1:b_purge"]


def test_a_delete_action_waiting_for_the_disable_does_not_hide_a_later_delete_action_already_done() -> None:
    # Not disabled: the first delete action is skipped (disable first); the second one, found
    # done in the history, is still listed as done.
    f = finding()
    history = [done(f, B_DELETE, NOW - timedelta(days=5))]
    plan = build_plan(
        [f], defs(A_DISABLE, A_DELETE, B_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history
    )
    assert keys(plan) == ["f-1:a_deactivate"]
    assert plan.done == ("f-1:b_purge",)


def test_a_delete_action_with_no_due_time_to_count_from_does_not_hide_a_later_one_already_done() -> None:
    # No disable action for the kind: the window counts from the due time, and there is none.
    f = finding(FindingStatus.REVOKED, due=None)
    history = [done(f, B_DELETE, NOW - timedelta(days=5))]
    plan = build_plan([f], defs(A_DELETE, B_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history)
    assert keys(plan) == []
    assert plan.done == ("f-1:b_purge",)


def test_every_delete_action_still_in_its_window_is_held_with_its_name_and_end_of_window() -> None:
    f = finding(FindingStatus.REVOKED)
    disabled = NOW - timedelta(days=10)
    history = [done(f, A_DISABLE, disabled)]
    plan = build_plan(
        [f], defs(A_DISABLE, A_DELETE, B_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history
    )
    assert keys(plan) == []
    assert [h.reason for h in plan.held] == [
        "delete stage (a_delete) waits until 2026-03-21T00:00:00+00:00",
        "delete stage (b_purge) waits until 2026-03-21T00:00:00+00:00",
    ]


def test_a_delete_action_whose_window_ends_exactly_now_is_planned() -> None:
    f = finding(FindingStatus.REVOKED)
    history = [done(f, A_DISABLE, NOW - WINDOW)]
    plan = build_plan([f], defs(A_DISABLE, A_DELETE), PolicyConfig(delete_after=WINDOW), NOW, history=history)
    assert keys(plan) == ["f-1:a_delete"]
    assert plan.held == ()


# --- Plan ---------------------------------------------------------------------------------------------


def test_a_plan_with_a_naive_creation_time_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^Plan\.created_at must be timezone-aware"):
        Plan(created_at=datetime(2026, 3, 1), fingerprint="x", actions=())
