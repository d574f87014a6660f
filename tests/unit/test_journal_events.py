"""What the journal (``engine/journal.py``) writes for each step of an action: the row in the
``actions`` table and the audit event, field by field.

The audit events are the evidence an auditor reads (``report``, ``log verify``), so their kinds,
payload keys, statuses and times are asserted exactly, written out here rather than rebuilt with
the module's own helpers.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.core.actions import ResourceState, Stage
from offboard_audit.core.audit_chain import AuditEvent
from offboard_audit.core.plan_records import PlannedAction
from offboard_audit.core.records import CredentialKind, Rule
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.journal import (
    DRY_RUN,
    IRREVERSIBLE,
    ActionOutcome,
    ApplyReport,
    Journal,
    dry_run,
    new_action_id,
    state_json,
)
from offboard_audit.engine.steps import Step
from offboard_audit.storage.actions import iter_events, load_actions
from offboard_audit.storage.store import Store

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LAG = timedelta(seconds=7)  # what the journal's clock adds: outcomes are recorded this much later

PA = PlannedAction(
    source="aws-main",
    system="aws",
    scope="111111111111",
    account_id="acct-bob",
    username="bob",
    credential_id="AKIA1",
    credential_kind=CredentialKind.ACCESS_KEY,
    detail="key detail",
    account_uid="AIDA-bob",
    finding_id="f-1",
    rule=Rule.CREDENTIAL_AFTER_TERMINATION,
    severity="high",
    person="E7",
    person_name="Bob",
    terminated_at=datetime(2026, 2, 1, tzinfo=UTC),
    action="deactivate_key",
    stage=Stage.DISABLE,
    reversible=True,
    permissions=("iam:UpdateAccessKey",),
    description="deactivate the access key",
)

# The action's part of every event payload, as an auditor reads it.
PAYLOAD: dict[str, Any] = {
    "action_id": "a-0000000000000001",
    "plan_id": "p-plan",
    "finding_id": "f-1",
    "person": "E7",
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

ACTIVE = ResourceState(exists=True, active=True, data=(("status", "Active"),), identity="AIDA-bob")
INACTIVE = ResourceState(exists=True, active=False, data=(("status", "Inactive"),), identity="AIDA-bob")
ACTIVE_JSON = {"exists": True, "active": True, "data": {"status": "Active"}, "identity": "AIDA-bob"}
INACTIVE_JSON = {"exists": True, "active": False, "data": {"status": "Inactive"}, "identity": "AIDA-bob"}


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database at the newest schema, made once and copied for each test."""
    path = tmp_path_factory.mktemp("journal") / "empty.db"
    Store.open(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture
def store(tmp_path: Path, empty_db: Path) -> Iterator[Store]:
    shutil.copy(empty_db, tmp_path / "journal.db")
    s = Store.open(f"sqlite:///{tmp_path / 'journal.db'}", upgrade=False)
    yield s
    s.engine.dispose()


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def journal(store: Store, lines: list[str]) -> Journal:
    return Journal(store, "cli:alice", lambda at: at + LAG, lines.append)


def record(journal: Journal) -> ActionRecord:
    return journal.new_record(PA, "p-plan", AT, action_id="a-0000000000000001")


def events(store: Store) -> list[AuditEvent]:
    return list(iter_events(store))


def row(store: Store, action_id: str = "a-0000000000000001") -> ActionRecord:
    (rec,) = load_actions(store, action_ids=[action_id])
    return rec


# --- the action row ---------------------------------------------------------------------------


def test_a_new_record_copies_every_field_of_the_planned_action_and_starts_as_an_intent(
    journal: Journal,
) -> None:
    rec = record(journal)
    assert rec == ActionRecord(
        source="aws-main",
        system="aws",
        scope="111111111111",
        account_id="acct-bob",
        username="bob",
        credential_id="AKIA1",
        credential_kind=CredentialKind.ACCESS_KEY,
        detail="key detail",
        account_uid="AIDA-bob",
        action_id="a-0000000000000001",
        plan_id="p-plan",
        finding_id="f-1",
        action="deactivate_key",
        stage=Stage.DISABLE,
        reversible=True,
        person="E7",
        status=ActionStatus.INTENT,
        error=None,
        prior_state=None,
        result_state=None,
        actor="cli:alice",
        undo_of=None,
        created_at=AT,
        updated_at=AT,
    )


def test_a_new_record_without_an_id_gets_a_fresh_one(journal: Journal) -> None:
    first = journal.new_record(PA, "p-plan", AT)
    second = journal.new_record(PA, "p-plan", AT)
    assert re.fullmatch(r"a-[0-9a-f]{16}", first.action_id)
    assert first.action_id != second.action_id
    assert re.fullmatch(r"a-[0-9a-f]{16}", new_action_id())


# --- intent and outcome -----------------------------------------------------------------------


def test_the_intent_stores_the_row_with_its_prior_state_and_an_intent_event_at_the_records_time(
    journal: Journal, store: Store
) -> None:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    (event,) = events(store)
    assert (event.kind, event.at, event.actor, event.action_id, event.run_id) == (
        "intent",
        AT,
        "cli:alice",
        "a-0000000000000001",
        None,
    )
    assert event.payload == {**PAYLOAD, "prior_state": ACTIVE_JSON}
    stored = row(store)
    assert (
        stored.status is ActionStatus.INTENT and stored.prior_state == ACTIVE and stored.result_state is None
    )


def test_an_applied_outcome_records_status_before_and_after_later_than_the_intent(
    journal: Journal, store: Store
) -> None:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    out = journal.applied(rec, Step(ActionStatus.APPLIED, ACTIVE, INACTIVE, started=True))
    intent, outcome = events(store)
    assert intent.kind == "intent"
    assert (outcome.kind, outcome.at, outcome.actor, outcome.action_id) == (
        "outcome",
        AT + LAG,
        "cli:alice",
        "a-0000000000000001",
    )
    assert outcome.payload == {
        **PAYLOAD,
        "status": "applied",
        "error": None,
        "message": "",
        "before": ACTIVE_JSON,
        "after": INACTIVE_JSON,
    }
    stored = row(store)
    assert (stored.status, stored.error, stored.prior_state, stored.result_state, stored.updated_at) == (
        ActionStatus.APPLIED,
        None,
        ACTIVE,
        INACTIVE,
        AT + LAG,
    )
    assert out == ActionOutcome(
        action_id="a-0000000000000001",
        finding_id="f-1",
        source="aws-main",
        action="deactivate_key",
        status="applied",
        error=None,
        message="",
        stage="disable",
        reversible=True,
        person="E7",
        account="bob",
        credential_id="AKIA1",
        undo_of=None,
    )


def test_an_unknown_outcome_records_the_state_before_no_state_after_and_why(
    journal: Journal, store: Store
) -> None:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    why = "changed, but the re-read to verify it failed (timed out): settled on the next pass"
    out = journal.applied(rec, Step(ActionStatus.UNKNOWN, ACTIVE, error=why, started=True))
    outcome = events(store)[-1]
    assert outcome.payload == {
        **PAYLOAD,
        "status": "unknown",
        "error": why,
        "message": "",
        "before": ACTIVE_JSON,
        "after": None,
    }
    stored = row(store)
    # No re-read: the row keeps no result state, and its status says the outcome is open.
    assert (stored.status, stored.error, stored.result_state) == (ActionStatus.UNKNOWN, why, None)
    assert (out.status, out.error) == ("unknown", why)


def test_a_noop_outcome_carries_its_message(journal: Journal, store: Store) -> None:
    rec = record(journal)
    journal.intent(rec, INACTIVE)
    out = journal.applied(
        rec, Step(ActionStatus.NOOP, INACTIVE, INACTIVE, message="already revoked", started=True)
    )
    assert events(store)[-1].payload["message"] == "already revoked"
    assert events(store)[-1].payload["status"] == "noop"
    assert (out.status, out.message, out.error) == ("noop", "already revoked", None)


# --- actions that stopped before their intent -------------------------------------------------


def test_a_step_that_failed_before_its_intent_stores_a_failed_row_and_one_event_of_the_given_kind(
    journal: Journal, store: Store
) -> None:
    rec = record(journal)
    out = journal.not_started(rec, Step(ActionStatus.FAILED, error="could not read: throttled"), "outcome")
    (event,) = events(store)
    assert (event.kind, event.at, event.action_id) == ("outcome", AT, "a-0000000000000001")
    assert event.payload == {**PAYLOAD, "status": "failed", "error": "could not read: throttled"}
    stored = row(store)
    assert (stored.status, stored.error, stored.prior_state) == (
        ActionStatus.FAILED,
        "could not read: throttled",
        None,
    )
    assert (out.status, out.error) == ("failed", "could not read: throttled")


def test_a_failure_without_an_error_still_says_it_failed_before_the_intent(
    journal: Journal, store: Store
) -> None:
    out = journal.not_started(record(journal), Step(ActionStatus.FAILED), "undo-outcome")
    (event,) = events(store)
    assert event.kind == "undo-outcome"
    assert event.payload["error"] == "failed before the intent" == out.error
    assert row(store).error == "failed before the intent"


def test_a_target_that_changed_is_recorded_with_the_identity_observed_and_reported(
    journal: Journal, store: Store, lines: list[str]
) -> None:
    observed = ResourceState(exists=True, active=True, data=(), identity="AIDA-new-hire")
    step = Step(ActionStatus.TARGET_CHANGED, before=observed, error="name reused")
    out = journal.not_started(record(journal), step, "outcome")
    (event,) = events(store)
    assert event.kind == "outcome"
    assert event.payload == {
        **PAYLOAD,
        "status": "target-changed",
        "error": "name reused",
        "observed_identity": "AIDA-new-hire",
    }
    stored = row(store)
    assert (stored.status, stored.error, stored.prior_state) == (
        ActionStatus.TARGET_CHANGED,
        "name reused",
        observed,
    )
    assert lines == ["deactivate_key on aws-main:bob: target changed, nothing touched"]
    assert (out.status, out.error) == ("target-changed", "name reused")


def test_a_target_changed_step_with_nothing_read_is_recorded_as_failed(
    journal: Journal, store: Store
) -> None:
    out = journal.not_started(record(journal), Step(ActionStatus.TARGET_CHANGED, error="gone"), "outcome")
    assert events(store)[0].payload["status"] == "failed"
    assert (out.status, row(store).status) == ("failed", ActionStatus.FAILED)


def test_a_skipped_action_stores_its_reason(journal: Journal, store: Store) -> None:
    out = journal.skipped(record(journal), "exempted by ex-1")
    (event,) = events(store)
    assert (event.kind, event.at) == ("skipped", AT)
    assert event.payload == {**PAYLOAD, "reason": "exempted by ex-1"}
    assert (row(store).status, row(store).error) == (ActionStatus.SKIPPED, "exempted by ex-1")
    assert (out.status, out.error) == ("skipped", "exempted by ex-1")


# --- undo -------------------------------------------------------------------------------------


def undo_record(journal: Journal, orig: ActionRecord) -> ActionRecord:
    return replace(
        orig,
        action_id="a-0000000000000002",
        plan_id="undo",
        undo_of=orig.action_id,
        created_at=AT + timedelta(hours=1),
        updated_at=AT + timedelta(hours=1),
    )


def applied_action(journal: Journal) -> ActionRecord:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    journal.applied(rec, Step(ActionStatus.APPLIED, ACTIVE, INACTIVE, started=True))
    return rec


UNDO_PAYLOAD = {
    **PAYLOAD,
    "action_id": "a-0000000000000002",
    "plan_id": "undo",
    "undo_of": "a-0000000000000001",
}


def test_an_undo_intent_records_what_it_restores_and_what_it_found(journal: Journal, store: Store) -> None:
    undo = undo_record(journal, applied_action(journal))
    journal.undo_intent(undo, ACTIVE, INACTIVE)
    event = events(store)[-1]
    assert (event.kind, event.at, event.action_id) == (
        "undo-intent",
        AT + timedelta(hours=1),
        "a-0000000000000002",
    )
    assert event.payload == {**UNDO_PAYLOAD, "restore_to": ACTIVE_JSON, "current": INACTIVE_JSON}
    assert row(store, "a-0000000000000002").prior_state == INACTIVE


@pytest.mark.parametrize("status", [ActionStatus.RESTORED, ActionStatus.UNCHANGED])
def test_a_done_undo_marks_the_original_action_undone(
    journal: Journal, store: Store, status: ActionStatus
) -> None:
    undo = undo_record(journal, applied_action(journal))
    journal.undo_intent(undo, ACTIVE, INACTIVE)
    out = journal.undone(undo, Step(status, INACTIVE, ACTIVE, message="m", started=True))
    event = events(store)[-1]
    assert (event.kind, event.at) == ("undo-outcome", AT + timedelta(hours=1) + LAG)
    assert event.payload == {
        **UNDO_PAYLOAD,
        "status": status.value,
        "error": None,
        "message": "m",
        "after": ACTIVE_JSON,
    }
    assert row(store, "a-0000000000000002").status is status
    assert row(store, "a-0000000000000002").result_state == ACTIVE
    original = row(store)
    assert (original.status, original.updated_at) == (ActionStatus.UNDONE, AT + timedelta(hours=1) + LAG)
    assert (out.status, out.undo_of, out.action_id) == (
        status.value,
        "a-0000000000000001",
        "a-0000000000000002",
    )


def test_a_failed_undo_leaves_the_original_action_applied(journal: Journal, store: Store) -> None:
    undo = undo_record(journal, applied_action(journal))
    journal.undo_intent(undo, ACTIVE, INACTIVE)
    why = "not verified: re-reading does not show the prior state"
    out = journal.undone(undo, Step(ActionStatus.FAILED, INACTIVE, INACTIVE, error=why, started=True))
    assert events(store)[-1].payload["status"] == "failed" and events(store)[-1].payload["error"] == why
    assert row(store).status is ActionStatus.APPLIED
    assert (row(store, "a-0000000000000002").status, out.error) == (ActionStatus.FAILED, why)


# --- recovery ---------------------------------------------------------------------------------


def test_a_recovered_intent_records_what_was_observed_at_the_time_of_the_pass(
    journal: Journal, store: Store, lines: list[str]
) -> None:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    now = AT + timedelta(days=1)
    settled = Step(
        ActionStatus.APPLIED, message="recovered after an interruption: the change was found in place"
    )
    out = journal.recovered(rec, settled, INACTIVE, now)
    event = events(store)[-1]
    assert (event.kind, event.at, event.actor, event.action_id) == (
        "recovered",
        now + LAG,
        "cli:alice",
        "a-0000000000000001",
    )
    assert event.payload == {**PAYLOAD, "status": "applied", "error": None, "observed": INACTIVE_JSON}
    stored = row(store)
    assert (stored.status, stored.error, stored.result_state, stored.updated_at) == (
        ActionStatus.APPLIED,
        None,
        INACTIVE,
        now + LAG,
    )
    assert lines == [
        "recovered a-0000000000000001: recovered after an interruption: the change was found in place"
    ]
    assert (out.status, out.message) == ("applied", settled.message)


def test_a_recovered_failure_keeps_its_error_on_the_row(journal: Journal, store: Store) -> None:
    rec = record(journal)
    journal.intent(rec, ACTIVE)
    why = "interrupted before the change took effect; it will be retried"
    out = journal.recovered(rec, Step(ActionStatus.FAILED, error=why, message=why), ACTIVE, AT)
    assert events(store)[-1].payload["error"] == why
    assert (row(store).status, row(store).error, out.error) == (ActionStatus.FAILED, why, why)


def test_a_recovered_undo_found_restored_marks_the_original_undone(journal: Journal, store: Store) -> None:
    undo = undo_record(journal, applied_action(journal))
    journal.undo_intent(undo, ACTIVE, INACTIVE)
    journal.recovered(undo, Step(ActionStatus.RESTORED, message="found"), ACTIVE, AT + timedelta(days=1))
    assert row(store, "a-0000000000000002").status is ActionStatus.RESTORED
    assert row(store).status is ActionStatus.UNDONE


def test_a_recovered_undo_not_in_place_leaves_the_original_applied(journal: Journal, store: Store) -> None:
    undo = undo_record(journal, applied_action(journal))
    journal.undo_intent(undo, ACTIVE, INACTIVE)
    journal.recovered(undo, Step(ActionStatus.FAILED, error="no"), INACTIVE, AT + timedelta(days=1))
    assert row(store).status is ActionStatus.APPLIED


# --- what a pass reports ----------------------------------------------------------------------


def test_a_dry_run_reports_the_planned_action_without_an_id() -> None:
    assert dry_run(PA) == ActionOutcome(
        action_id="",
        finding_id="f-1",
        source="aws-main",
        action="deactivate_key",
        status=DRY_RUN,
        error=None,
        message="deactivate the access key",
        stage="disable",
        reversible=True,
        person="E7",
        account="bob",
        credential_id="AKIA1",
    )
    assert DRY_RUN == "dry-run"


def test_state_json_is_what_the_events_carry() -> None:
    assert state_json(None) is None
    assert state_json(ACTIVE) == ACTIVE_JSON


def outcome(status: str) -> ActionOutcome:
    return ActionOutcome("a", "f", "s", "x", status)


@pytest.mark.parametrize(
    ("statuses", "ok", "changed", "failed"),
    [
        (["applied", "noop", "restored", "unchanged", "skipped", "dry-run"], True, 2, 0),
        (["applied", "failed"], False, 1, 1),
        (["target-changed"], False, 0, 0),
        (["unknown"], False, 0, 0),
        ([IRREVERSIBLE], False, 0, 0),
        ([], True, 0, 0),
    ],
)
def test_a_pass_is_ok_only_without_failures_changed_targets_unknown_outcomes_or_irreversible_undos(
    statuses: list[str], ok: bool, changed: int, failed: int
) -> None:
    report = ApplyReport(None, tuple(outcome(s) for s in statuses))
    assert (report.ok, report.changed, len(report.failed)) == (ok, changed, failed)
    assert all(o.status == "failed" for o in report.failed)


def test_a_refused_pass_is_not_ok() -> None:
    assert not ApplyReport("blast-radius cap", ()).ok
