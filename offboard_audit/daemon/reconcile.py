"""What the daemon's work does: full reconciles and HR refreshes (under ``reconcile:full``), and
the body of each job (a termination's targeted reconcile and revocation, a rehire, an update),
with the revocation engine, metrics and notifications around them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine

from offboard_audit.config import Config
from offboard_audit.core.jobs import EventStatus, HREvent, Job, JobKind, JobState
from offboard_audit.core.people import ChangeOutcome, PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, PersonStatus, RunResult
from offboard_audit.daemon.jobs import WorkGate
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.notify import Notifier
from offboard_audit.daemon.summary import (
    JobOutcome,
    RevokeSummary,
    describe_run,
    engine_error,
    job_error,
    revocation_failed,
    revocation_messages,
    run_error_messages,
    run_messages,
    summarize,
)
from offboard_audit.engine.hr import ChangeNotApplied
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import ApplyReport
from offboard_audit.storage.locks import FULL_RECONCILE, Clock, Locks
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

# The daemon's lines keep the logger they had before service.py was split (see jobs.py).
log = logging.getLogger("offboard_audit.daemon.service")

# The SQLite lease of ``reconcile:full``, renewed every third of it while the run goes on.
FULL_LOCK_LEASE = 30.0


class RunTrackingStore(Store):
    """The store, remembering which runs this process started (to record them if abandoned)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._started: set[str] = set()
        self._mutex = threading.Lock()

    def start_run(self, run_id: str, started_at: datetime, kind: str = "audit") -> None:
        super().start_run(run_id, started_at, kind)
        with self._mutex:
            self._started.add(run_id)

    def abandon_runs(self, now: datetime) -> list[str]:
        """Record the runs this process started and did not finish as abandoned."""
        with self._mutex:
            ids = list(self._started)
        return self.mark_abandoned(ids, now)


class RevocationEngineLike(Protocol):
    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> ApplyReport: ...

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> ApplyReport: ...


EngineFactory = Callable[[], RevocationEngineLike]


def shared_engine(config: Config, store: Store, ctx: SourceContext, actor: str) -> EngineFactory:
    """One revocation engine for the process, built on first use: its revokers (and their API
    clients) are built once. The engine serialises its passes with the revocation lock, so
    sharing it is safe."""
    built: list[RevocationEngineLike] = []
    mutex = threading.Lock()

    def factory() -> RevocationEngineLike:
        with mutex:
            if not built:
                from offboard_audit.engine.revocation import RevocationEngine

                built.append(RevocationEngine(config, store, ctx, actor=actor))
            return built[0]

    return factory


@dataclass(frozen=True)
class FullRun:
    """A finished full reconcile or HR refresh, and who it found newly departed (HR refresh)."""

    result: RunResult
    new_leavers: tuple[str, ...] = ()


class Reconciler:
    """Runs reconciles and job bodies. ``config`` is read at each run (tests replace it)."""

    def __init__(
        self,
        config: Config,
        store: RunTrackingStore,
        pipeline: Pipeline,
        events: WebhookStore,
        locks: Locks,
        engine: EngineFactory,
        metrics: Metrics,
        notifier: Notifier,
        gate: WorkGate,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.pipeline = pipeline
        self.events = events
        self.locks = locks
        self.engine = engine
        self.metrics = metrics
        self.notifier = notifier
        self.gate = gate
        self.clock = clock

    # --- full reconciles ------------------------------------------------------------------

    def run_full(self, kind: str = "audit") -> FullRun | None:
        """One full reconcile (``audit``) or HR-only refresh; None when another process runs one
        (or it failed: logged, counted and notified)."""
        with self.gate.working():
            if self.gate.closed:
                return None
            held = self.locks.try_acquire(
                FULL_RECONCILE, timedelta(seconds=FULL_LOCK_LEASE), renew_every=FULL_LOCK_LEASE / 3
            )
            if held is None:
                log.info("%s skipped: another process is running a full reconcile", kind)
                return None
            try:
                return self._run_full(kind)
            except Exception as exc:
                log.exception("%s run failed", kind)
                self.metrics.inc("offboard_audit_runs_total", (("kind", kind), ("status", "error")))
                self.notifier.send(run_error_messages(kind, exc))
                return None
            finally:
                held.release()

    def _run_full(self, kind: str) -> FullRun:
        now = self.clock()
        if kind == "hr_refresh":
            before = self.store.load_people()
            result = self.pipeline.run(now, only=[s.name for s in self.config.hr_sources], kind="hr_refresh")
            self._record_run(result, kind)
            if result.circuit_breaker is not None:
                self.notifier.send(run_messages(result, kind))
                return FullRun(result)
            return FullRun(result, _new_leavers(before, self.store.load_people(), now))
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
        return FullRun(result)

    # --- jobs -----------------------------------------------------------------------------

    def job_body(self, job: Job) -> JobOutcome:
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
            superseded = decision.outcome is ChangeOutcome.SUPERSEDED
            if job.event_id:
                self.events.set_event_status(
                    job.event_id, EventStatus.SUPERSEDED if superseded else EventStatus.CONFLICT
                )
            log.warning(
                "job %s (%s for %s): %s", job.job_id, job.kind.value, job.employee_id, decision.reason
            )
            if superseded:
                return JobOutcome(JobState.SUPERSEDED, detail=decision.reason)
            return JobOutcome(JobState.FAILED, detail=decision.reason, error=f"conflict: {decision.reason}")

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

    def _terminate(self, job: Job, event: HREvent | None, now: datetime, origin: str) -> JobOutcome:
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
        detail = describe_run(result, summary, self.config.policy.auto_revoke)
        state = JobState.FAILED if revocation_failed(summary) else JobState.DONE
        return JobOutcome(state, result.run_id, detail, summary, job_error(state, summary))

    def _rehire(self, job: Job, event: HREvent | None, now: datetime, origin: str) -> JobOutcome:
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
            summary = summarize(self.engine().undo_person(person.employee_id, now, apply=True))
            self.metrics.record_actions([a.status for a in summary.actions])
            parts.append(
                f"undo refused: {summary.refused}"
                if summary.refused
                else f"undid {len(summary.actions)} action(s)"
            )
        return JobOutcome(JobState.DONE, None, "; ".join(parts), summary)

    def _update(self, job: Job, event: HREvent | None, origin: str) -> JobOutcome:
        """employee.updated: refresh the stored person's email, keep their status."""
        if event is None or not event.email:
            return JobOutcome(JobState.DONE, detail="nothing to update")
        change = PersonChange(
            job.employee_id, None, None, event.email, effective_at=event.effective_at, origin=origin
        )
        update = self.pipeline.update_person(change, f"job:{job.job_id}")
        if update.decision.outcome is ChangeOutcome.UNKNOWN:
            return JobOutcome(JobState.DONE, detail="nothing to update: " + update.decision.reason)
        if not update.applied:
            raise ChangeNotApplied(update.decision)
        assert update.person is not None
        self._applied(job, update.person, "updated")
        return JobOutcome(JobState.DONE, detail="person updated")

    # --- revocation, metrics, notifications -----------------------------------------------

    def _revoke(
        self, result: RunResult, now: datetime, person: str | None, kind: str
    ) -> RevokeSummary | None:
        """Apply the run's plan when auto_revoke is on; notify either way. Never raises."""
        summary: RevokeSummary | None = None
        if self.config.policy.auto_revoke:
            try:
                summary = summarize(self.engine().auto_revoke(result, now, person))
            except Exception as exc:
                log.exception("auto-revoke after run %s failed", result.run_id)
                summary = engine_error(exc)
            self.metrics.record_actions([a.status for a in summary.actions])
            self._observe_revocations(result, summary)
        messages = revocation_messages(result, kind, summary)
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


def _new_leavers(before: Sequence[Person], after: Sequence[Person], now: datetime) -> tuple[str, ...]:
    """The people an HR refresh found newly departed (each gets a targeted reconcile job)."""
    was = {(p.source, p.employee_id) for p in before if p.is_departed(now)}
    return tuple(p.employee_id for p in after if p.is_departed(now) and (p.source, p.employee_id) not in was)
