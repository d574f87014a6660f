"""The pure rules that change stored people (offboard_audit.core.people) and the HR circuit breaker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from offboard_audit.core.people import (
    ChangeOutcome,
    PersonChange,
    circuit_breaker_reason,
    decide_change,
    exceeds,
    merge_hr_read,
    merge_row,
    webhook_breaker_reason,
)
from offboard_audit.core.records import HRRead, Person, PersonStatus, RowProblem
from offboard_audit.core.stored import PersonState
from tests.support.fakes import leaver, person

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T1 = NOW - timedelta(days=3)
T2 = NOW - timedelta(days=1)


def read_state(row: object) -> PersonState:
    """A person as the last HR read stored them."""
    assert hasattr(row, "employee_id")
    return PersonState(row, row, None, "hr:hr run r0")  # type: ignore[arg-type]


def webhook_terminated(state: PersonState, at: datetime = T2) -> PersonState:
    p = replace(state.person, status=PersonStatus.TERMINATED, terminated_at=at)
    return replace(state, person=p, changed_at=at, changed_by="webhook evt-1 (employee.terminated)")


# --- merging a full HR read ----------------------------------------------------------------


def test_an_unchanged_row_keeps_what_a_webhook_changed_since() -> None:
    row = person("E2", "bob@example.com")
    state = webhook_terminated(read_state(row))
    assert merge_row(state, row, NOW, "hr:hr run r1") == state


def test_a_changed_status_in_the_row_wins_and_moves_the_status_clock() -> None:
    row = person("E2", "bob@example.com")
    state = webhook_terminated(read_state(row))
    new_row = leaver("E2", T1, email="bob@example.com")
    merged = merge_row(state, new_row, NOW, "hr:hr run r1")
    assert (merged.person.status, merged.person.terminated_at) == (PersonStatus.TERMINATED, T1)
    assert (merged.changed_at, merged.changed_by, merged.hr_row) == (NOW, "hr:hr run r1", new_row)


def test_a_row_changed_in_other_fields_only_keeps_the_webhook_status() -> None:
    row = person("E2", "bob@example.com", name="Bob")
    state = webhook_terminated(read_state(row))
    renamed = replace(row, name="Robert")
    merged = merge_row(state, renamed, NOW, "hr:hr run r1")
    assert merged.person.name == "Robert" and merged.person.status is PersonStatus.TERMINATED
    assert merged.changed_at == T2 and merged.changed_by.startswith("webhook")


def test_a_first_row_for_a_person_known_only_from_a_webhook_is_taken_as_it_is() -> None:
    from_event = PersonState(leaver("E9", T2, email="e9@example.com"), None, T2, "webhook evt-9")
    row = person("E9", "e9@example.com", name="Nine")
    merged = merge_row(from_event, row, NOW, "hr:hr run r1")
    assert merged.person == row and merged.changed_at == NOW


def test_merge_keeps_terminated_people_who_drop_out_and_removes_the_others() -> None:
    alice, bob, carol = person("E1"), leaver("E2", T1), person("E3")
    stored = [read_state(alice), read_state(bob), read_state(carol)]
    m = merge_hr_read("hr", stored, HRRead((alice,)), NOW, "hr:hr run r1")
    assert [s.person.employee_id for s in m.states] == ["E1", "E2"]
    assert m.kept_terminated == ("E2",) and [s.person.employee_id for s in m.dropped] == ["E3"]
    assert (m.missing, m.previous_read) == (2, 3)
    (kept,) = [s for s in m.states if s.person.employee_id == "E2"]
    assert kept.person == bob and kept.missing_since == NOW and not kept.in_last_read
    # On the next read bob is no longer "in the last read": not missing again, still kept.
    again = merge_hr_read("hr", m.states, HRRead((alice,)), NOW + timedelta(hours=1), "hr:hr run r2")
    assert (again.missing, again.previous_read) == (0, 1) and len(again.states) == 2


def test_merge_keeps_the_last_good_record_of_a_bad_row_and_people_known_only_from_webhooks() -> None:
    alice, bob = person("E1"), leaver("E2", T1)
    from_event = PersonState(leaver("E9", T2), None, T2, "webhook evt-9")
    stored = [read_state(alice), read_state(bob), from_event]
    problems = (RowProblem(3, "line 3: bad date", "E2"), RowProblem(4, "line 4: no id", ""))
    m = merge_hr_read("hr", stored, HRRead((alice,), problems), NOW, "hr:hr run r1")
    assert m.kept_bad_rows == ("E2",) and m.missing == 0 and m.dropped == ()
    assert {s.person.employee_id: s for s in m.states}["E2"] == stored[1]
    assert from_event in m.states


def test_merge_leaves_other_sources_alone_and_adds_new_people() -> None:
    other = replace(read_state(person("X1")), person=person("X1", source="hr2"))
    m = merge_hr_read("hr", [other], HRRead((person("E1"),)), NOW, "hr:hr run r1")
    assert [s.person.employee_id for s in m.states] == ["E1"] and m.previous_read == 0
    assert m.states[0].changed_at is None


# --- HR webhook events -----------------------------------------------------------------------


def stored_org() -> list[PersonState]:
    return [
        read_state(person("E1", "alice@example.com")),
        read_state(person("E2", "bob@example.com")),
        read_state(leaver("E3", T1, email="carol@example.com")),
    ]


def terminate(eid: str, email: str | None = None, at: datetime = T2) -> PersonChange:
    return PersonChange(eid, PersonStatus.TERMINATED, at, email, effective_at=at, origin="webhook evt")


def test_an_unknown_id_with_somebody_elses_email_is_a_conflict() -> None:
    d = decide_change(stored_org(), terminate("E404", "Alice@Example.com"), "hr")
    assert d.outcome is ChangeOutcome.CONFLICT and "'E1'" in d.reason and d.after is None


def test_a_known_id_with_somebody_elses_email_is_a_conflict() -> None:
    d = decide_change(stored_org(), terminate("E2", "alice@example.com"), "hr")
    assert (
        d.outcome is ChangeOutcome.CONFLICT and d.before is not None and d.before.person.employee_id == "E2"
    )


def test_an_event_with_another_persons_email_alias_is_a_conflict() -> None:
    # alice@example.com is E1's address as an alias (matching links E1's accounts by it). An event
    # giving it to E2 (or to an unknown E404) would move E1's accounts to "ambiguous" and, for E2,
    # replace their own address: their accounts would no longer be theirs.
    e1 = read_state(person("E1", "alice.smith@example.com", aliases=("asmith", " Alice@Example.com ")))
    stored = [e1, read_state(person("E2", "bob@example.com"))]
    for eid in ("E2", "E404"):
        d = decide_change(stored, terminate(eid, "alice@example.com"), "hr")
        assert d.outcome is ChangeOutcome.CONFLICT and "'E1'" in d.reason and d.after is None, eid
    # A username alias is not an address: no conflict.
    d = decide_change(stored, terminate("E2", "asmith@example.com"), "hr")
    assert d.outcome is ChangeOutcome.APPLY


def test_an_event_email_in_another_unicode_form_is_still_the_stored_persons_address() -> None:
    # HR stores josé in NFC; an event may carry the address decomposed (e + U+0301), in another
    # case. For an unknown id it is a conflict with E4, not a new person with E4's address; for
    # E4 it is their own address, stored in the one form.
    stored = [*stored_org(), read_state(person("E4", "jos\u00e9@example.com"))]
    d = decide_change(stored, terminate("E404", "JOSE\u0301@example.com"), "hr")
    assert d.outcome is ChangeOutcome.CONFLICT and "'E4'" in d.reason and d.after is None
    d = decide_change(stored, terminate("E4", "JOSE\u0301@example.com"), "hr")
    assert d.outcome is ChangeOutcome.APPLY and d.after is not None
    assert d.after.person.email == "jos\u00e9@example.com"


def test_the_persons_own_email_or_none_is_no_conflict() -> None:
    for email in ("BOB@example.com", None):
        d = decide_change(stored_org(), terminate("E2", email), "hr")
        assert d.outcome is ChangeOutcome.APPLY and d.after is not None
        assert d.after.person.employee_id == "E2" and d.after.person.email == "bob@example.com"
        assert (d.after.changed_at, d.after.changed_by) == (T2, "webhook evt")
        assert d.after.hr_row == d.before.hr_row  # type: ignore[union-attr]


def test_an_unknown_id_that_is_a_stored_id_in_another_case_is_a_conflict_not_a_new_person() -> None:
    for named in ("e2", "e2\t"):
        d = decide_change(stored_org(), terminate(named, None), "hr")
        assert d.outcome is ChangeOutcome.CONFLICT and d.after is None, named
        assert f"{named!r}" in d.reason and "'E2'" in d.reason
    d = decide_change(stored_org(), terminate("e2", None), "hr")
    assert d.reason == (
        "the event names employee 'e2' but the stored person is 'E2' (HR source hr): employee ids "
        "that differ only in case or spaces are not told apart; nothing changed; correct the event "
        "or the HR record"
    )


def test_a_person_known_by_neither_id_nor_email_is_recorded() -> None:
    d = decide_change(stored_org(), terminate("E77", "New@Example.com"), "hr")
    assert d.outcome is ChangeOutcome.APPLY and d.before is None and d.after is not None
    assert d.after.person.email == "new@example.com" and d.after.person.source == "hr"
    assert d.after.hr_row is None and d.after.changed_at == T2


def test_an_update_for_nobody_does_nothing_and_an_update_keeps_the_status_clock() -> None:
    update = PersonChange("E77", None, None, "x@example.com", effective_at=NOW)
    assert decide_change(stored_org(), update, "hr").outcome is ChangeOutcome.UNKNOWN
    stored = [webhook_terminated(s) if s.person.employee_id == "E2" else s for s in stored_org()]
    d = decide_change(stored, PersonChange("E2", None, None, "robert@example.com", effective_at=NOW), "hr")
    assert d.after is not None and d.after.person.email == "robert@example.com"
    assert d.after.person.status is PersonStatus.TERMINATED and d.after.changed_at == T2


def test_a_status_event_older_than_the_last_applied_change_is_superseded() -> None:
    stored = [webhook_terminated(s, T2) if s.person.employee_id == "E2" else s for s in stored_org()]
    rehire = PersonChange("E2", PersonStatus.ACTIVE, None, None, effective_at=T1)
    d = decide_change(stored, rehire, "hr")
    assert d.outcome is ChangeOutcome.SUPERSEDED and "employee.terminated" in d.reason
    # The same instant is not older: a retry of the same change applies (idempotent).
    assert decide_change(stored, terminate("E2", at=T2), "hr").outcome is ChangeOutcome.APPLY
    # A person whose status clock is unknown (never changed since the first read) takes any event.
    assert decide_change(stored_org(), rehire, "hr").outcome is ChangeOutcome.APPLY


def test_an_id_in_two_hr_sources_resolves_to_the_default_source() -> None:
    a = read_state(person("E1", "alice@example.com", source="contractors"))
    b = read_state(person("E1", "alice@example.com", source="hr"))
    d = decide_change([a, b], terminate("E1"), "hr")
    assert d.after is not None and d.after.person.source == "hr"


# --- the circuit breaker -------------------------------------------------------------------


def test_exceeds_needs_both_the_share_and_more_than_the_minimum_count() -> None:
    assert not exceeds(3, 10, 0.05, 3)  # 30% but only 3
    assert exceeds(4, 10, 0.05, 3)
    assert not exceeds(5, 100, 0.05, 3)  # exactly 5% is allowed
    assert exceeds(6, 100, 0.05, 3)
    assert exceeds(1, 10, 0.05, 0)
    assert not exceeds(1, 0, 0.05, 0)


def test_breaker_counts_missing_people_of_the_last_read() -> None:
    staff = [person(f"E{i}") for i in range(20)]
    assert circuit_breaker_reason(staff, staff, [], 0.05, NOW, missing=3, previous_read=20) is None
    reason = circuit_breaker_reason(staff, staff, [], 0.05, NOW, missing=4, previous_read=20)
    assert reason is not None and "4 of the 20 people" in reason and "max_missing_people" in reason
    assert (
        circuit_breaker_reason(staff, staff, [], 0.05, NOW, missing=4, previous_read=20, max_missing=0.25)
        is None
    )


def test_breaker_for_new_terminations_honours_min_breaker_count() -> None:
    staff = [person(f"E{i}") for i in range(10)]
    one = [leaver("E0", T1), *staff[1:]]
    four = [leaver(f"E{i}", T1) if i < 4 else p for i, p in enumerate(staff)]
    assert circuit_breaker_reason(staff, one, [], 0.05, NOW) is None
    reason = circuit_breaker_reason(staff, four, [], 0.05, NOW)
    assert reason is not None and "4 of 10 people" in reason and "min_breaker_count = 3" in reason
    assert circuit_breaker_reason(staff, one, [], 0.05, NOW, min_count=0) is not None


def test_a_mass_termination_dated_in_the_future_trips_the_breaker_on_the_read_that_brings_it() -> None:
    # A bad feed marks half the staff terminated "tomorrow". Counted only once departed, it was
    # never counted: on the read that brought it nobody had left yet, and by the next read the
    # stored people (that read, accepted) already held them terminated, so not "newly".
    staff = [person(f"E{i}") for i in range(20)]
    tomorrow = NOW + timedelta(days=1)
    bad = [leaver(f"E{i}", tomorrow) if i < 10 else p for i, p in enumerate(staff)]
    reason = circuit_breaker_reason(staff, bad, [], 0.05, NOW)
    assert reason is not None and "10 of 20 people" in reason
    # Once accepted (stored as the baseline), the day they leave is no new termination.
    assert circuit_breaker_reason(bad, bad, [], 0.05, NOW + timedelta(days=2)) is None


def test_a_future_dated_termination_taken_into_the_baseline_is_counted_when_it_first_appears() -> None:
    # Through the merge the pipeline uses: the read with the future dates, then the same export
    # once the date has passed. One of the two reads must trip.
    staff = [person(f"E{i}") for i in range(20)]
    stored = [read_state(p) for p in staff]
    tomorrow = NOW + timedelta(days=1)
    bad = HRRead(people=tuple(leaver(f"E{i}", tomorrow) if i < 10 else p for i, p in enumerate(staff)))
    first = merge_hr_read("hr", stored, bad, NOW, "hr:hr run r1")
    tripped = circuit_breaker_reason(staff, first.people, [], 0.05, NOW)
    later = NOW + timedelta(days=2)
    second = merge_hr_read("hr", first.states, bad, later, "hr:hr run r2")
    tripped_later = circuit_breaker_reason(first.people, second.people, [], 0.05, later)
    assert tripped is not None or tripped_later is not None


def test_people_who_left_before_the_last_good_read_are_not_the_workforce_the_share_is_of() -> None:
    # Terminations are sticky and exports list leavers for years: 100 at work, 100 long gone.
    # A bad feed terminating 8 of the 100 at work is 8% of the workforce, over 5%; counted
    # against everybody ever listed (200) it was 4% and revoked them all.
    gone = [leaver(f"L{i}", T1 - timedelta(days=400)) for i in range(100)]
    staff = [person(f"E{i}") for i in range(100)]
    bad = [leaver(f"E{i}", T1) if i < 8 else p for i, p in enumerate(staff)]
    reason = circuit_breaker_reason([*gone, *staff], [*gone, *bad], [], 0.05, NOW)
    assert reason is not None and "8 of 100 people (8.0%)" in reason
    # 5 of the 100 at work is exactly 5%: allowed, however many left long ago.
    five = [leaver(f"E{i}", T1) if i < 5 else p for i, p in enumerate(staff)]
    assert circuit_breaker_reason([*gone, *staff], [*gone, *five], [], 0.05, NOW) is None


# --- the breaker: leavers listed as not terminated again --------------------------------------


def test_a_feed_that_lists_every_leaver_as_active_again_trips_the_breaker() -> None:
    # An export job that reset every status to 'active': the 10 leavers of the last good read
    # come back. Nobody is newly terminated or missing, so only the rehires can tell; counted as a
    # share of the 100 at work (10%) the same flip of 4 leavers would be 4% and pass.
    gone = [leaver(f"L{i}", T1 - timedelta(days=400)) for i in range(10)]
    staff = [person(f"E{i}") for i in range(100)]
    flipped = [person(f"L{i}") for i in range(10)]
    reason = circuit_breaker_reason([*gone, *staff], [*flipped, *staff], [], 0.05, NOW)
    assert reason is not None
    assert "10 of 10 people terminated in the last good HR read (100.0%) are active again" in reason
    assert "max_rehires = 5.0%" in reason and "min_breaker_count = 3" in reason
    # On leave is not terminated either.
    on_leave = [person(f"L{i}", status=PersonStatus.ON_LEAVE) for i in range(10)]
    assert "10 of 10 people terminated" in (
        circuit_breaker_reason([*gone, *staff], [*on_leave, *staff], [], 0.05, NOW) or ""
    )


def test_one_rehire_among_many_leavers_does_not_trip_the_breaker() -> None:
    gone = [leaver(f"L{i}", T1) for i in range(100)]
    staff = [person(f"E{i}") for i in range(20)]
    one = [person("L0"), *gone[1:]]
    assert circuit_breaker_reason([*gone, *staff], [*one, *staff], [], 0.05, NOW) is None
    # Leavers who stay terminated, or drop out of the read (kept as terminated), are no rehires.
    assert circuit_breaker_reason([*gone, *staff], [*gone, *staff], [], 0.05, NOW, min_count=0) is None


def test_rehires_trip_above_max_rehires_of_the_leavers_not_at_it() -> None:
    gone = [leaver(f"L{i}", T1) for i in range(100)]
    staff = [person(f"E{i}") for i in range(20)]

    def back(n: int) -> list[Person]:
        return [person(f"L{i}") if i < n else p for i, p in enumerate(gone)]

    assert circuit_breaker_reason([*gone, *staff], [*back(5), *staff], [], 0.05, NOW) is None  # exactly 5%
    reason = circuit_breaker_reason([*gone, *staff], [*back(6), *staff], [], 0.05, NOW)
    assert reason is not None and "6 of 100 people terminated in the last good HR read (6.0%)" in reason
    assert circuit_breaker_reason([*gone, *staff], [*back(6), *staff], [], 0.05, NOW, max_rehires=0.1) is None
    assert (
        circuit_breaker_reason([*gone, *staff], [*back(6), *staff], [], 0.05, NOW, max_rehires=None) is None
    )


def test_rehires_honour_min_breaker_count() -> None:
    gone = [leaver(f"L{i}", T1) for i in range(10)]
    staff = [person(f"E{i}") for i in range(20)]
    three = [person(f"L{i}") if i < 3 else p for i, p in enumerate(gone)]  # 30%, but only 3
    four = [person(f"L{i}") if i < 4 else p for i, p in enumerate(gone)]
    assert circuit_breaker_reason([*gone, *staff], [*three, *staff], [], 0.05, NOW) is None
    assert "4 of 10 people terminated" in (
        circuit_breaker_reason([*gone, *staff], [*four, *staff], [], 0.05, NOW) or ""
    )
    one = [person("L0"), *gone[1:]]
    reason = circuit_breaker_reason([*gone, *staff], [*one, *staff], [], 0.05, NOW, min_count=0)
    assert reason is not None and "1 of 10 people terminated" in reason and "min_breaker_count = 0" in reason


def test_a_flip_through_the_merge_trips_while_a_webhook_termination_left_alone_does_not_count() -> None:
    # Through the merge the pipeline uses. E0 was terminated by a webhook after the last read and
    # its unchanged active row keeps the termination: no rehire. The 5 leavers whose rows now say
    # active are.
    gone = [leaver(f"L{i}", T1) for i in range(5)]
    staff = [person(f"E{i}") for i in range(20)]
    stored = [read_state(p) for p in [*gone, *staff]]
    stored[5] = webhook_terminated(stored[5])
    previous = [s.person for s in stored]
    flipped = HRRead(people=tuple([*(person(f"L{i}") for i in range(5)), *staff]))
    merged = merge_hr_read("hr", stored, flipped, NOW, "hr:hr run r1")
    reason = circuit_breaker_reason(previous, merged.people, [], 0.05, NOW)
    assert reason is not None and "5 of 6 people terminated in the last good HR read" in reason
    same = merge_hr_read("hr", stored, HRRead(people=tuple([*gone, *staff])), NOW, "hr:hr run r1")
    assert circuit_breaker_reason(previous, same.people, [], 0.05, NOW, min_count=0) is None


def test_a_webhook_rehire_event_is_no_flipped_feed() -> None:
    # One signed event about one person: 1 of the 1 leaver it concerns, not a share of a feed.
    # Judged like a read, it was 1 of 1 (100%) and, with min_breaker_count = 0, held the rehire.
    assert (
        webhook_breaker_reason([leaver("L0", T1)], [person("L0")], 0, 0.05, NOW, min_count=0, workforce=30)
        is None
    )
