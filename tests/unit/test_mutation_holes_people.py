"""The pure rules that change stored people: holes mutation testing found (issue 10, batch 3).

``decide_change`` (the per-person status clock, superseded events, conflicts, people recorded from
an event), ``PersonChange`` refusing naive times, ``merge_row`` (a kept termination listed again,
bad rows) and ``webhook_breaker_reason`` passing its ``min_breaker_count`` on. Expected reasons are
written out by hand: the daemon shows them as a job's detail or error.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offboard_audit.core.people import (
    ChangeOutcome,
    PersonChange,
    decide_change,
    merge_row,
    webhook_breaker_reason,
)
from offboard_audit.core.records import Person, PersonStatus
from offboard_audit.core.stored import PersonState
from tests.support.fakes import leaver, person

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T1 = NOW - timedelta(days=3)
T2 = NOW - timedelta(days=1)
ORIGIN = "webhook evt-5 (employee.terminated)"


def read_state(row: object) -> PersonState:
    """A person as the last HR read stored them."""
    assert hasattr(row, "employee_id")
    return PersonState(row, row, None, "hr:hr run r0")  # type: ignore[arg-type]


def stored_org() -> list[PersonState]:
    return [
        read_state(person("E1", "alice@example.com")),
        read_state(person("E2", "bob@example.com")),
    ]


def bob_terminated_by_webhook(changed_by: str = "webhook evt-1 (employee.terminated)") -> list[PersonState]:
    """bob (E2), terminated through the webhook at T2: his status clock reads T2."""
    alice, bob = stored_org()
    bob = replace(
        bob,
        person=replace(bob.person, status=PersonStatus.TERMINATED, terminated_at=T2),
        changed_at=T2,
        changed_by=changed_by,
    )
    return [alice, bob]


# --- decide_change: what each outcome says -----------------------------------------------------


def test_a_conflict_names_both_employees_the_email_and_what_to_correct() -> None:
    change = PersonChange("E404", PersonStatus.TERMINATED, T2, "Alice@Example.com", T2, ORIGIN)
    d = decide_change(stored_org(), change, "hr")
    assert d.outcome is ChangeOutcome.CONFLICT
    assert d.reason == (
        "the event names employee 'E404' but its email alice@example.com belongs to employee 'E1' "
        "(HR source hr): nothing changed; correct the event or the HR record"
    )


def test_an_update_for_nobody_says_there_is_nobody_to_update() -> None:
    d = decide_change(stored_org(), PersonChange("E77", None, None, "x@example.com", T2), "hr")
    assert d.outcome is ChangeOutcome.UNKNOWN
    assert d.reason == "no stored person with employee id 'E77': nothing to update"
    assert (d.before, d.after) == (None, None)


def test_a_person_recorded_from_an_event_has_no_name_and_carries_the_events_origin() -> None:
    change = PersonChange("E77", PersonStatus.TERMINATED, T1, "New@Example.com", T2, ORIGIN)
    d = decide_change(stored_org(), change, "hr")
    assert d.outcome is ChangeOutcome.APPLY
    assert d.reason == "employee 'E77' was not known: recorded from the event"
    assert d.before is None and d.after is not None
    assert d.after.person.name == ""
    assert (d.after.hr_row, d.after.changed_at, d.after.changed_by) == (None, T2, ORIGIN)


def test_an_email_update_applies_to_the_stored_person_and_says_so() -> None:
    stored = stored_org()
    d = decide_change(stored, PersonChange("E2", None, None, "robert@example.com", T2, ORIGIN), "hr")
    assert d.outcome is ChangeOutcome.APPLY
    assert d.reason == "email updated"
    assert d.before == stored[1]  # the row the conditional write compares against
    assert d.after is not None and d.after.person.email == "robert@example.com"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(PersonStatus.TERMINATED, "terminated from the event"), (PersonStatus.ACTIVE, "active from the event")],
)
def test_a_status_change_says_which_status_came_from_the_event(status: PersonStatus, reason: str) -> None:
    d = decide_change(stored_org(), PersonChange("E2", status, None, None, T2, ORIGIN), "hr")
    assert d.outcome is ChangeOutcome.APPLY and d.reason == reason


# --- decide_change: a status change -------------------------------------------------------------


def test_a_termination_carrying_a_new_email_takes_the_email_too() -> None:
    change = PersonChange("E2", PersonStatus.TERMINATED, T2, "Robert@Example.com", T2, ORIGIN)
    d = decide_change(stored_org(), change, "hr")
    assert d.after is not None
    assert (d.after.person.status, d.after.person.email) == (PersonStatus.TERMINATED, "robert@example.com")


def test_a_status_change_without_effective_at_keeps_the_status_clock_it_found() -> None:
    # Nothing says when it took effect: the last applied change's time stays the clock, so an
    # older event is still superseded afterwards.
    rehire = PersonChange("E2", PersonStatus.ACTIVE, None, None, None, "job j-1")
    d = decide_change(bob_terminated_by_webhook(), rehire, "hr")
    assert d.outcome is ChangeOutcome.APPLY and d.after is not None
    assert d.after.person.status is PersonStatus.ACTIVE
    assert (d.after.changed_at, d.after.changed_by) == (T2, "job j-1")


# --- decide_change: a superseded event ----------------------------------------------------------


def test_a_superseded_event_resolves_to_the_stored_person_it_is_older_than() -> None:
    stored = bob_terminated_by_webhook()
    d = decide_change(stored, PersonChange("E2", PersonStatus.ACTIVE, None, None, T1, ORIGIN), "hr")
    assert d.outcome is ChangeOutcome.SUPERSEDED
    assert d.before == stored[1] and d.after is None
    assert d.person == stored[1].person


def test_a_superseded_event_says_unknown_when_nobody_is_named_for_the_last_change() -> None:
    d = decide_change(
        bob_terminated_by_webhook(changed_by=""),
        PersonChange("E2", PersonStatus.ACTIVE, None, None, T1, ORIGIN),
        "hr",
    )
    assert d.reason == (
        f"superseded: effective_at {T1.isoformat()} is before the last applied status change of "
        f"employee 'E2' at {T2.isoformat()} (unknown); nothing changed"
    )


# --- PersonChange refuses naive times -----------------------------------------------------------


@pytest.mark.parametrize("field", ["terminated_at", "effective_at"])
def test_a_person_change_refuses_a_naive_time_and_names_the_field(field: str) -> None:
    naive: dict[str, Any] = {field: datetime(2026, 5, 1, 12, 0)}
    with pytest.raises(ValueError, match=rf"^PersonChange\.{field} must be timezone-aware, got naive "):
        PersonChange("E2", PersonStatus.TERMINATED, **naive)


# --- merge_row: a kept termination listed again ---------------------------------------------------


def kept_leaver() -> tuple[PersonState, Person]:
    """bob left, dropped out of the export and was kept (sticky termination) since T2."""
    row = leaver("E2", T1, email="bob@example.com")
    return replace(read_state(row), missing_since=T2), row


def test_a_kept_leaver_listed_again_with_the_same_row_is_in_the_read_again_and_otherwise_unchanged() -> None:
    state, row = kept_leaver()
    merged = merge_row(state, row, NOW, "hr:hr run r2")
    assert merged == replace(state, missing_since=None)
    assert merged.in_last_read


def test_a_kept_leaver_listed_again_as_rehired_is_in_the_read_again_with_the_new_status() -> None:
    state, _ = kept_leaver()
    rehired = person("E2", "bob@example.com")
    merged = merge_row(state, rehired, NOW, "hr:hr run r2")
    assert merged.missing_since is None and merged.in_last_read
    assert (merged.person.status, merged.changed_at, merged.changed_by) == (
        PersonStatus.ACTIVE,
        NOW,
        "hr:hr run r2",
    )


# --- webhook_breaker_reason: the change's own terminations --------------------------------------


def test_the_changes_own_terminations_are_judged_with_the_policys_min_breaker_count() -> None:
    # 2 of 4 people (50 %) terminated by the change: above 20 % and above min_breaker_count 1
    # (though not above the default 3).
    before = [person("E1"), person("E2")]
    after = [leaver("E1", T1), leaver("E2", T1)]
    reason = webhook_breaker_reason(before, after, 0, 0.2, NOW, min_count=1, workforce=4)
    assert reason == (
        "2 of 4 people (50.0%) newly terminated since the last good HR read, "
        "above policy.max_new_terminations = 20.0% and policy.min_breaker_count = 1"
    )
