"""A schedule whose days are "day of month or day of week" (an OrTrigger) survives the daemon's
persistent job store: stored, read back by the next scheduler, kept as it is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from offboard_audit.daemon.scheduler import ensure_job

UTC_ZONE = ZoneInfo("UTC")
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def scheduled(kind: str) -> None:
    """What the stored job names (never called: the schedulers stay paused)."""


def _scheduler(db: Path) -> BackgroundScheduler:
    sched = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")}, timezone=UTC_ZONE
    )
    sched.start(paused=True)
    return sched


def test_an_either_day_schedule_is_stored_read_back_and_kept_by_the_next_scheduler(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    first = _scheduler(db)
    try:
        ensure_job(first, "audit", "audit", "0 3 1 * mon", UTC_ZONE, scheduled)
        stored_at = first.get_job("audit").next_run_time
    finally:
        first.shutdown(wait=False)

    second = _scheduler(db)
    try:
        job = second.get_job("audit")
        assert type(job.trigger).__name__ == "OrTrigger"
        # The 1st of the month or a Monday, as read back from the database.
        after_saturday = job.trigger.get_next_fire_time(None, SATURDAY)
        assert after_saturday == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # Monday 30th
        after_monday = job.trigger.get_next_fire_time(after_saturday, after_saturday.replace(hour=4))
        assert after_monday == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # Tuesday the 1st
        ensure_job(second, "audit", "audit", "0 3 1 * mon", UTC_ZONE, scheduled)
        assert second.get_job("audit").next_run_time == stored_at  # kept, not rescheduled
    finally:
        second.shutdown(wait=False)
