"""``webhook_breaker_reason``: when a run about one person (an HR webhook event) must not revoke.

Pure boundaries no other test pinned down (issue 10, mutation survivors): nobody stored before
the change, exactly one person stored before it, the change's own terminations judged against the
whole workforce (not only the people it concerns), and the webhook terminations exactly at the
share and exactly at ``min_breaker_count``. Expected messages are written out by hand.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from offboard_audit.core.people import webhook_breaker_reason
from offboard_audit.core.records import Person
from tests.support.fakes import T0, leaver, person

NOW = T0 + timedelta(days=1)
NO_HR_READ = "no HR read is stored yet: run a full reconcile before the webhook may revoke"


# --- nobody stored before the change --------------------------------------------------------


@pytest.mark.parametrize("workforce", [1, None], ids=["workforce-given", "workforce-from-after"])
def test_a_first_person_arriving_through_the_webhook_is_refused_as_no_hr_read_yet(
    workforce: int | None,
) -> None:
    reason = webhook_breaker_reason([], [leaver("E1")], 0, 0.5, NOW, min_count=3, workforce=workforce)
    assert reason == NO_HR_READ


def test_an_empty_workforce_is_refused_as_no_hr_read_yet() -> None:
    assert webhook_breaker_reason([], [], 0, 0.5, NOW, min_count=3, workforce=0) == NO_HR_READ


# --- exactly one person stored before the change ----------------------------------------------


@pytest.mark.parametrize("workforce", [1, None], ids=["workforce-given", "workforce-from-after"])
def test_one_person_stored_before_the_change_is_an_hr_read_and_their_termination_may_revoke(
    workforce: int | None,
) -> None:
    # Workforce 1, one termination: below min_breaker_count 3, so nothing trips.
    before, after = [person("E1")], [leaver("E1")]
    assert webhook_breaker_reason(before, after, 0, 0.5, NOW, min_count=3, workforce=workforce) is None


def test_two_stored_people_with_one_concerned_by_the_change_may_revoke() -> None:
    # ``before``/``after`` hold only the person the change concerns; the workforce is 2.
    assert (
        webhook_breaker_reason([person("E1")], [leaver("E1")], 0, 0.9, NOW, min_count=3, workforce=2) is None
    )


# --- the change's own terminations (the HR circuit breaker on the change) -----------------------


def test_terminations_in_the_change_above_share_and_count_trip_with_the_hr_breakers_message() -> None:
    ids = ["E1", "E2", "E3", "E4"]
    before = [person(e) for e in ids]
    after = [leaver(e) for e in ids]
    reason = webhook_breaker_reason(before, after, 0, 0.2, NOW, min_count=3, workforce=10)
    assert reason == (
        "4 of 10 people (40.0%) newly terminated since the last good HR read, "
        "above policy.max_new_terminations = 20.0% and policy.min_breaker_count = 3"
    )


def test_terminations_in_the_change_are_judged_against_the_whole_workforce_not_the_people_concerned() -> None:
    # 4 of 100 is 4 %, under 5 %: fine. (4 of the 4 people concerned would be 100 %.)
    ids = ["E1", "E2", "E3", "E4"]
    before = [person(e) for e in ids]
    after = [leaver(e) for e in ids]
    assert webhook_breaker_reason(before, after, 0, 0.05, NOW, min_count=3, workforce=100) is None


# --- terminations through the webhook since the last good HR read --------------------------------


def update_of_one() -> tuple[list[Person], list[Person]]:
    """E1's email changes: the change terminates nobody."""
    return [person("E1")], [person("E1", email="e1.new@example.com")]


def test_webhook_terminations_exactly_at_the_share_do_not_trip() -> None:
    before, after = update_of_one()
    # 2 of 10 is exactly 20 %: not above it.
    assert webhook_breaker_reason(before, after, 2, 0.2, NOW, min_count=1, workforce=10) is None


def test_webhook_terminations_above_the_share_trip_naming_count_share_and_both_limits() -> None:
    before, after = update_of_one()
    reason = webhook_breaker_reason(before, after, 3, 0.2, NOW, min_count=1, workforce=10)
    assert reason == (
        "3 of 10 people (30.0%) terminated through the HR webhook since the last good HR read, "
        "above policy.max_new_terminations = 20.0% and policy.min_breaker_count = 1"
    )


def test_webhook_terminations_exactly_at_min_breaker_count_do_not_trip_even_above_the_share() -> None:
    before, after = update_of_one()
    # 3 of 10 is 30 %, above 10 %, but not above min_breaker_count 3.
    assert webhook_breaker_reason(before, after, 3, 0.1, NOW, min_count=3, workforce=10) is None
    reason = webhook_breaker_reason(before, after, 4, 0.1, NOW, min_count=3, workforce=10)
    assert reason is not None and reason.startswith(
        "4 of 10 people (40.0%) terminated through the HR webhook"
    )
