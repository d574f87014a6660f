"""The daemon: scheduled full reconciles, the HR webhook and targeted reconciles in one process.

Replicas
    Every replica serves the webhook; one of them, the *leader*, runs the schedule. Leadership
    is a PostgreSQL session advisory lock held on a dedicated connection (released by the
    server if the process dies), or on SQLite a lease row in ``locks`` renewed every few
    seconds. The others retry and take over when the leader goes away. Each full reconcile
    also takes the ``reconcile:full`` lock and each targeted reconcile ``person:<id>``, so two
    processes (two replicas, or the daemon and ``daemon --once``) never run the same
    reconcile at once. Jobs and scheduled reconciles are claimed with conditional updates
    (see ``storage/webhook_store.py``), so none runs twice.

Job recovery
    A queued or running job is owned by one daemon instance (``node``) under a lease of
    ``webhook.job_lease``, renewed every ``job_lease / 3`` while this process holds the job.
    Every replica (not only the leader), at startup and then every ``min(poll_interval,
    job_lease / 3)`` seconds, takes over the jobs whose lease expired (their daemon died) with a
    conditional update, and runs them. The lease is ``[webhook] job_lease`` (default 30 s), or
    ``DaemonOptions.job_lease`` seconds when given.

Schedule
    APScheduler 3.11 with a SQLAlchemy job store (table ``apscheduler_jobs``) in the
    configured database: a restart keeps the next run times, missed runs are coalesced into
    one (``coalesce=True``, ``max_instances=1``) and run if no later than
    ``schedule.misfire_grace_time``. An existing job is kept as stored unless its cron changed.

Stopping
    SIGTERM/SIGINT: stop taking work, stop the scheduler and the web server, wait for the
    running reconcile or job to finish; if it has not finished by the deadline, record it as
    abandoned (job ``failed``, run ``abandoned``) and exit. Exit code 0 within 10 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, create_engine, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from offboard_audit.config import Config
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.jobs import EventStatus, HREvent, Job, JobAction, JobKind, JobState
from offboard_audit.core.people import ChangeOutcome, PersonChange
from offboard_audit.core.protocols import AccountSource, HRSource, SourceContext
from offboard_audit.core.records import Person, PersonStatus, RunResult, SourceStatus
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.notify import FailedAction, Notifier, run_messages
from offboard_audit.daemon.webhook import WebhookSettings, create_app
from offboard_audit.engine.hr import ChangeNotApplied
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from offboard_audit.storage.tables import LOCKS
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id

log = logging.getLogger(__name__)

APSCHEDULER_TABLE = "apscheduler_jobs"
AUDIT_JOB_ID = "offboard-audit:audit"
HR_REFRESH_JOB_ID = "offboard-audit:hr_refresh"
LEADER_LOCK = "daemon:leader"
FULL_LOCK = "reconcile:full"
DEFAULT_JOB_LEASE = 30.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# --- locks ---------------------------------------------------------------------------------


class Held(Protocol):
    def renew(self) -> bool: ...

    def release(self) -> None: ...


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"offboard-audit:{name}".encode()).digest()[:8], "big", signed=True)


class _PgLock:
    """A session advisory lock on its own connection: the server releases it if we die."""

    def __init__(self, conn: Connection, key: int) -> None:
        self._conn = conn
        self._key = key
        self._mutex = threading.Lock()

    def renew(self) -> bool:
        with self._mutex:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return True
            except Exception:
                return False

    def release(self) -> None:
        with self._mutex:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            except Exception:
                log.debug("advisory unlock failed (connection gone; the server released it)")
            finally:
                with contextlib.suppress(Exception):
                    self._conn.close()


class _LeaseLock:
    """A lease row in ``locks`` (SQLite has no advisory locks), renewed in the background."""

    def __init__(self, locks: DbLocks, name: str, ttl: float, auto_renew: bool) -> None:
        self._locks = locks
        self._name = name
        self._ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if auto_renew:
            self._thread = threading.Thread(target=self._loop, name=f"lease-{name}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            if not self.renew():
                log.warning("lost lease %s", self._name)
                return

    def renew(self) -> bool:
        return self._locks.lease(self._name, self._ttl)

    def release(self) -> None:
        self._stop.set()
        with self._locks.engine.begin() as conn:
            conn.execute(LOCKS.delete().where(LOCKS.c.name == self._name, LOCKS.c.holder == self._locks.node))


class DbLocks:
    """Named locks shared by every process on one database."""

    def __init__(self, engine: Engine, node: str, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.node = node
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"
        # Lock connections live as long as the lock: keep them out of the store's pool.
        self._pg_engine = create_engine(engine.url, poolclass=NullPool) if self.postgres else None

    def try_acquire(self, name: str, ttl: float = 30.0, auto_renew: bool = True) -> Held | None:
        if self._pg_engine is not None:
            conn = self._pg_engine.connect()
            try:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(name)}
                ).scalar()
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if not got:
                conn.close()
                return None
            return _PgLock(conn, _advisory_key(name))
        if not self.lease(name, ttl):
            return None
        return _LeaseLock(self, name, ttl, auto_renew)

    def acquire(
        self, name: str, timeout: float, stop: threading.Event | None = None, ttl: float = 30.0
    ) -> Held | None:
        """Wait up to ``timeout`` seconds for the lock (polling); None when it stayed taken."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            held = self.try_acquire(name, ttl)
            if held is not None:
                return held
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def lease(self, name: str, ttl: float) -> bool:
        """Take or extend the lease row; True when this node holds it now."""
        now = self.clock()
        expires = now + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            won = conn.execute(
                update(LOCKS)
                .where(LOCKS.c.name == name, (LOCKS.c.holder == self.node) | (LOCKS.c.expires_at <= now))
                .values(holder=self.node, acquired_at=now, expires_at=expires)
            ).rowcount
            if won:
                return True
            exists = conn.execute(select(LOCKS.c.name).where(LOCKS.c.name == name)).first()
        if exists:
            return False
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(LOCKS).values(name=name, holder=self.node, acquired_at=now, expires_at=expires)
                )
        except IntegrityError:
            return False
        return True

    @contextlib.contextmanager
    def holding(self, name: str, timeout: float = 0.0, ttl: float = 30.0) -> Iterator[bool]:
        held = self.try_acquire(name, ttl) if timeout <= 0 else self.acquire(name, timeout, ttl=ttl)
        try:
            yield held is not None
        finally:
            if held is not None:
                held.release()


def open_store(url: str) -> Store:
    """Open the database; ``Store.open`` serialises concurrent schema upgrades itself."""
    return Store.open(url)


# --- the process-wide slot for APScheduler ---------------------------------------------------

# APScheduler persists jobs by a textual reference to a module-level function, so the stored
# job calls ``scheduled_reconcile`` and this slot says which daemon of this process runs it.
_ACTIVE: list[Daemon] = []
_ACTIVE_LOCK = threading.Lock()


def scheduled_reconcile(kind: str) -> None:
    """Entry point of the persisted APScheduler jobs."""
    with _ACTIVE_LOCK:
        daemon = _ACTIVE[-1] if _ACTIVE else None
    if daemon is None:
        log.warning("scheduled %s fired with no daemon running in this process", kind)
        return
    daemon.run_full(kind)


# --- the daemon ------------------------------------------------------------------------------


class _TrackingStore(Store):
    """The store, remembering which runs this process started (to record them if abandoned)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.started: set[str] = set()
        self._mutex = threading.Lock()

    def start_run(self, run_id: str, started_at: datetime, kind: str = "audit") -> None:
        super().start_run(run_id, started_at, kind)
        with self._mutex:
            self.started.add(run_id)

    def abandon_runs(self, now: datetime) -> list[str]:
        with self._mutex:
            ids = list(self.started)
        return self.mark_abandoned(ids, now)


class RevocationEngineLike(Protocol):
    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> Any: ...

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> Any: ...


EngineFactory = Callable[[], RevocationEngineLike]


@dataclass(frozen=True)
class DaemonOptions:
    node: str = ""
    poll_interval: float = 2.0  # leadership retries and due-work checks
    lease_ttl: float = 15.0  # SQLite leases; PostgreSQL locks die with their connection
    workers: int = 4  # concurrent webhook jobs
    person_lock_timeout: float = 120.0
    stop_deadline: float = 7.0  # seconds after SIGTERM before running work is abandoned
    # Seconds a daemon owns a queued/running job without renewing; None: [webhook] job_lease
    # or 30. Also the SQLite lease of the ``person:<id>`` lock, so both free up together.
    job_lease: float | None = None
    serve_http: bool = True
    webhook: bool = True


@dataclass(frozen=True)
class RevokeSummary:
    refused: str | None
    actions: tuple[JobAction, ...]


@dataclass(frozen=True)
class _JobOutcome:
    state: JobState
    run_id: str | None = None
    detail: str = ""
    summary: RevokeSummary | None = None
    error: str | None = None


class Daemon:
    """One daemon process. ``serve()`` runs until SIGTERM/SIGINT or ``stop()``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        options: DaemonOptions = DaemonOptions(),
        *,
        secret: bytes | None = None,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        engine_factory: EngineFactory | None = None,
        instances: Mapping[str, HRSource | AccountSource] | None = None,
    ) -> None:
        if options.webhook and options.serve_http and not secret:
            raise ConfigError(
                f"the webhook needs its HMAC secret in ${config.webhook.secret_env} "
                "(or set [webhook] enabled = false, or run with --no-webhook)",
                key="webhook.secret_env",
            )
        try:
            self.tz = ZoneInfo(config.schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {config.schedule.timezone!r}", key="schedule.timezone"
            ) from None
        self.job_lease = (
            options.job_lease if options.job_lease is not None else config.webhook.job_lease.total_seconds()
        )
        if not self.job_lease > 0:
            raise ConfigError(f"the job lease must be more than 0 seconds, got {self.job_lease}")
        self.config = config
        self.store = _TrackingStore(store.engine)
        self.ctx = ctx
        self.options = options
        self.node = options.node or new_node_id()
        self.clock = clock
        self.secret = secret
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier(
            config.notifications,
            ctx.env,
            on_failure=lambda: self.metrics.inc("offboard_audit_notifications_failed_total"),
        )
        self.events = WebhookStore(self.store)
        self.pipeline = Pipeline(config, self.store, ctx, instances=instances)
        self.locks = DbLocks(self.store.engine, self.node, clock)
        self._engine: RevocationEngineLike | None = None
        self._engine_mutex = threading.Lock()
        self._engine_factory = engine_factory or self._default_engine
        self._pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="job")
        self._stop = threading.Event()
        self._stopping = False
        self._busy = 0
        self._busy_cv = threading.Condition()
        self._leader: Held | None = None
        self._owned: set[str] = set()  # jobs this process holds (queued in the pool or running)
        self._owned_mutex = threading.Lock()
        self._scheduler: Any = None
        self._server: Any = None

    # --- wiring ---------------------------------------------------------------------------

    def _default_engine(self) -> RevocationEngineLike:
        """One engine for the process: its revokers (and their API clients) are built once.

        The engine serialises its passes with the revocation lock, so sharing it is safe.
        """
        with self._engine_mutex:
            if self._engine is None:
                from offboard_audit.engine.revocation import RevocationEngine

                self._engine = RevocationEngine(
                    self.config, self.store, self.ctx, actor=f"daemon:{self.node}"
                )
            return self._engine

    def app(self) -> Any:
        settings = WebhookSettings(self.secret) if self.options.webhook and self.secret else None
        return create_app(
            store=self.store,
            events=self.events,
            runner=self,
            metrics=self.metrics,
            settings=settings,
            clock=self.clock,
            node=self.node,
            status=lambda: {"leader": self.is_leader, "stopping": self._stopping},
            job_lease=timedelta(seconds=self.job_lease),
        )

    @property
    def is_leader(self) -> bool:
        return self._leader is not None

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        with self._busy_cv:
            self._busy += 1
        try:
            yield
        finally:
            with self._busy_cv:
                self._busy -= 1
                self._busy_cv.notify_all()

    # --- jobs -----------------------------------------------------------------------------

    def _lease_until(self) -> datetime:
        return self.clock() + timedelta(seconds=self.job_lease)

    def _own(self, job_id: str) -> None:
        with self._owned_mutex:
            self._owned.add(job_id)

    def _disown(self, job_id: str) -> None:
        with self._owned_mutex:
            self._owned.discard(job_id)

    def submit(self, job_id: str) -> None:
        """JobRunner: run a queued job on the worker pool (never blocks the request)."""
        if self._stopping:
            log.info("not starting job %s: shutting down (it stays queued for another daemon)", job_id)
            return
        self._own(job_id)
        try:
            self._pool.submit(self.run_job, job_id)
        except RuntimeError:  # pool already shut down
            self._disown(job_id)
            log.info("not starting job %s: shutting down", job_id)

    def run_job(self, job_id: str) -> Job | None:
        """Run one queued job to completion; returns the finished job (None if someone else ran it)."""
        with self._working():
            if self._stopping or not self.events.start_job(
                job_id, self.clock(), self.node, self._lease_until()
            ):
                self._disown(job_id)
                return None
            job = self.events.job(job_id)
            assert job is not None
            return self._execute(job)

    def resume_job(self, job: Job) -> Job | None:
        """Run a job taken over while ``running`` (its daemon died) again, from the start.

        Safe: the targeted reconcile re-reads the sources, and the revocation engine is
        idempotent (a credential found already disabled is not changed again) and first settles
        any action the dead daemon left between its intent and its outcome (crash recovery), so
        nothing is applied twice.
        """
        with self._working():
            if self._stopping:
                self._disown(job.job_id)
                return None
            return self._execute(job)

    def _execute(self, job: Job) -> Job | None:
        """The body of a job this process owns (state ``running``); records its outcome."""
        job_id = job.job_id
        self._own(job_id)
        try:
            try:
                with self.locks.holding(
                    f"person:{job.employee_id}", self.options.person_lock_timeout, ttl=self.job_lease
                ) as got:
                    if not got:
                        raise TimeoutError(f"person {job.employee_id} stayed locked by another reconcile")
                    outcome = self._job_body(job)
                detail = outcome.detail
                if job.takeovers:
                    t = job.takeovers[-1]
                    detail = f"taken over from {t.previous_owner} (its lease expired); {detail}"
                recorded = self.events.finish_job(
                    job_id,
                    self.clock(),
                    outcome.state,
                    run_id=outcome.run_id,
                    detail=detail,
                    actions=outcome.summary.actions if outcome.summary else (),
                    error=outcome.error,
                    owner=self.node,
                )
            except Exception as exc:
                log.exception("job %s (%s for %s) failed", job_id, job.kind.value, job.employee_id)
                recorded = self.events.finish_job(
                    job_id,
                    self.clock(),
                    JobState.FAILED,
                    error=f"{type(exc).__name__}: {exc}",
                    owner=self.node,
                )
        finally:
            self._disown(job_id)
        if not recorded:
            log.warning("job %s was taken over by another daemon meanwhile; it records the outcome", job_id)
            return None
        finished = self.events.job(job_id)
        if finished is not None and finished.finished_at is not None:
            self.metrics.observe(
                "offboard_audit_webhook_job_seconds",
                (finished.finished_at - finished.created_at).total_seconds(),
                (("kind", job.kind.value), ("state", finished.state.value)),
            )
        return finished

    def renew_job_leases(self) -> set[str]:
        """Heartbeat: extend the lease of every job this process holds; returns those renewed."""
        with self._owned_mutex:
            owned = sorted(self._owned)
        renewed = self.events.renew_leases(self.node, owned, self._lease_until())
        for job_id in set(owned) - renewed:
            job = self.events.job(job_id)
            if job is not None and not job.state.final and job.node != self.node:
                log.warning("lost job %s to %s (our lease had expired)", job_id, job.node)
        return renewed

    def recover_jobs(self) -> list[str]:
        """Take over the queued and running jobs whose owner's lease expired, and run them."""
        if self._stopping:
            return []
        claimed = self.events.claim_orphaned(self.clock(), self.node, self._lease_until())
        for job in claimed:
            t = job.takeovers[-1]
            log.warning(
                "took over %s job %s for %s from %s (lease expired %s)",
                t.from_state.value,
                job.job_id,
                job.employee_id,
                t.previous_owner or "nobody",
                t.lease_expired_at.isoformat() if t.lease_expired_at else "never set",
            )
            self._own(job.job_id)
            try:
                if job.state is JobState.RUNNING:
                    self._pool.submit(self.resume_job, job)
                else:
                    self._pool.submit(self.run_job, job.job_id)
            except RuntimeError:  # shutting down: the lease runs out and someone else takes it
                self._disown(job.job_id)
        return [j.job_id for j in claimed]

    def _jobs_loop(self) -> None:
        """Every replica: renew our job leases and take over orphaned jobs, at once and then
        every ``min(poll_interval, job_lease / 3)`` seconds."""
        interval = min(self.options.poll_interval, self.job_lease / 3)
        while not self._stop.is_set():
            try:
                self.renew_job_leases()
                self.recover_jobs()
            except Exception:
                log.exception("job lease renewal / recovery failed")
            self._stop.wait(interval)

    def _job_body(self, job: Job) -> _JobOutcome:
        """What a job does, under the ``person:<employee_id>`` lock.

        An event's change is decided against the stored person first
        (:func:`offboard_audit.core.people.decide_change`): the person is always the one the event's
        employee id names (an email never redirects it, so the lock and the revocation are that
        person's); an event whose email belongs to another person fails the job as a conflict,
        and one older than the person's last applied status change is ``superseded``. Either
        way nothing changes: no person written, no run, no revocation, no cancelled job.
        """
        event = self.events.event(job.event_id) if job.event_id else None
        now = self.clock()
        origin = (
            f"webhook {event.event_id} ({event.event.value})" if event is not None else f"job {job.job_id}"
        )
        try:
            if job.kind in (JobKind.TERMINATE, JobKind.HR_REFRESH):
                return self._terminate(job, event, now, origin)
            if job.kind is JobKind.REHIRE:
                return self._rehire(job, event, now, origin)
            return self._update(job, event, origin)
        except ChangeNotApplied as exc:
            decision = exc.decision
            if job.event_id:
                status = (
                    EventStatus.SUPERSEDED
                    if decision.outcome is ChangeOutcome.SUPERSEDED
                    else EventStatus.CONFLICT
                )
                self.events.set_event_status(job.event_id, status)
            log.warning(
                "job %s (%s for %s): %s", job.job_id, job.kind.value, job.employee_id, decision.reason
            )
            if decision.outcome is ChangeOutcome.SUPERSEDED:
                return _JobOutcome(JobState.SUPERSEDED, detail=decision.reason)
            return _JobOutcome(JobState.FAILED, detail=decision.reason, error=f"conflict: {decision.reason}")

    def _applied(self, job: Job, person: Person, what: str) -> None:
        if job.event_id:
            self.events.set_event_status(job.event_id, EventStatus.APPLIED)
        log.info(
            "job %s (%s): %s %s/%s (%s)",
            job.job_id,
            job.kind.value,
            what,
            person.source,
            person.employee_id,
            person.status.value,
        )

    def _terminate(self, job: Job, event: HREvent | None, now: datetime, origin: str) -> _JobOutcome:
        change = None
        if event is not None:
            change = PersonChange(
                job.employee_id,
                PersonStatus.TERMINATED,
                event.effective_at,
                event.email,
                effective_at=event.effective_at,
                origin=origin,
            )
        outcome = self.pipeline.run_person(job.employee_id, now, change)
        person = outcome.person
        if change is not None:
            self._applied(job, person, "terminated")
        result = outcome.run
        self._record_run(result, "targeted")
        # Revoke for the person the event resolved to (the same id the person lock is held for).
        summary = self._revoke(result, now, person.employee_id, "targeted")
        detail = _describe_run(result, summary, self.config.policy.auto_revoke)
        # The job's point is the revocation: refused or failed actions make it "failed".
        failed = summary is not None and (
            summary.refused is not None or any(a.status == "failed" for a in summary.actions)
        )
        state = JobState.FAILED if failed else JobState.DONE
        return _JobOutcome(state, result.run_id, detail, summary, _job_error(state, summary))

    def _rehire(self, job: Job, event: HREvent | None, now: datetime, origin: str) -> _JobOutcome:
        change = PersonChange(
            job.employee_id,
            PersonStatus.ACTIVE,
            None,
            event.email if event else None,
            effective_at=event.effective_at if event else None,
            origin=origin,
        )
        update = self.pipeline.update_person(change, f"job:{job.job_id}")
        if not update.applied:
            raise ChangeNotApplied(update.decision)
        assert update.person is not None
        person = update.person
        self._applied(job, person, "rehired")
        cancelled = self.events.cancel_pending(
            person.employee_id, now, f"cancelled by rehire event {job.event_id}"
        )
        parts = [f"marked active; cancelled {len(cancelled)} pending job(s)"]
        summary = None
        if self.config.webhook.undo_on_rehire:
            report = self._engine_factory().undo_person(person.employee_id, now, apply=True)
            summary = _summary(report)
            self.metrics.record_actions([a.status for a in summary.actions])
            parts.append(
                f"undo refused: {summary.refused}"
                if summary.refused
                else f"undid {len(summary.actions)} action(s)"
            )
        return _JobOutcome(JobState.DONE, None, "; ".join(parts), summary)

    def _update(self, job: Job, event: HREvent | None, origin: str) -> _JobOutcome:
        """employee.updated: refresh the stored person's email, keep their status."""
        if event is None or not event.email:
            return _JobOutcome(JobState.DONE, detail="nothing to update")
        change = PersonChange(
            job.employee_id, None, None, event.email, effective_at=event.effective_at, origin=origin
        )
        update = self.pipeline.update_person(change, f"job:{job.job_id}")
        if update.decision.outcome is ChangeOutcome.UNKNOWN:
            return _JobOutcome(JobState.DONE, detail="nothing to update: " + update.decision.reason)
        if not update.applied:
            raise ChangeNotApplied(update.decision)
        assert update.person is not None
        self._applied(job, update.person, "updated")
        return _JobOutcome(JobState.DONE, detail="person updated")

    def _revoke(
        self, result: RunResult, now: datetime, person: str | None, kind: str
    ) -> RevokeSummary | None:
        """Apply the run's plan when auto_revoke is on; notify either way. Never raises."""
        summary: RevokeSummary | None = None
        if self.config.policy.auto_revoke:
            try:
                report = self._engine_factory().auto_revoke(result, now, person)
                summary = _summary(report)
            except Exception as exc:
                log.exception("auto-revoke after run %s failed", result.run_id)
                summary = RevokeSummary(f"revocation engine error: {type(exc).__name__}: {exc}", ())
            self.metrics.record_actions([a.status for a in summary.actions])
            self._observe_revocations(result, summary)
        failed = [
            FailedAction(a.action_id, a.source, a.action, a.error or a.status)
            for a in (summary.actions if summary else ())
            if a.status == "failed"
        ]
        messages = run_messages(result, kind, failed, summary.refused if summary else None)
        if messages:
            self.notifier.send(messages)
        return summary

    def _observe_revocations(self, result: RunResult, summary: RevokeSummary) -> None:
        by_finding = {f.finding_id: f for f in result.findings}
        done = self.clock()
        for a in summary.actions:
            f = by_finding.get(a.finding_id or "")
            if a.status != "applied" or f is None or f.person is None or f.person.terminated_at is None:
                continue
            seconds = (done - f.person.terminated_at).total_seconds()
            self.metrics.observe("offboard_audit_termination_to_revocation_seconds", max(0.0, seconds))

    def _record_run(self, result: RunResult, kind: str) -> None:
        self.metrics.record_run(result, kind, result.status)

    # --- full reconciles ------------------------------------------------------------------

    def run_full(self, kind: str = "audit") -> RunResult | None:
        """One full reconcile (``audit``) or HR-only refresh; None when another process runs one."""
        with self._working():
            if self._stopping:
                return None
            held = self.locks.try_acquire(FULL_LOCK)
            if held is None:
                log.info("%s skipped: another process is running a full reconcile", kind)
                return None
            try:
                return self._run_full(kind)
            except Exception as exc:
                log.exception("%s run failed", kind)
                self.metrics.inc("offboard_audit_runs_total", (("kind", kind), ("status", "error")))
                self.notifier.send(run_messages_error(kind, exc))
                return None
            finally:
                held.release()

    def _run_full(self, kind: str) -> RunResult:
        now = self.clock()
        if kind == "hr_refresh":
            before = self.store.load_people()
            result = self.pipeline.run(now, only=[s.name for s in self.config.hr_sources], kind="hr_refresh")
            self._record_run(result, kind)
            if result.circuit_breaker is None:
                self._queue_new_leavers(before, self.store.load_people(), now)
            else:
                self.notifier.send(run_messages(result, kind))
            return result
        result = self.pipeline.run(now)
        self._record_run(result, kind)
        self._revoke(result, now, None, kind)
        log.info(
            "%s run %s: %d findings, sources %s%s",
            kind,
            result.run_id,
            len(result.findings),
            ", ".join(f"{s.name}={s.status.value}" for s in result.sources),
            f", circuit breaker: {result.circuit_breaker}" if result.circuit_breaker else "",
        )
        return result

    def _queue_new_leavers(self, before: Sequence[Person], after: Sequence[Person], now: datetime) -> None:
        """An HR refresh that finds someone newly departed starts a targeted reconcile for them."""
        was = {(p.source, p.employee_id) for p in before if p.is_departed(now)}
        for p in after:
            if p.is_departed(now) and (p.source, p.employee_id) not in was:
                job = Job(
                    new_job_id(),
                    JobKind.HR_REFRESH,
                    p.employee_id,
                    JobState.QUEUED,
                    now,
                    node=self.node,
                    lease_expires_at=self._lease_until(),
                )
                self.events.create_job(job)
                self.submit(job.job_id)

    # --- scheduled future reconciles ------------------------------------------------------

    def process_due(self) -> int:
        """Start the scheduled reconciles whose effective_at has come; returns how many."""
        claimed = self.events.claim_due(self.clock(), self.node, lease_until=self._lease_until())
        for item in claimed:
            self.submit(item.job_id)
        return len(claimed)

    # --- leadership and the scheduler -----------------------------------------------------

    def _leadership_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._leadership_step()
            except Exception:
                log.exception("leadership step failed")
            self._stop.wait(self.options.poll_interval)

    def _leadership_step(self) -> None:
        if self._leader is not None and not self._leader.renew():
            log.warning("lost leadership; stopping the scheduler")
            self._drop_leadership()
        if self._leader is None:
            held = self.locks.try_acquire(LEADER_LOCK, ttl=self.options.lease_ttl, auto_renew=False)
            if held is not None:
                self._leader = held
                self.metrics.set("offboard_audit_leader", 1)
                log.info("node %s is the leader: starting the schedule", self.node)
                self._start_scheduler()
        if self._leader is not None and not self._stopping:
            self.process_due()

    def _drop_leadership(self) -> None:
        self._stop_scheduler()
        if self._leader is not None:
            self._leader.release()
            self._leader = None
        self.metrics.set("offboard_audit_leader", 0)

    def _start_scheduler(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor as APThreadPool
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=APSCHEDULER_TABLE)},
            executors={"default": APThreadPool(2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(self.config.schedule.misfire_grace_time.total_seconds())),
            },
            timezone=self.tz,
        )
        # Add/check jobs before the scheduler starts processing them.
        sched.start(paused=True)
        ensure_job(sched, AUDIT_JOB_ID, "audit", self.config.schedule.audit, self.tz)
        if self.config.schedule.hr_refresh:
            ensure_job(sched, HR_REFRESH_JOB_ID, "hr_refresh", self.config.schedule.hr_refresh, self.tz)
        elif sched.get_job(HR_REFRESH_JOB_ID) is not None:
            sched.remove_job(HR_REFRESH_JOB_ID)
        sched.resume()
        self._scheduler = sched

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
            self._scheduler = None

    # --- serving --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def serve(self, install_signals: bool = True) -> int:
        """Run until stopped; returns the exit code (0 on a clean stop)."""
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        try:
            if install_signals:
                self._install_signals()
            server_thread = self._start_http() if self.options.serve_http else None
            if server_thread is False:
                return 1
            leader_thread = threading.Thread(target=self._leadership_loop, name="leadership", daemon=True)
            leader_thread.start()
            jobs_thread = threading.Thread(target=self._jobs_loop, name="job-leases", daemon=True)
            jobs_thread.start()
            log.info("daemon %s running", self.node)
            while not self._stop.wait(0.5):
                pass
            return self._shutdown(leader_thread)
        finally:
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _start_http(self) -> threading.Thread | bool:
        import uvicorn

        host, port = self.config.webhook.host_port
        cfg = uvicorn.Config(
            self.app(),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(cfg)
        thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                log.error("cannot serve on %s:%s", host, port)
                return False
            time.sleep(0.02)
        log.info("serving the webhook, /healthz and /metrics on http://%s:%s", host, port)
        return thread

    def _shutdown(self, leader_thread: threading.Thread) -> int:
        started = time.monotonic()
        deadline = started + self.options.stop_deadline
        self._stopping = True
        self._stop.set()
        self._stop_scheduler()
        if self._server is not None:
            self._server.should_exit = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._busy_cv:
            while self._busy and time.monotonic() < deadline:
                self._busy_cv.wait(max(0.0, deadline - time.monotonic()))
            busy = self._busy
        with self._owned_mutex:
            self._owned.clear()  # no more lease renewals: what is still queued goes to another daemon
        now = self.clock()
        reason = "abandoned: the daemon was stopped (SIGTERM/SIGINT) before this finished"
        jobs = self.events.abandon_running(self.node, now, reason)
        runs = self.store.abandon_runs(now) if busy else []
        if jobs or runs:
            log.warning("recorded as abandoned: jobs %s, runs %s", jobs, runs)
        leader_thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._leader is not None:
            self._leader.release()
            self._leader = None
        self.notifier.close(timeout=max(0.1, min(1.0, deadline + 1.5 - time.monotonic())))
        log.info("stopped after %.1f s", time.monotonic() - started)
        if busy:
            # A reconcile is still inside a connector call: it is recorded as abandoned above and
            # its action (if any) is left to the revocation engine's recovery. Do not wait for it.
            logging.shutdown()
            os._exit(0)
        return 0

    def run_once(self) -> RunResult | None:
        """``daemon --once``: one full reconcile (with auto-revoke if configured), then return."""
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        try:
            return self.run_full("audit")
        finally:
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)
            self._pool.shutdown(wait=True)
            self.notifier.close()


def ensure_job(sched: Any, job_id: str, kind: str, cron: str, tz: ZoneInfo) -> None:
    """Keep a stored job as it is (its persisted next run time survives restarts) unless the
    cron expression changed; add it when missing."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(cron, timezone=tz)
    except ValueError as exc:
        raise ConfigError(f"not a valid cron expression {cron!r}: {exc}", key=f"schedule.{kind}") from None
    existing = sched.get_job(job_id)
    if existing is None:
        sched.add_job(scheduled_reconcile, trigger, id=job_id, name=f"{kind} reconcile", args=[kind])
        log.info("scheduled %s: %s", kind, cron)
    elif str(existing.trigger) != str(trigger):
        sched.reschedule_job(job_id, trigger=trigger)
        log.info("rescheduled %s: %s", kind, cron)
    else:
        log.info("kept the stored %s schedule (next run %s)", kind, existing.next_run_time)


def _summary(report: Any) -> RevokeSummary:
    done = tuple(getattr(report, "outcomes", ()) or ())
    # An action a dead daemon left before its change took effect is recovered as "failed" and
    # retried by this same pass: when the retry succeeded, the job did not fail.
    settled = {(o.source, o.action, o.finding_id) for o in done if str(o.status) in ("applied", "noop")}
    recovered = tuple(
        o
        for o in tuple(getattr(report, "recovered", ()) or ())
        if not (str(o.status) == "failed" and (o.source, o.action, o.finding_id) in settled)
    )
    outcomes = done + recovered
    return RevokeSummary(
        getattr(report, "refused", None),
        tuple(
            JobAction(
                action_id=str(o.action_id),
                finding_id=o.finding_id,
                source=o.source,
                action=o.action,
                status=str(o.status),
                error=o.error,
            )
            for o in outcomes
        ),
    )


def _job_error(state: JobState, summary: RevokeSummary | None) -> str | None:
    if state is not JobState.FAILED or summary is None:
        return None
    if summary.refused:
        return f"revocation refused: {summary.refused}"
    failed = [a for a in summary.actions if a.status == "failed"]
    return f"{len(failed)} action(s) failed: " + "; ".join(
        f"{a.source} {a.action}: {a.error}" for a in failed
    )


def _describe_run(result: RunResult, summary: RevokeSummary | None, auto_revoke: bool) -> str:
    parts = [f"{len(result.findings)} finding(s)"]
    failed = [s.name for s in result.sources if s.status is SourceStatus.FAILED]
    if failed:
        parts.append(f"failed sources: {', '.join(failed)}")
    if result.circuit_breaker:
        parts.append(f"circuit breaker: {result.circuit_breaker}")
    if not auto_revoke:
        parts.append("audit only (policy.auto_revoke = false)")
    elif summary is not None:
        if summary.refused:
            parts.append(f"revocation refused: {summary.refused}")
        counts: dict[str, int] = {}
        for a in summary.actions:
            counts[a.status] = counts.get(a.status, 0) + 1
        parts.append("actions: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    return "; ".join(parts)


def run_messages_error(kind: str, exc: BaseException) -> list[Any]:
    from offboard_audit.daemon.notify import Message

    return [Message("run_error", f"offboard-audit {kind} run failed: {type(exc).__name__}: {exc}")]
