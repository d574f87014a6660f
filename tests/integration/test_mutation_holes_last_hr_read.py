"""``last_hr_read``: when the newest full run that read HR (and finished reading) started.

The webhook's circuit breaker counts the terminations received since then, and old webhook event
ids are pruned only before it. A run about one person (``targeted``) is not an HR read. (Issue 10: mutation survivors of
``engine/hr.py``.) In process, on SQLite, runs recorded through the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from offboard_audit.core.runs import RunResult, RunStatus
from offboard_audit.engine.hr import last_hr_read
from offboard_audit.storage.store import Store

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'runs.db'}")


def record(store: Store, run_id: str, kind: str, started: datetime, status: RunStatus | None = None) -> None:
    """A run of ``kind`` that read nothing; finished (``done`` by default) a minute after it started."""
    store.start_run(run_id, started, kind)
    assert store.finish_run(RunResult(run_id, started, started + timedelta(minutes=1), (), ()), status)


def test_no_run_at_all_means_no_hr_read(store: Store) -> None:
    assert last_hr_read(store) is None


def test_a_finished_audit_is_the_last_hr_read(store: Store) -> None:
    record(store, "r-audit", "audit", T)
    assert last_hr_read(store) == T


def test_a_targeted_run_after_the_audit_is_not_an_hr_read(store: Store) -> None:
    record(store, "r-audit", "audit", T)
    record(store, "r-one-person", "targeted", T + timedelta(hours=1))
    assert last_hr_read(store) == T


def test_the_newer_of_the_last_audit_and_the_last_hr_refresh_is_the_last_hr_read(store: Store) -> None:
    record(store, "r-audit", "audit", T)
    record(store, "r-refresh", "hr_refresh", T + timedelta(hours=2))
    record(store, "r-one-person", "targeted", T + timedelta(hours=3))
    assert last_hr_read(store) == T + timedelta(hours=2)


@pytest.mark.parametrize("status", [RunStatus.DONE, RunStatus.DEGRADED, RunStatus.FAILED_SOURCES])
def test_a_run_that_finished_reading_counts_even_when_a_source_failed_or_degraded(
    store: Store, status: RunStatus
) -> None:
    record(store, "r-old", "audit", T)
    record(store, "r-new", "audit", T + timedelta(hours=1), status)
    assert last_hr_read(store) == T + timedelta(hours=1)
