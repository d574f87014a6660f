"""An HR refresh gives a termination dated in the future its targeted job once the date has passed.

HR exports list a termination ahead of its date (notice periods). The refresh that first reads it
finds nobody departed yet; the refresh after the date must find them newly departed (docs/daemon.md:
"Anyone it finds newly departed gets a targeted reconcile job"), not compare with the stored people
at its own time, which already hold the termination and call it departed too: the leaver then
waited for the next full audit, which may be a day away.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import JobKind
from offboard_audit.storage.webhook_store import WebhookStore
from tests.support.daemon_world import NOW, people_csv, world


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the world's own SQLite file."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def _carol_leaves_at(when: str) -> str:
    """The world's export (23 people) with carol (E3) terminated at ``when``."""
    active, terminated = (
        "E3,carol@example.com,Carol,active,,",
        f"E3,carol@example.com,Carol,terminated,{when},",
    )
    return people_csv(20).replace(active, terminated)


def test_a_refresh_after_the_termination_date_queues_the_leavers_job(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, staff=20, db_url=db_url)
    assert w.daemon.run_full("audit") is not None  # the baseline
    leaves = (NOW + timedelta(hours=1)).isoformat()
    w.hr(_carol_leaves_at(leaves))
    w.clock.now = NOW + timedelta(minutes=5)
    assert w.daemon.run_full("hr_refresh") is not None
    assert WebhookStore(w.store).jobs(employee_id="E3") == []  # not departed yet

    w.clock.now = NOW + timedelta(hours=1, minutes=5)  # the date has passed
    assert w.daemon.run_full("hr_refresh") is not None

    jobs = WebhookStore(w.store).jobs(employee_id="E3")
    assert [j.kind for j in jobs] == [JobKind.HR_REFRESH]


def test_a_leaver_departed_before_the_last_hr_read_gets_no_second_job(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, staff=20, db_url=db_url)
    assert w.daemon.run_full("audit") is not None
    w.hr(_carol_leaves_at((NOW + timedelta(hours=1)).isoformat()))
    w.clock.now = NOW + timedelta(hours=2)
    assert w.daemon.run_full("hr_refresh") is not None  # departed since the audit: her job
    w.clock.now = NOW + timedelta(hours=3)
    assert w.daemon.run_full("hr_refresh") is not None  # nothing new

    jobs = WebhookStore(w.store).jobs(employee_id="E3")
    assert [j.kind for j in jobs] == [JobKind.HR_REFRESH]


def test_a_refresh_that_failed_in_between_does_not_swallow_the_leavers_job(
    tmp_path: Path, db_url: str | None
) -> None:
    # The refresh that ran after the date read nothing (the export was missing): the next good
    # one still finds carol newly departed since the last read that stored people.
    w = world(tmp_path, staff=20, db_url=db_url)
    assert w.daemon.run_full("audit") is not None
    text = _carol_leaves_at((NOW + timedelta(hours=1)).isoformat())
    w.hr(text)
    w.clock.now = NOW + timedelta(minutes=5)
    assert w.daemon.run_full("hr_refresh") is not None
    (tmp_path / "hr.csv").unlink()
    w.clock.now = NOW + timedelta(hours=2)
    failed = w.daemon.run_full("hr_refresh")
    assert failed is not None and "HR source failed" in (failed.circuit_breaker or "")
    w.hr(text)
    w.clock.now = NOW + timedelta(hours=3)
    assert w.daemon.run_full("hr_refresh") is not None

    jobs = WebhookStore(w.store).jobs(employee_id="E3")
    assert [j.kind for j in jobs] == [JobKind.HR_REFRESH]
