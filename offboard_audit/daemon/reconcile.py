"""What the daemon's work does: full reconciles and HR refreshes (under ``reconcile:full``), and
the body of each job (a termination's targeted reconcile and revocation, a rehire, an update),
with the revocation engine, metrics and notifications around them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from offboard_audit.config import Config
from offboard_audit.core.jobs import EventStatus, HREvent, Job, JobKind, JobState, Notification
from offboard_audit.core.people import ChangeOutcome, PersonChange
from offboard_audit.core.records import Person, PersonStatus
from offboard_audit.core.runs import RunResult, RunStatus
from offboard_audit.core.stored import ActionRecord
from offboard_audit.daemon.jobs import WorkGate
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.notify import Message, Notifier
from offboard_audit.daemon.runs import EngineFactory, RunTrackingStore, test_point
from offboard_audit.daemon.summary import (
    JobOutcome,
    RevokeSummary,
    describe_run,
    engine_error,
    job_actions,
    job_error,
    read_failed,
    revocation_failed,
    revocation_messages,
    run_error_messages,
    run_line,
    run_messages,
    summarize,
)
from offboard_audit.engine.hr import ChangeNotApplied, last_good_hr_read
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import PassInterrupted
from offboard_audit.report.audit_trail import AuditTrail, anchor_data, anchor_text, write_anchor
from offboard_audit.storage.actions import load_actions
from offboard_audit.storage.locks import FULL_RECONCILE, Clock, Locks
from offboard_audit.storage.outbox import OutboxStore
from offboard_audit.storage.webhook_store import WebhookStore

# The daemon's lines keep the logger they had before service.py was split (see jobs.py).
log = logging.getLogger("offboard_audit.daemon.service")

# The SQLite lease of ``reconcile:full``, renewed every third of it while the run goes on.
FULL_LOCK_LEASE = 30.0


@dataclass(frozen=True)
class FullRun:
    """A finished full reconcile or HR refresh, and who it found newly departed (HR refresh)."""

    result: RunResult
    new_leavers: tuple[str, ...] = ()
    # What the auto-revoke pass after the run did (None: auto_revoke off, or an HR refresh).
    revocation: RevokeSummary | None = None


@dataclass(eq=False)
class Reconciler:
    """Runs reconciles and job bodies. ``config`` is read at each run (tests replace it)."""

    config: Config
    store: RunTrackingStore
    pipeline: Pipeline
    events: WebhookStore
    locks: Locks
    engine: EngineFactory
    metrics: Metrics
    notifier: Notifier
    gate: WorkGate
    clock: Clock
    trail: AuditTrail = field(default_factory=AuditTrail)
    outbox: OutboxStore = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = OutboxStore(self.store)
        # The store asks for a run's notifications while it writes the run (one transaction).
        self.store.run_notifications = self._run_notifications

    # --- notifications ----------------------------------------------------------------------

    def _run_notifications(self, result: RunResult, kind: str) -> list[Notification]:
        """What a run tells people as soon as it is stored: new critical/high findings, a tripped
        circuit breaker (written with the run itself)."""
        return self.notifier.rows(run_messages(result, kind), f"run:{result.run_id}", self.clock())

    def notify(self, messages: Sequence[Message], origin: str) -> None:
        """Write messages to the outbox (the leader sends them). Never raises."""
        if not messages:
            return
        try:
            self.outbox.add(self.notifier.rows(messages, origin, self.clock()))
        except Exception:
            log.exception("could not write %d notification(s) of %s to the outbox", len(messages), origin)

    def anchor(self) -> None:
        """After a reconcile or a job: anchor the audit events this process appended in
        ``[audit] anchor_file`` and send the anchor through the notification channel (a second
        copy off this host). Never raises."""
        try:
            anchor = write_anchor(self.store, self.trail, self.clock())
        except Exception as exc:
            log.error("could not write the audit anchor to %s: %s", self.trail.anchor_file, exc)
            return
        if anchor is not None:
            data = tuple(anchor_data(anchor).items())
            self.notify([Message("audit_anchor", anchor_text(anchor), data)], f"anchor:{anchor.seq}")

    # --- full reconciles ------------------------------------------------------------------

    def run_full(self, kind: str = "audit", tick: str | None = None) -> FullRun | None:
        """One full reconcile (``audit``) or HR-only refresh; None when another process runs one
        (or it failed: logged, counted and notified). ``tick``: the scheduled tick it runs for."""
        with self.gate.working():
            if self.gate.closed:
                return None
            held = self.locks.try_acquire(
                FULL_RECONCILE, timedelta(seconds=FULL_LOCK_LEASE), renew_every=FULL_LOCK_LEASE / 3
            )
            if held is None:
                log.info("%s skipped: another process is running a full reconcile", kind)
                return None
            self.store.running_tick(tick)
            try:
                return self._run_full(kind)
            except Exception as exc:
                log.exception("%s run failed", kind)
                self.metrics.inc("offboard_audit_runs_total", (("kind", kind), ("status", "error")))
                self.notify(run_error_messages(kind, exc), f"error:{kind}:{uuid.uuid4().hex[:12]}")
                return None
            finally:
                self.store.running_tick(None)
                held.release()
                self.anchor()

    def _run_full(self, kind: str) -> FullRun:
        now = self.clock()
        if kind == "hr_refresh":
            before = self.store.load_people()
            # Departed as of the last HR read that stored people, not as of now: a termination
            # dated in the future, stored by an earlier read, has passed its date since and is new.
            since = last_good_hr_read(self.store) or now
            result = self.pipeline.run(now, only=[s.name for s in self.config.hr_sources], kind="hr_refresh")
            test_point(f"{kind}-run-finished")
            self._record_run(result, kind, None)
            if result.circuit_breaker is not None:
                return FullRun(result)
            return FullRun(result, _new_leavers(before, self.store.load_people(), since, now))
        result = self.pipeline.run(now)
        test_point(f"{kind}-run-finished")
        summary, messages = self._revoke(result, now, None, kind)
        self.notify(messages, f"run:{result.run_id}")
        self._record_run(result, kind, summary)
        return FullRun(result, revocation=summary)

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
            return self._not_applied(job, exc)
        finally:
            self.anchor()

    def _not_applied(self, job: Job, exc: ChangeNotApplied) -> JobOutcome:
        decision = exc.decision
        superseded = decision.outcome is ChangeOutcome.SUPERSEDED
        if job.event_id:
            self.events.set_event_status(
                job.event_id, EventStatus.SUPERSEDED if superseded else EventStatus.CONFLICT
            )
        # The job's outcome line (jobs.py) says it, with the reason.
        log.debug("job %s (%s for %s): %s", job.job_id, job.kind.value, job.employee_id, decision.reason)
        if superseded:
            return JobOutcome(JobState.SUPERSEDED, detail=decision.reason)
        return JobOutcome(JobState.FAILED, detail=decision.reason, error=f"conflict: {decision.reason}")

    def _applied(self, job: Job, person: Person, what: str) -> None:
        if job.event_id:
            self.events.set_event_status(job.event_id, EventStatus.APPLIED)
        log.debug(
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
        # Revoke for the person the event resolved to (the same id the person lock is held for).
        summary, messages = self._revoke(result, now, person.employee_id, "targeted")
        self._record_run(result, "targeted", summary)
        detail = describe_run(result, summary, self.config.policy.auto_revoke)
        actions = job_actions(job.employee_id, job.actions, summary, self._dead_owners_actions(job))
        failed_reads = read_failed(result)
        if revocation_failed(summary):
            state = JobState.FAILED
        elif failed_reads:
            # The read of this person failed somewhere: their access may not be gone. Not done
            # until a read succeeds and its actions are applied or refused.
            state = JobState.INCOMPLETE
            detail = (
                f"the read of {person.employee_id} failed in {', '.join(failed_reads)} (retried); {detail}"
            )
        else:
            state = JobState.DONE
        return JobOutcome(
            state,
            result.run_id,
            detail,
            summary,
            job_error(state, summary),
            messages=tuple(messages),
            actions=actions,
        )

    def _dead_owners_actions(self, job: Job) -> list[ActionRecord]:
        """This person's actions that a daemon which died holding this job started (whichever
        pass settled them since)."""
        if not job.takeovers:
            return []
        dead = {f"daemon:{t.previous_owner}" for t in job.takeovers if t.previous_owner}
        return [
            a
            for a in load_actions(self.store, person=job.employee_id)
            if a.actor in dead and a.created_at >= job.created_at and a.undo_of is None
        ]

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
    ) -> tuple[RevokeSummary | None, list[Message]]:
        """Apply the run's plan when auto_revoke is on. Never raises. Returns the summary and what
        the pass adds to the run's notifications (refused, failed actions)."""
        summary: RevokeSummary | None = None
        if self.config.policy.auto_revoke:
            try:
                summary = summarize(self.engine().auto_revoke(result, now, person))
            except PassInterrupted as exc:
                log.error("auto-revoke after run %s stopped part-way: %s", result.run_id, exc.cause)
                summary = engine_error(exc.cause, exc.report)
            except Exception as exc:
                log.exception("auto-revoke after run %s failed", result.run_id)
                summary = engine_error(exc)
            self.metrics.record_actions([a.status for a in summary.actions])
            self._observe_revocations(result, summary)
        return summary, revocation_messages(result, kind, summary, include_run=False)

    def _observe_revocations(self, result: RunResult, summary: RevokeSummary) -> None:
        by_finding = {f.finding_id: f for f in result.findings}
        done = self.clock()
        for a in summary.actions:
            f = by_finding.get(a.finding_id or "")
            if a.status != "applied" or f is None or f.person is None or f.person.terminated_at is None:
                continue
            seconds = (done - f.person.terminated_at).total_seconds()
            self.metrics.observe("offboard_audit_termination_to_revocation_seconds", max(0.0, seconds))

    def _record_run(self, result: RunResult, kind: str, summary: RevokeSummary | None) -> None:
        """Count the run by its real outcome and say what it did: ``refused`` when the circuit
        breaker tripped or the revocation was refused, else the run's stored status."""
        refused = summary.refused if summary is not None else None
        outcome = "refused" if result.circuit_breaker or refused else result.status.value
        self.metrics.record_run(result, kind, outcome)
        line = run_line(kind, result, outcome, refused)
        if kind == "targeted":
            log.debug("%s", line)
        elif outcome in ("refused", RunStatus.FAILED_SOURCES.value):
            log.warning("%s", line)
        else:
            log.info("%s", line)


def _new_leavers(
    before: Sequence[Person], after: Sequence[Person], since: datetime, now: datetime
) -> tuple[str, ...]:
    """The people an HR refresh found newly departed (each gets a targeted reconcile job): departed
    now, and not as the stored people ``before`` it stood at the last HR read that stored them
    (``since``)."""
    was = {(p.source, p.employee_id) for p in before if p.is_departed(since)}
    return tuple(p.employee_id for p in after if p.is_departed(now) and (p.source, p.employee_id) not in was)
