"""The HR circuit breaker's arithmetic and messages (core/people.py): mutation survivors of the
run at f4ca798 (see docs/mutation-survivors.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offboard_audit.core.people import circuit_breaker_reason, exceeds
from tests.support.fakes import leaver, person

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEFT = NOW - timedelta(days=1)


def test_a_workforce_of_one_can_trip_the_breaker_when_the_minimum_count_is_zero() -> None:
    # policy.min_breaker_count = 0: every share counts, even of a single person.
    assert exceeds(1, 1, 0.05, 0)
    assert not exceeds(0, 1, 0.05, 0)


def test_without_missing_people_named_the_breaker_counts_none_missing() -> None:
    # The defaults are "nobody missing of no previous read": with min_count 0 any missing
    # person would trip it, so a default other than zero would refuse a sane read.
    staff = [person("E1")]
    assert circuit_breaker_reason(staff, staff, [], 0.05, NOW, min_count=0) is None
    assert (
        circuit_breaker_reason(staff, staff, [], 0.05, NOW, min_count=0, missing=1) is None
    )  # no previous read
    assert circuit_breaker_reason(staff, staff, [], 0.05, NOW, min_count=0, previous_read=1) is None


def test_every_failed_hr_source_is_named_comma_separated() -> None:
    staff = [person("E1")]
    reason = circuit_breaker_reason(staff, staff, ["workday", "contractors"], 0.05, NOW)
    assert reason == "HR source failed: workday, contractors"


def test_the_missing_share_is_missing_over_the_last_read_and_both_reasons_are_joined() -> None:
    before = [person(f"E{i}") for i in range(10)]
    # 5 of 10 newly left, and 4 of the 20 people of the last good read are missing.
    after = [leaver(f"E{i}", LEFT) if i < 5 else p for i, p in enumerate(before)]
    reason = circuit_breaker_reason(before, after, [], 0.05, NOW, missing=4, previous_read=20)
    assert reason == (
        "5 of 10 people (50.0%) newly terminated since the last good HR read, above "
        "policy.max_new_terminations = 5.0% and policy.min_breaker_count = 3; "
        "4 of the 20 people in the last good HR read (20.0%) are missing from this one and not terminated, above "
        "policy.max_missing_people = 5.0% and policy.min_breaker_count = 3"
    )
