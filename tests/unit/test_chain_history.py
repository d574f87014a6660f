"""Evidence rebuilt from the audit chain alone (``core/chain_history.py``): what each action is
according to its chained events, and every way an ``actions`` row can disagree with them.

Events are written here as the journal writes them (kinds and payload keys), without a database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offboard_audit.core.actions import ResourceState, Stage
from offboard_audit.core.audit_chain import AuditEvent, canonical_payload
from offboard_audit.core.chain_history import (
    ChainAction,
    ChainHistory,
    ChainStep,
    Discrepancy,
    chain_actions,
    compare_action,
    discrepancies,
)
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionRecord, ActionStatus
from tests.support.fakes import action_record

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

DESCRIPTION: dict[str, Any] = {
    "finding_id": "f-1",
    "person": "E7",
    "plan_id": "p-1",
    "source": "aws-main",
    "system": "aws",
    "scope": "111111111111",
    "account_id": "acct-bob",
    "account_uid": "AIDA-bob",
    "username": "bob",
    "credential_id": "AKIA1",
    "credential_kind": "access_key",
    "action": "deactivate_key",
    "stage": "disable",
    "reversible": True,
    "undo_of": None,
}
PRIOR = {"exists": True, "active": True, "data": {"status": "Active"}, "identity": "AIDA-bob"}
AFTER = {"exists": True, "active": False, "data": {"status": "Inactive"}, "identity": "AIDA-bob"}

_seq = iter(range(1, 10_000))


def ev(
    kind: str,
    action_id: str | None,
    payload: dict[str, Any],
    at: datetime,
    actor: str = "cli:alice",
    mac: str | None = None,
) -> AuditEvent:
    seq = next(_seq)
    return AuditEvent(
        seq, at, kind, actor, None, action_id, canonical_payload(payload), "p" * 64, f"{seq:064d}", mac
    )


def intent(aid: str = "a-1", at: datetime = T, **extra: Any) -> AuditEvent:
    return ev("intent", aid, {**DESCRIPTION, "action_id": aid, "prior_state": PRIOR, **extra}, at)


def outcome(aid: str = "a-1", status: str = "applied", error: str | None = None, at: datetime = T, kind: str = "outcome", **desc: Any) -> AuditEvent:  # fmt: skip
    payload = {
        **DESCRIPTION,
        **desc,
        "action_id": aid,
        "status": status,
        "error": error,
        "message": "",
        "after": AFTER,
    }
    return ev(kind, aid, payload, at)


def undo_events(aid: str, of: str, status: str, at: datetime, actor: str = "cli:carol") -> list[AuditEvent]:
    desc = {**DESCRIPTION, "action_id": aid, "plan_id": "undo", "undo_of": of}
    current = AFTER
    return [
        ev("undo-intent", aid, {**desc, "restore_to": PRIOR, "current": current}, at, actor),
        ev(
            "undo-outcome",
            aid,
            {**desc, "status": status, "error": None, "message": "", "after": PRIOR},
            at + timedelta(seconds=2),
            actor,
        ),
    ]


# --- reading actions off the chain ---------------------------------------------------------------


def test_an_applied_action_is_described_by_its_intent_and_ends_in_its_outcomes_status() -> None:
    first, last = intent(at=T), outcome(at=T + timedelta(seconds=3))
    (action,) = chain_actions([first, last]).values()
    assert action == ChainAction(
        action_id="a-1",
        description=DESCRIPTION,
        status="applied",
        error=None,
        actor="cli:alice",
        created_at=T,
        done_at=T + timedelta(seconds=3),
        steps=(
            ChainStep(first.seq, T, "intent", "cli:alice", None, first.hash, False),
            ChainStep(
                last.seq, T + timedelta(seconds=3), "outcome", "cli:alice", "applied", last.hash, False
            ),
        ),
        prior_state=PRIOR,
    )
    assert (action.effective_status, action.updated_at, action.revoked) == (
        "applied",
        T + timedelta(seconds=3),
        True,
    )


def test_the_description_takes_only_the_descriptive_fields_of_the_first_event() -> None:
    (action,) = chain_actions([intent(extra_field="x"), outcome(username="mallory")]).values()
    assert dict(action.description) == DESCRIPTION
    assert action.field("username") == "bob" and action.field("nothing") is None


def test_an_intent_without_an_outcome_is_still_an_intent() -> None:
    (action,) = chain_actions([intent()]).values()
    assert (action.status, action.error, action.done_at, action.revoked) == ("intent", None, T, False)


def test_a_failed_outcome_keeps_its_error_and_a_recovery_settles_it() -> None:
    events = [
        intent(),
        outcome(status="unknown", error="re-read failed", at=T + timedelta(seconds=1)),
        outcome(status="applied", kind="recovered", at=T + timedelta(days=1)),
    ]
    action = chain_actions(events)["a-1"]
    assert (action.status, action.error, action.done_at) == ("applied", None, T + timedelta(days=1))
    assert [s.kind for s in action.steps] == ["intent", "outcome", "recovered"]
    failed = chain_actions(events[:2])["a-1"]
    assert (failed.status, failed.error) == ("unknown", "re-read failed")


def test_an_event_of_another_kind_or_without_a_status_does_not_change_the_status() -> None:
    events = [
        intent(),
        outcome(status="applied", at=T + timedelta(seconds=1)),
        ev("note", "a-1", {"status": "failed", "error": "x"}, T + timedelta(seconds=2)),
        ev("outcome", "a-1", {"error": "y"}, T + timedelta(seconds=3)),
    ]
    action = chain_actions(events)["a-1"]
    assert (action.status, action.error) == ("applied", None)
    assert action.done_at == T + timedelta(seconds=3) and action.steps[2].status == "failed"
    assert action.steps[3].status is None


def test_a_skipped_action_carries_its_reason_as_its_error_and_no_prior_state() -> None:
    skipped = ev("skipped", "a-1", {**DESCRIPTION, "reason": "exempted by ex-1"}, T)
    action = chain_actions([skipped])["a-1"]
    assert (action.status, action.error, action.prior_state) == ("skipped", "exempted by ex-1", None)
    no_reason = chain_actions([ev("skipped", "a-2", dict(DESCRIPTION), T)])["a-2"]
    assert (no_reason.status, no_reason.error) == ("skipped", None)


def test_an_action_stopped_before_its_intent_is_its_outcome_alone() -> None:
    action = chain_actions([outcome(status="target-changed", error="name reused")])["a-1"]
    assert (action.status, action.error, action.prior_state, action.revoked) == (
        "target-changed",
        "name reused",
        None,
        False,
    )


def test_a_prior_state_that_is_not_an_object_is_none() -> None:
    assert chain_actions([intent(prior_state=None)])["a-1"].prior_state is None
    assert chain_actions([intent(prior_state="active")])["a-1"].prior_state is None


def test_events_without_an_action_are_not_actions_and_actions_keep_the_order_of_their_first_event() -> None:
    events = [
        ev("run", None, {"status": "ok"}, T),
        intent("a-2"),
        intent("a-1"),
        outcome("a-2"),
    ]
    assert list(chain_actions(events)) == ["a-2", "a-1"]


def test_keyed_events_are_marked_keyed_in_the_steps() -> None:
    keyed = ev("intent", "a-1", {**DESCRIPTION, "prior_state": PRIOR}, T, mac="m" * 64)
    assert chain_actions([keyed])["a-1"].steps[0].keyed is True


# --- undo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["restored", "unchanged"])
def test_an_undo_that_restored_makes_the_original_undone_at_the_undos_outcome(status: str) -> None:
    undo_at = T + timedelta(hours=1)
    actions = chain_actions(
        [intent(), outcome(at=T + timedelta(seconds=1)), *undo_events("a-2", "a-1", status, undo_at)]
    )
    orig, undo = actions["a-1"], actions["a-2"]
    assert (orig.undone_by, orig.undone_at, orig.undone_by_actor) == (
        "a-2",
        undo_at + timedelta(seconds=2),
        "cli:carol",
    )
    assert (orig.status, orig.effective_status, orig.updated_at) == (
        "applied",
        "undone",
        undo_at + timedelta(seconds=2),
    )
    assert orig.revoked  # it did take effect; the undo is recorded separately
    assert (undo.undo_of, undo.status, undo.revoked, undo.prior_state) == ("a-1", status, False, AFTER)
    assert undo.key == "f-1:deactivate_key"


def test_a_failed_undo_leaves_the_original_in_force() -> None:
    actions = chain_actions(
        [intent(), outcome(), *undo_events("a-2", "a-1", "failed", T + timedelta(hours=1))]
    )
    assert actions["a-1"].undone_by is None and actions["a-1"].effective_status == "applied"


def test_the_first_undo_that_restored_is_the_one_recorded() -> None:
    events = [
        intent(),
        outcome(),
        *undo_events("a-2", "a-1", "restored", T + timedelta(hours=1)),
        *undo_events("a-3", "a-1", "unchanged", T + timedelta(hours=2)),
    ]
    assert chain_actions(events)["a-1"].undone_by == "a-2"


def test_an_undo_of_an_action_the_chain_does_not_have_changes_nothing() -> None:
    actions = chain_actions(undo_events("a-2", "a-gone", "restored", T))
    assert list(actions) == ["a-2"] and actions["a-2"].undo_of == "a-gone"


def test_the_undo_recovered_as_restored_undoes_the_original() -> None:
    desc = {**DESCRIPTION, "action_id": "a-2", "plan_id": "undo", "undo_of": "a-1"}
    events = [
        intent(),
        outcome(),
        ev("undo-intent", "a-2", {**desc, "restore_to": PRIOR, "current": AFTER}, T + timedelta(hours=1)),
        ev("recovered", "a-2", {**desc, "status": "restored", "error": None}, T + timedelta(days=1)),
    ]
    orig = chain_actions(events)["a-1"]
    assert (orig.undone_by, orig.undone_at) == ("a-2", T + timedelta(days=1))


def test_identifiers_read_from_the_description_are_text_or_none() -> None:
    action = chain_actions([intent(person=None, finding_id=None)])["a-1"]
    assert (action.person, action.finding_id, action.undo_of, action.key) == (
        None,
        None,
        None,
        "None:deactivate_key",
    )
    numeric = chain_actions([intent("a-9", person=7, finding_id=12)])["a-9"]
    assert (numeric.person, numeric.finding_id) == ("7", "12")


def test_only_applied_and_noop_revocations_count_as_revoked() -> None:
    for status, revoked in [("applied", True), ("noop", True), ("failed", False), ("skipped", False)]:
        assert chain_actions([intent(), outcome(status=status)])["a-1"].revoked is revoked


def test_chain_history_passes_every_event_through_and_builds_once() -> None:
    events = [intent(), outcome()]
    history = ChainHistory()
    assert list(history.feed(events)) == events
    actions = history.actions()
    assert list(actions) == ["a-1"] and history.actions() is actions


# --- the actions table against the chain ------------------------------------------------------------


def row(**changes: Any) -> ActionRecord:
    return action_record(T, **changes)


def logged() -> dict[str, ChainAction]:
    return chain_actions([intent(at=T), outcome(at=T + timedelta(seconds=3))])


def test_a_row_that_agrees_with_the_chain_has_no_discrepancy() -> None:
    assert compare_action(row(), logged()["a-1"]) == []
    assert discrepancies([row()], logged(), expected=["a-1"]) == []


@pytest.mark.parametrize(
    ("changes", "field", "table", "chain"),
    [
        ({"finding_id": "f-2"}, "finding_id", "'f-2'", "'f-1'"),
        ({"person": None}, "person", "none", "'E7'"),
        ({"plan_id": "p-9"}, "plan_id", "'p-9'", "'p-1'"),
        ({"source": "aws-other"}, "source", "'aws-other'", "'aws-main'"),
        ({"system": "gcp"}, "system", "'gcp'", "'aws'"),
        ({"scope": "222"}, "scope", "'222'", "'111111111111'"),
        ({"account_id": "acct-eve"}, "account_id", "'acct-eve'", "'acct-bob'"),
        ({"account_uid": "AIDA-eve"}, "account_uid", "'AIDA-eve'", "'AIDA-bob'"),
        ({"username": "eve"}, "username", "'eve'", "'bob'"),
        ({"credential_id": "AKIA2"}, "credential_id", "'AKIA2'", "'AKIA1'"),
        ({"credential_kind": CredentialKind.SSH_KEY}, "credential_kind", "'ssh_key'", "'access_key'"),
        ({"action": "delete_key"}, "action", "'delete_key'", "'deactivate_key'"),
        ({"stage": Stage.DELETE}, "stage", "'delete'", "'disable'"),
        ({"reversible": False}, "reversible", "False", "True"),
        ({"undo_of": "a-0"}, "undo_of", "'a-0'", "none"),
        ({"status": ActionStatus.FAILED}, "status", "'failed'", "'applied'"),
        ({"actor": "cli:mallory"}, "actor", "'cli:mallory'", "'cli:alice'"),
        (
            {"created_at": T - timedelta(days=1)},
            "created_at",
            "2026-02-28T12:00:00+00:00",
            "2026-03-01T12:00:00+00:00",
        ),
        ({"updated_at": T}, "updated_at", "2026-03-01T12:00:00+00:00", "2026-03-01T12:00:03+00:00"),
        ({"error": "edited"}, "error", "'edited'", "none"),
        (
            {"prior_state": ResourceState(True, False, (), "AIDA-bob")},
            "prior_state",
            "{'exists': True, 'active': False, 'data': {}, 'identity': 'AIDA-bob'}",
            "{'active': True, 'data': {'status': 'Active'}, 'exists': True, 'identity': 'AIDA-bob'}",
        ),
    ],
)
def test_each_field_a_row_changes_is_named_with_both_values(changes: dict[str, Any], field: str, table: str, chain: str) -> None:  # fmt: skip
    assert compare_action(row(**changes), logged()["a-1"]) == [Discrepancy("a-1", field, table, chain)]


def test_a_row_without_a_prior_state_disagrees_with_an_intent_that_recorded_one() -> None:
    assert compare_action(row(prior_state=None), logged()["a-1"]) == [
        Discrepancy(
            "a-1",
            "prior_state",
            "none",
            "{'active': True, 'data': {'status': 'Active'}, 'exists': True, 'identity': 'AIDA-bob'}",
        )
    ]


def test_the_prior_state_is_not_compared_when_the_chain_recorded_none() -> None:
    chain = chain_actions([outcome(status="failed", error="could not read")])["a-1"]
    rec = row(status=ActionStatus.FAILED, error="could not read", created_at=T, updated_at=T)
    assert compare_action(rec, chain) == []


def test_an_undone_row_is_compared_with_the_time_and_status_of_the_undo() -> None:
    undo_at = T + timedelta(hours=1)
    chain = chain_actions([intent(), outcome(at=T + timedelta(seconds=3)), *undo_events("a-2", "a-1", "restored", undo_at)])  # fmt: skip
    rec = row(status=ActionStatus.UNDONE, updated_at=undo_at + timedelta(seconds=2))
    assert compare_action(rec, chain["a-1"]) == []
    assert [d.field for d in compare_action(row(), chain["a-1"])] == ["status", "updated_at"]


def test_rows_the_chain_does_not_know_and_chained_actions_without_a_row_are_named() -> None:
    found = discrepancies(
        [row(), row(action_id="a-forged")], logged(), expected=["a-1", "a-deleted", "a-unknown"]
    )
    assert found == [
        Discrepancy(
            "a-forged",
            "row",
            "in the actions table but not in the audit log (row added, or its events deleted)",
            "",
        )
    ]
    chain = chain_actions([intent("a-1"), outcome("a-1"), intent("a-2")])
    missing = discrepancies([], chain, expected=["a-2", "a-unknown"])
    assert missing == [
        Discrepancy("a-2", "row", "in the audit log but its row in the actions table is missing", "")
    ]


def test_a_discrepancy_reads_as_a_sentence() -> None:
    assert str(Discrepancy("a-1", "actor", "'mallory'", "'alice'")) == (
        "action a-1: actor is 'mallory' in the actions table but 'alice' in the audit log"
    )
    assert str(Discrepancy("a-1", "row", "in the actions table but not in the audit log", "")) == (
        "action a-1: in the actions table but not in the audit log"
    )
