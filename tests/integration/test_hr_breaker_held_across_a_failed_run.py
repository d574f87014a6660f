"""A held HR circuit breaker outlives a full run that failed.

A full HR read that trips the breaker is not stored: the feed is in doubt until an operator
accepts it (``audit --accept-hr``), and a run about one person (the webhook) must not revoke
meanwhile. A later full run that raised (here the next export comes semicolon-separated, which
is a config error for the HR source) stored nothing and accepted nothing: the breaker still holds.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import JobState
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.runs import RunStatus
from offboard_audit.engine.hr import held_hr_breaker
from offboard_audit.engine.pipeline import Pipeline
from tests.support.configs import HR_CSV_HEADER
from tests.support.daemon_world import World, accept, world


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the world's own SQLite file."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def _trip(w: World) -> str:
    assert w.daemon.run_full("audit") is not None  # the baseline: 20 people, all active
    rows = ["E1,alice@example.com,Alice,active,,", "E2,bob@example.com,Bob,active,,"]
    rows += ["E3,carol@example.com,Carol,active,,"]
    rows += [
        f"S{i},s{i}@example.com,S{i},terminated,2026-01-01T00:00:00+00:00,"
        if i < 5
        else f"S{i},s{i}@example.com,S{i},active,,"
        for i in range(17)
    ]
    w.hr(HR_CSV_HEADER + "\n".join(rows) + "\n")
    w.clock.now += timedelta(minutes=15)  # runs are ordered by when they started
    tripped = w.daemon.run_full("audit")
    assert tripped is not None and tripped.circuit_breaker is not None
    return tripped.run_id


def _fail_a_full_run(w: World) -> None:
    """The next export is semicolon-separated: the HR source's columns are missing, the run raises."""
    w.clock.now += timedelta(minutes=15)
    text = (w.config.base_dir / "hr.csv").read_text()
    w.hr(text.replace(",", ";"))
    assert w.daemon.run_full("audit") is None  # failed: logged, counted, notified
    newest = w.store.latest_run("audit")
    assert newest is not None and newest.status is RunStatus.FAILED


def test_a_failed_full_run_does_not_release_the_held_hr_breaker(tmp_path: Path, db_url: str | None) -> None:
    w = world(tmp_path, staff=17, real_engine=True, db_url=db_url)
    tripped = _trip(w)
    _fail_a_full_run(w)
    held = held_hr_breaker(w.store)
    assert held is not None and f"since run {tripped}" in held


def test_a_webhook_termination_is_refused_after_a_failed_run_while_the_breaker_holds(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, staff=17, real_engine=True, db_url=db_url)
    _trip(w)
    _fail_a_full_run(w)

    done = w.daemon.run_job(accept(w, "E2").job_id)

    assert done is not None and done.state is JobState.FAILED, done
    assert "HR circuit breaker holds" in (done.error or "")
    assert w.changes() == []  # bob's keys stay: the real engine refused


def test_the_next_good_read_after_the_failed_run_still_trips_until_accepted(tmp_path: Path) -> None:
    # The baseline is still the first read: the tripped export, fixed again, trips again.
    w = world(tmp_path, staff=17, real_engine=True)
    _trip(w)
    text = (w.config.base_dir / "hr.csv").read_text()
    _fail_a_full_run(w)
    w.hr(text)
    w.clock.now += timedelta(minutes=15)
    again = w.daemon.run_full("audit")
    assert again is not None and again.circuit_breaker is not None
    pipeline = Pipeline(
        w.config, w.store, SourceContext(w.config.base_dir), instances={"tgt": w.tgt, "full": w.full}
    )
    result = pipeline.run(w.clock.now + timedelta(minutes=15), accept_hr=True)
    assert result.circuit_breaker is None and held_hr_breaker(w.store) is None
