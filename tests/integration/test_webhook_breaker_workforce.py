"""The webhook's share of terminations is of the workforce, not of everybody ever stored.

Terminations are sticky: the stored people hold every leaver HR ever listed. Counted against
them, the share of people terminated through the webhook since the last HR read shrank every year
(design.md: the share of the workforce), so a burst of bad events revoked people a young install
would have refused. The workforce is the people not terminated before these events.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import HREvent, HREventType, Job, JobKind, JobState
from offboard_audit.core.runs import RunResult
from offboard_audit.core.stored import PersonState
from offboard_audit.engine.hr import webhook_breaker
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id
from tests.support.configs import config_with
from tests.support.fakes import T0, leaver, person

NOW = T0 + timedelta(days=10)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def _terminated_by_webhook(store: Store, ids: list[str]) -> None:
    """Events received after the HR read, each applied to its stored person."""
    for i, eid in enumerate(ids):
        at = NOW + timedelta(minutes=1 + i)
        job = Job(new_job_id(), JobKind.TERMINATE, eid, JobState.DONE, at, f"evt-{eid}")
        event = HREvent(f"evt-{eid}", HREventType.TERMINATED, eid, None, at, at, at, "{}")
        assert WebhookStore(store).accept(event, job)


def _world(store: Store, at_work: int, gone: int) -> None:
    people = [person(f"E{i}") for i in range(at_work)]
    people += [leaver(f"L{i}", T0 - timedelta(days=400)) for i in range(gone)]
    store.save_person_states("hr", (), [PersonState(p, p) for p in people], "r-0")
    store.start_run("r-audit", NOW, "audit")
    assert store.finish_run(RunResult("r-audit", NOW, NOW + timedelta(minutes=1), (), (), None))


def _terminate(store: Store, ids: list[str]) -> None:
    before = store.load_person_states()
    after = [
        PersonState(leaver(s.person.employee_id, NOW), s.hr_row, NOW, "webhook")
        if s.person.employee_id in ids
        else s
        for s in before
    ]
    store.save_person_states("hr", before, after, "r-1")
    _terminated_by_webhook(store, ids)


def test_leavers_stored_long_ago_do_not_dilute_the_webhook_share(tmp_path: Path, store: Store) -> None:
    _world(store, at_work=100, gone=100)
    ids = [f"E{i}" for i in range(8)]  # 8 of the 100 at work: 8%, above 5%
    _terminate(store, ids)
    last = [leaver("E7", NOW)]
    reason = webhook_breaker(store, [person("E7")], last, config_with(tmp_path), NOW + timedelta(hours=1))
    assert reason is not None and "8 of 100 people (8.0%)" in reason


def test_five_percent_of_the_workforce_is_allowed_however_many_left_long_ago(
    tmp_path: Path, store: Store
) -> None:
    _world(store, at_work=100, gone=100)
    ids = [f"E{i}" for i in range(5)]
    _terminate(store, ids)
    last = [leaver("E4", NOW)]
    assert (
        webhook_breaker(store, [person("E4")], last, config_with(tmp_path), NOW + timedelta(hours=1)) is None
    )
