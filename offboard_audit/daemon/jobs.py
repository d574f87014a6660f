"""The daemon's job runner: webhook jobs on a worker pool, their leases, and the takeover of jobs
whose daemon died.

A queued or running job is owned by one daemon instance (``node``) under a lease of
``job_lease`` seconds. The runner renews the lease of every job it holds (waiting in the pool or
running) every ``min(poll_interval, job_lease / 3)`` seconds, and in the same loop takes over the
queued and running jobs whose lease expired, with a conditional update (``WebhookStore``), so
exactly one replica wins each. A job runs under the ``person:<employee_id>`` lock; what it does is
the injected ``body`` (``reconcile.Reconciler.job_body``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, InitVar, dataclass, field
from datetime import datetime, timedelta

from offboard_audit.core.jobs import Job, JobKind, JobState, Notification, Outcome
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.notify import Message
from offboard_audit.daemon.summary import JobOutcome, outcome_line
from offboard_audit.storage.locks import Clock, LockNotAcquired, Locks, person_lock
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id

# The daemon's lines keep the logger they had before service.py was split into collaborators,
# so logging configurations (and log filters) that name it still see them.
log = logging.getLogger("offboard_audit.daemon.service")

ABANDONED = "abandoned: the daemon was stopped (SIGTERM/SIGINT) before this finished"


class WorkGate:
    """Counts the work in progress (jobs and full reconciles) and closes to new work on stop."""

    def __init__(self) -> None:
        self.closed = False
        self._busy = 0
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Count the block as work in progress (callers check ``closed`` inside it)."""
        with self._cv:
            self._busy += 1
        try:
            yield
        finally:
            with self._cv:
                self._busy -= 1
                self._cv.notify_all()

    def close(self) -> None:
        self.closed = True

    def wait_idle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the work in progress; returns how much is left."""
        with self._cv:
            self._cv.wait_for(lambda: self._busy == 0, max(0.0, timeout))
            return self._busy


@dataclass(eq=False)
class JobRunner:
    """Runs this daemon's jobs; the webhook hands it accepted jobs through :meth:`submit`."""

    events: WebhookStore
    locks: Locks
    body: Callable[[Job], JobOutcome]
    metrics: Metrics
    gate: WorkGate
    _: KW_ONLY
    node: str
    clock: Clock
    lease: float
    workers: InitVar[int]
    person_lock_timeout: float
    retry_backoff: timedelta = timedelta(seconds=30)
    retry_max_backoff: timedelta = timedelta(minutes=15)
    notifications: Callable[[Sequence[Message], str], list[Notification]] | None = None
    _owned: set[str] = field(default_factory=set, init=False)  # jobs this process holds (queued or running)
    _owned_mutex: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")

    def lease_until(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease)

    def _own(self, job_id: str) -> None:
        with self._owned_mutex:
            self._owned.add(job_id)

    def _disown(self, job_id: str) -> None:
        with self._owned_mutex:
            self._owned.discard(job_id)

    def submit(self, job_id: str) -> None:
        """Run a queued job on the worker pool (never blocks the request)."""
        if self.gate.closed:
            log.info("not starting job %s: shutting down (it stays queued for another daemon)", job_id)
            return
        self._own(job_id)
        try:
            self._pool.submit(self.run_job, job_id)
        except RuntimeError:  # pool already shut down
            self._disown(job_id)
            log.info("not starting job %s: shutting down", job_id)

    def enqueue(self, kind: JobKind, employee_id: str) -> Job:
        """Create a queued job of this daemon (not from a webhook event) and submit it."""
        job = Job(
            new_job_id(),
            kind,
            employee_id,
            JobState.QUEUED,
            self.clock(),
            node=self.node,
            lease_expires_at=self.lease_until(),
        )
        self.events.create_job(job)
        self.submit(job.job_id)
        return job

    def run_job(self, job_id: str) -> Job | None:
        """Run one queued job to completion; returns the finished job (None if someone else ran it)."""
        with self.gate.working():
            if self.gate.closed or not self.events.start_job(
                job_id, self.clock(), self.node, self.lease_until()
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
        with self.gate.working():
            if self.gate.closed:
                self._disown(job.job_id)
                return None
            return self._execute(job)

    def retry_at(self, attempts: int, now: datetime) -> datetime:
        """When an incomplete job that has been started ``attempts`` times is tried again:
        ``retry_backoff`` doubling at each attempt, never more than ``retry_max_backoff``."""
        first = self.retry_backoff.total_seconds()
        delay = min(self.retry_max_backoff.total_seconds(), first * 2 ** max(0, min(attempts - 1, 30)))
        return now + timedelta(seconds=delay)

    def _execute(self, job: Job) -> Job | None:
        """The body of a job this process owns (state ``running``) under its person lock; records
        its outcome, with its notifications, in one transaction."""
        job_id = job.job_id
        self._own(job_id)
        try:
            try:
                outcome = self._locked_body(job)
                detail = outcome.detail
                if job.takeovers:
                    t = job.takeovers[-1]
                    detail = f"taken over from {t.previous_owner} (its lease expired); {detail}"
                now = self.clock()
                rows: list[Notification] = []
                if outcome.messages and self.notifications is not None:
                    origin = f"run:{outcome.run_id}" if outcome.run_id else f"job:{job_id}:{job.attempts}"
                    rows = self.notifications(outcome.messages, origin)
                recorded = self.events.finish_job(
                    job_id,
                    now,
                    outcome.state,
                    run_id=outcome.run_id,
                    detail=detail,
                    actions=outcome.job_actions,
                    error=outcome.error,
                    owner=self.node,
                    next_attempt_at=self.retry_at(job.attempts, now)
                    if outcome.state is JobState.INCOMPLETE
                    else None,
                    notifications=rows,
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
        if finished is None:
            return None
        self._report(finished)
        return finished

    def _report(self, job: Job) -> None:
        """One log line and the counters for a job attempt that ended."""
        outcome = job.outcome
        label = outcome.value if outcome is not None else job.state.value
        self.metrics.inc("offboard_audit_webhook_jobs_total", (("kind", job.kind.value), ("outcome", label)))
        if job.finished_at is not None:
            self.metrics.observe(
                "offboard_audit_webhook_job_seconds",
                (job.finished_at - job.created_at).total_seconds(),
                (("kind", job.kind.value), ("state", job.state.value)),
            )
        line = outcome_line(job, outcome, job.actions)
        if outcome in (Outcome.DONE, Outcome.SUPERSEDED, Outcome.CANCELLED):
            log.info("%s", line)
        else:
            log.warning("%s", line)

    def _locked_body(self, job: Job) -> JobOutcome:
        # The SQLite lease of the person lock is the job lease, so both free up together when
        # this daemon dies (PostgreSQL releases it at once).
        try:
            lock = self.locks.acquire(
                person_lock(job.employee_id),
                self.person_lock_timeout,
                timedelta(seconds=self.lease),
                renew_every=self.lease / 3,
            )
        except LockNotAcquired:
            raise TimeoutError(f"person {job.employee_id} stayed locked by another reconcile") from None
        try:
            return self.body(job)
        finally:
            lock.release()

    def renew_leases(self) -> set[str]:
        """Heartbeat: extend the lease of every job this process holds; returns those renewed."""
        with self._owned_mutex:
            owned = sorted(self._owned)
        renewed = self.events.renew_leases(self.node, owned, self.lease_until())
        for job_id in set(owned) - renewed:
            job = self.events.job(job_id)
            if job is not None and not job.state.final and job.node != self.node:
                log.warning("lost job %s to %s (our lease had expired)", job_id, job.node)
        return renewed

    def recover(self) -> list[str]:
        """Take over the queued and running jobs whose owner's lease expired, and run them."""
        if self.gate.closed:
            return []
        claimed = self.events.claim_orphaned(self.clock(), self.node, self.lease_until())
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

    def process_due(self) -> int:
        """Start the scheduled reconciles whose effective_at has come, and the incomplete jobs
        whose next attempt has come; returns how many."""
        if self.gate.closed:
            return 0
        claimed = self.events.claim_due(self.clock(), self.node, lease_until=self.lease_until())
        for item in claimed:
            self.submit(item.job_id)
        retries = self.events.claim_retries(self.clock(), self.node, self.lease_until())
        for job in retries:
            log.info(
                "retrying incomplete job %s for %s (attempt %d)",
                job.job_id,
                job.employee_id,
                job.attempts + 1,
            )
            self.submit(job.job_id)
        return len(claimed) + len(retries)

    def loop(self, stop: threading.Event, poll_interval: float) -> None:
        """Every replica: renew our job leases and take over orphaned jobs, at once and then
        every ``min(poll_interval, lease / 3)`` seconds, until ``stop``."""
        interval = min(poll_interval, self.lease / 3)
        while not stop.is_set():
            try:
                self.renew_leases()
                self.recover()
            except Exception:
                log.exception("job lease renewal / recovery failed")
            stop.wait(interval)

    def stop_taking(self) -> None:
        """Start no more jobs: those waiting in the pool are dropped (they stay queued)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def abandon(self, now: datetime) -> list[str]:
        """Stop renewing leases (what is still queued goes to another daemon) and record the jobs
        still running here as failed, abandoned; returns their ids."""
        with self._owned_mutex:
            self._owned.clear()
        return self.events.abandon_running(self.node, now, ABANDONED)

    def close(self) -> None:
        """Wait for the jobs already started, then stop the pool (``daemon --once``)."""
        self._pool.shutdown(wait=True)
