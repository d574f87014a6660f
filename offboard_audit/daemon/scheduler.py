"""Leadership and the schedule: one replica, the leader, runs APScheduler.

Leadership is the ``daemon:leader`` session lock (``storage/locks.py``): on PostgreSQL an
advisory lock on a connection of its own, released by the server if the leader dies; on SQLite a
lease row renewed at every step. The other replicas retry every ``poll_interval`` and take over.

APScheduler 3.11 keeps its jobs in a SQLAlchemy job store (table ``apscheduler_jobs``) in the
configured database: a restart keeps the next run times, missed runs are coalesced into one
(``coalesce=True``, ``max_instances=1``) and run if no later than ``schedule.misfire_grace_time``.
An existing job is kept as stored unless its cron changed.

A leader that dies in the middle of a scheduled run leaves its tick ``running``
(``storage/outbox.py``, ``daemon_ticks``). The next leader, before it starts the schedule, marks
such a tick and its run ``abandoned`` and moves the job's next run time back to the missed tick:
APScheduler then runs it at once if it is no later than ``misfire_grace_time`` (and skips it,
logging the misfire, when it is).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from offboard_audit.config.sections import ScheduleConfig
from offboard_audit.core.cron import parse_cron
from offboard_audit.core.errors import ConfigError
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.storage.locks import LEADER, HeldLock, Locks

# The daemon's lines keep the logger they had before service.py was split (see jobs.py).
log = logging.getLogger("offboard_audit.daemon.service")

APSCHEDULER_TABLE = "apscheduler_jobs"
AUDIT_JOB_ID = "offboard-audit:audit"
HR_REFRESH_JOB_ID = "offboard-audit:hr_refresh"


def cron_trigger(cron: str, tz: ZoneInfo) -> Any:
    """The APScheduler trigger that fires when cron would (``core/cron.py``): one
    ``CronTrigger``, or an ``OrTrigger`` of two when day of month and day of week are both
    restricted (cron fires on a day that matches either)."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    triggers = [CronTrigger(timezone=tz, **fields) for fields in parse_cron(cron).trigger_fields()]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


def schedule_trigger(kind: str, cron: str, tz: ZoneInfo, now: datetime) -> Any:
    """The trigger of ``schedule.<kind>``; ConfigError naming that key when ``cron`` is not a
    cron expression or never fires after ``now`` (APScheduler would store such a job paused and
    never run it: a schedule that silently never runs)."""
    try:
        trigger = cron_trigger(cron, tz)
    except ValueError as exc:
        raise ConfigError(f"not a valid cron expression {cron!r}: {exc}", key=f"schedule.{kind}") from None
    if trigger.get_next_fire_time(None, now) is None:
        raise ConfigError(f"{cron!r} never fires (no such date)", key=f"schedule.{kind}")
    return trigger


def next_fire_times(trigger: Any, now: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` times (or fewer, if it stops firing) ``trigger`` fires after ``now``:
    what ``config check`` shows, so a reader sees which days an expression means."""
    times: list[datetime] = []
    previous: datetime | None = None
    at = now
    while len(times) < count:
        nxt = trigger.get_next_fire_time(previous, at)
        if nxt is None:
            break
        times.append(nxt)
        previous, at = nxt, nxt + timedelta(microseconds=1)
    return times


def ensure_job(
    sched: Any, job_id: str, kind: str, cron: str, tz: ZoneInfo, func: Callable[[str], None]
) -> None:
    """Keep a stored job as it is (its persisted next run time survives restarts) unless its
    trigger changed (the cron expression, or how it is read: a job stored with APScheduler's
    reading of day-of-week numbers is rescheduled with cron's); add it when missing."""
    trigger = schedule_trigger(kind, cron, tz, datetime.now(tz))
    existing = sched.get_job(job_id)
    if existing is None:
        sched.add_job(func, trigger, id=job_id, name=f"{kind} reconcile", args=[kind])
        log.info("scheduled %s: %s", kind, cron)
    elif str(existing.trigger) != str(trigger):
        sched.reschedule_job(job_id, trigger=trigger)
        log.info("rescheduled %s: %s", kind, cron)
    else:
        log.info("kept the stored %s schedule (next run %s)", kind, existing.next_run_time)


class Schedule:
    """APScheduler with its persistent job store; ``func(kind)`` is what a stored job calls.

    APScheduler stores a job as a textual reference to ``func``, so ``func`` must be a
    module-level function that stays where it is (``service.scheduled_reconcile``).
    """

    def __init__(
        self, engine: Engine, config: ScheduleConfig, tz: ZoneInfo, func: Callable[[str], None]
    ) -> None:
        self.engine = engine
        self.config = config
        self.tz = tz
        self.func = func
        self._scheduler: Any = None

    def start(self, rerun: Sequence[tuple[str, datetime]] = ()) -> None:
        """Start APScheduler; ``rerun``: (kind, scheduled time) of ticks a dead leader abandoned,
        run again now if no later than the misfire grace time."""
        from apscheduler.executors.pool import ThreadPoolExecutor as APThreadPool
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=APSCHEDULER_TABLE)},
            executors={"default": APThreadPool(2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(self.config.misfire_grace_time.total_seconds())),
            },
            timezone=self.tz,
        )
        # Add/check jobs before the scheduler starts processing them.
        sched.start(paused=True)
        ensure_job(sched, AUDIT_JOB_ID, "audit", self.config.audit, self.tz, self.func)
        if self.config.hr_refresh:
            ensure_job(sched, HR_REFRESH_JOB_ID, "hr_refresh", self.config.hr_refresh, self.tz, self.func)
        elif sched.get_job(HR_REFRESH_JOB_ID) is not None:
            sched.remove_job(HR_REFRESH_JOB_ID)
        for kind, at in rerun:
            job = sched.get_job(AUDIT_JOB_ID if kind == "audit" else HR_REFRESH_JOB_ID)
            if job is None:
                continue
            when = at.astimezone(self.tz)
            if job.next_run_time is None or when < job.next_run_time:
                job.modify(next_run_time=when)
                log.warning(
                    "re-running the abandoned %s tick of %s (misfire grace applies)", kind, when.isoformat()
                )
        sched.resume()
        self._scheduler = sched

    def stop(self) -> None:
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
            self._scheduler = None


@dataclass(eq=False)
class Leadership:
    """Takes and keeps the leader lock; while leader, runs the schedule and ``while_leader``
    (the due scheduled reconciles) at every step."""

    locks: Locks
    schedule: Schedule
    metrics: Metrics
    while_leader: Callable[[], object]
    _: KW_ONLY
    on_elected: Callable[[], Sequence[tuple[str, datetime]]] = lambda: ()
    node: str
    lease: float
    poll_interval: float
    _held: HeldLock | None = field(default=None, init=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def is_leader(self) -> bool:
        return self._held is not None

    def loop(self, stop: threading.Event) -> None:
        """Step every ``poll_interval`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("leadership step failed")
            stop.wait(self.poll_interval)

    def step(self) -> None:
        with self._mutex:
            if self._held is not None and not self._held.renew():
                log.warning("lost leadership; stopping the scheduler")
                self._drop()
            if self._held is None:
                # The lease is renewed at every step, not by a thread of its own.
                self._held = self.locks.try_acquire(LEADER, timedelta(seconds=self.lease))
                if self._held is not None:
                    self.metrics.set("offboard_audit_leader", 1)
                    log.info("node %s is the leader: starting the schedule", self.node)
                    try:
                        rerun = self.on_elected()
                    except Exception:
                        log.exception("could not settle the ticks of a previous leader")
                        rerun = ()
                    self.schedule.start(rerun)
        if self._held is not None:
            self.while_leader()

    def stop_schedule(self) -> None:
        self.schedule.stop()

    def release(self) -> None:
        """Stop the schedule and give leadership up."""
        with self._mutex:
            self._drop()

    def _drop(self) -> None:
        self.schedule.stop()
        if self._held is not None:
            self._held.release()
            self._held = None
        self.metrics.set("offboard_audit_leader", 0)
