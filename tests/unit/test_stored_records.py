"""The records the store keeps between runs (``core/stored.py``): the state JSON kept with every
action (what undo restores from), which statuses mean "revoked", and the checks on their times."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.records import CredentialKind, Finding, FindingStatus, Person, PersonStatus
from offboard_audit.core.runs import RunStatus
from offboard_audit.core.stored import (
    DONE_STATUSES,
    ActionRecord,
    ActionStatus,
    FindingUpdate,
    PersonState,
    RunInfo,
    StoredFinding,
    state_from_json,
    state_to_json,
)

T = datetime(2026, 3, 1, tzinfo=UTC)
NAIVE = datetime(2026, 3, 1)


def test_a_state_is_kept_as_json_with_its_data_as_pairs_and_reads_back_equal() -> None:
    state = ResourceState(
        exists=True, active=False, data=(("group", "admins"), ("group", "ops")), identity="uid-1"
    )
    text = state_to_json(state)
    assert text is not None
    assert json.loads(text) == {
        "exists": True,
        "active": False,
        "data": [["group", "admins"], ["group", "ops"]],
        "identity": "uid-1",
    }
    assert state_from_json(text) == state


def test_no_state_is_no_json_and_back() -> None:
    assert state_to_json(None) is None
    assert state_from_json(None) is None


def test_a_state_written_before_data_and_identity_were_kept_reads_back_without_them() -> None:
    assert state_from_json('{"exists": 1, "active": 0}') == ResourceState(
        exists=True, active=False, data=(), identity=None
    )


def test_stored_data_values_read_back_as_text() -> None:
    state = state_from_json('{"exists": true, "active": true, "data": [["count", 3]], "identity": null}')
    assert state == ResourceState(True, True, (("count", "3"),), None)


def test_only_applied_and_noop_mean_the_credential_is_revoked_by_this_action() -> None:
    assert {ActionStatus.APPLIED, ActionStatus.NOOP} == DONE_STATUSES
    assert [s for s in ActionStatus if s.done] == [ActionStatus.APPLIED, ActionStatus.NOOP]


def test_stored_status_values_are_the_documented_words() -> None:
    assert [s.value for s in ActionStatus] == [
        "planned",
        "intent",
        "applied",
        "noop",
        "failed",
        "undone",
        "skipped",
        "target-changed",
        "unknown",
        "restored",
        "unchanged",
    ]


def record(**changes: object) -> ActionRecord:
    values: dict[str, object] = {
        "source": "aws-main",
        "system": "aws",
        "scope": "111111111111",
        "account_id": "acct-bob",
        "username": "bob",
        "credential_id": "AKIA1",
        "credential_kind": CredentialKind.ACCESS_KEY,
        "detail": "key detail",
        "account_uid": "AIDA-bob",
        "action_id": "a-1",
        "plan_id": "p-1",
        "finding_id": "f-1",
        "action": "deactivate_key",
        "stage": Stage.DISABLE,
        "reversible": True,
        "person": "E7",
        "status": ActionStatus.APPLIED,
        "error": None,
        "prior_state": None,
        "result_state": None,
        "actor": "t",
        "undo_of": None,
        "created_at": T,
        "updated_at": T,
    }
    values.update(changes)
    return ActionRecord(**values)  # type: ignore[arg-type]


def test_an_action_targets_exactly_the_object_it_was_planned_for() -> None:
    assert record().target == ActionTarget(
        source="aws-main",
        system="aws",
        account_id="acct-bob",
        username="bob",
        credential_id="AKIA1",
        credential_kind=CredentialKind.ACCESS_KEY,
        detail="key detail",
        scope="111111111111",
        account_uid="AIDA-bob",
    )
    assert record().key == "f-1:deactivate_key"


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_an_action_with_a_naive_time_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"ActionRecord.{field} must be timezone-aware"):
        record(**{field: NAIVE})


def person(status: PersonStatus = PersonStatus.ACTIVE) -> Person:
    return Person(
        "E7", "bob@x.org", "Bob", status, T if status is PersonStatus.TERMINATED else None, source="hr"
    )


def test_a_person_is_keyed_by_source_and_employee_id_and_is_in_the_last_read_only_when_listed_and_not_missing() -> (
    None
):
    listed = PersonState(person(), hr_row=person())
    assert listed.key == ("hr", "E7")
    assert listed.in_last_read
    assert not PersonState(person(), hr_row=None).in_last_read
    assert not PersonState(person(), hr_row=person(), missing_since=T).in_last_read


@pytest.mark.parametrize("field", ["changed_at", "missing_since"])
def test_a_person_state_with_a_naive_time_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"PersonState.{field} must be timezone-aware"):
        PersonState(person(), **{field: NAIVE})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["started_at", "finished_at"])
def test_a_run_with_a_naive_time_is_refused(field: str) -> None:
    times = {"started_at": T, "finished_at": T, field: NAIVE}
    with pytest.raises(ValueError, match=f"RunInfo.{field} must be timezone-aware"):
        RunInfo("r-1", "audit", times["started_at"], times["finished_at"], RunStatus.DONE, None)


def test_a_stored_finding_with_a_naive_due_time_is_refused() -> None:
    with pytest.raises(ValueError, match=r"StoredFinding\.due_at must be timezone-aware"):
        StoredFinding("f-1", FindingStatus.OPEN, "s", "", "r", False, None, NAIVE, "uid")


def test_a_finding_update_counts_what_it_changes() -> None:
    assert FindingUpdate().counts() == {"new": 0, "changed": 0, "closed": 0}
    f: Finding = object()  # type: ignore[assignment]
    assert FindingUpdate(new=(f, f), changed=(), closed=()).counts() == {"new": 2, "changed": 0, "closed": 0}
