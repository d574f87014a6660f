"""Storage of HR webhook events, daemon jobs and scheduled (future) targeted reconciles.

Rows stay in here; callers see the records of :mod:`offboard_audit.core.jobs`. Every state change that two daemon
replicas could race on is a conditional ``UPDATE ... WHERE state = ...`` whose row count says
who won, so a job or a scheduled reconcile is run by exactly one replica.

Ownership and leases
    A ``queued`` or ``running`` job belongs to one daemon instance (``node``, e.g.
    ``host:pid:random``) until ``lease_expires_at``; the owner renews the lease while it holds
    the job (:meth:`WebhookStore.renew_leases`). A job whose lease ran out (its owner died: SIGKILL,
    OOM, machine loss) is taken over by any replica with :meth:`WebhookStore.claim_orphaned`: a
    conditional update on the observed state and owner and the expired lease, so of two replicas
    trying at once exactly one wins (SQLite and PostgreSQL alike). Each takeover is recorded in
    ``takeovers_json`` and ``attempts`` counts the starts.

Incomplete jobs
    A job whose read of its person failed is recorded ``incomplete`` with ``next_attempt_at``;
    :meth:`WebhookStore.claim_retries` queues it again when that time has come (one replica wins).

Bounded replay table
    An event's body is dropped once its job is finished (:meth:`WebhookStore.finish_job`); the
    event row (its id, for the replay check) is deleted by :meth:`WebhookStore.prune_events` once
    it is older than the retention the daemon passes (at least twice the signature window).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import RowMapping, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from offboard_audit.core.job_json import action_json, takeover_json, takeover_of
from offboard_audit.core.jobs import (
    EventStatus,
    HREvent,
    HREventType,
    Job,
    JobAction,
    JobKind,
    JobState,
    Notification,
    ScheduledReconcile,
    ScheduleState,
    Takeover,
)
from offboard_audit.storage.db import Database
from offboard_audit.storage.outbox import add_notifications
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import SCHEDULED_RECONCILES as SCHEDULED
from offboard_audit.storage.tables import WEBHOOK_EVENTS as EVENTS
from offboard_audit.storage.tables import WEBHOOK_JOBS as JOBS

T = TypeVar("T")


def new_job_id() -> str:
    """Unguessable: the job URL is the only thing that reveals a job."""
    return uuid.uuid4().hex


class WebhookStore:
    """Events, jobs and scheduled reconciles, in the same database as the rest of the store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    # --- events ---------------------------------------------------------------------------

    def accept(self, event: HREvent, job: Job) -> bool:
        """Store an event with its job in one transaction. False (and nothing written) on a replay."""
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(EVENTS).values(row_of(event, EVENTS, body_json=event.body, job_id=job.job_id))
                )
                conn.execute(insert(JOBS).values(_job_row(job)))
                if job.state is JobState.SCHEDULED:
                    assert job.due_at is not None
                    conn.execute(
                        insert(SCHEDULED).values(
                            job_id=job.job_id,
                            employee_id=job.employee_id,
                            due_at=job.due_at,
                            state=ScheduleState.PENDING.value,
                            created_at=job.created_at,
                        )
                    )
        except IntegrityError:
            return False
        return True

    def event(self, event_id: str) -> HREvent | None:
        with self.store.begin() as conn:
            r = conn.execute(select(EVENTS).where(EVENTS.c.event_id == event_id)).mappings().first()
        return record_of(HREvent, r, body=r["body_json"]) if r is not None else None

    def set_event_status(self, event_id: str, status: EventStatus) -> None:
        with self.store.begin() as conn:
            conn.execute(update(EVENTS).where(EVENTS.c.event_id == event_id).values(status=status.value))

    def event_status(self, event_id: str) -> EventStatus | None:
        with self.store.begin() as conn:
            value = conn.execute(select(EVENTS.c.status).where(EVENTS.c.event_id == event_id)).scalar()
        return EventStatus(value) if value is not None else None

    def terminations_since(self, since: datetime | None) -> set[str]:
        """Employee ids terminated through the webhook since ``since`` (all when None); events
        that were superseded or conflicted terminated nobody and are not counted."""
        not_applied = [EventStatus.SUPERSEDED.value, EventStatus.CONFLICT.value]
        with self.store.begin() as conn:
            q = select(EVENTS.c.employee_id).where(
                EVENTS.c.event == HREventType.TERMINATED.value, EVENTS.c.status.not_in(not_applied)
            )
            if since is not None:
                q = q.where(EVENTS.c.received_at >= since)
            return set(conn.execute(q).scalars())

    # --- jobs -----------------------------------------------------------------------------

    def create_job(self, job: Job) -> None:
        with self.store.begin() as conn:
            conn.execute(insert(JOBS).values(_job_row(job)))

    def job(self, job_id: str) -> Job | None:
        with self.store.begin() as conn:
            r = conn.execute(select(JOBS).where(JOBS.c.job_id == job_id)).mappings().first()
        return _job(r) if r is not None else None

    def jobs(self, employee_id: str | None = None, states: Sequence[JobState] = ()) -> list[Job]:
        with self.store.begin() as conn:
            q = select(JOBS)
            if employee_id is not None:
                q = q.where(JOBS.c.employee_id == employee_id)
            if states:
                q = q.where(JOBS.c.state.in_([s.value for s in states]))
            return [_job(r) for r in conn.execute(q.order_by(JOBS.c.created_at)).mappings()]

    def start_job(self, job_id: str, now: datetime, node: str, lease_until: datetime | None = None) -> bool:
        """queued -> running, owned by ``node`` until ``lease_until``. False when the job is not
        queued (started by someone else, cancelled, finished)."""
        with self.store.begin() as conn:
            result = conn.execute(
                update(JOBS)
                .where(JOBS.c.job_id == job_id, JOBS.c.state == JobState.QUEUED.value)
                .values(
                    state=JobState.RUNNING.value,
                    started_at=now,
                    node=node,
                    lease_expires_at=lease_until,
                    attempts=JOBS.c.attempts + 1,
                )
            )
            return bool(result.rowcount)

    def renew_leases(self, node: str, job_ids: Sequence[str], until: datetime) -> set[str]:
        """Extend the lease of those of ``job_ids`` that ``node`` still owns (queued or running);
        returns the ids renewed (a missing one finished, or was taken over)."""
        if not job_ids:
            return set()
        held = [JobState.QUEUED.value, JobState.RUNNING.value]
        mine = (JOBS.c.job_id.in_(list(job_ids)), JOBS.c.node == node, JOBS.c.state.in_(held))
        with self.store.begin() as conn:
            conn.execute(update(JOBS).where(*mine).values(lease_expires_at=until))
            return set(conn.execute(select(JOBS.c.job_id).where(*mine)).scalars())

    def claim_orphaned(self, now: datetime, node: str, lease_until: datetime, limit: int = 20) -> list[Job]:
        """Take over ``queued`` and ``running`` jobs whose owner's lease expired (or that have no
        lease); each job is claimed by one caller only. The job keeps its state; the caller runs
        it (a queued one through ``start_job``, a running one again from the start)."""
        held = [JobState.QUEUED.value, JobState.RUNNING.value]
        orphaned = (JOBS.c.lease_expires_at.is_(None)) | (JOBS.c.lease_expires_at <= now)

        def take_over(conn: Connection, r: RowMapping) -> bool:
            note = Takeover(now, r["node"], node, JobState(r["state"]), r["lease_expires_at"])
            notes = [*json.loads(r["takeovers_json"] or "[]"), takeover_json(note)]
            return bool(
                conn.execute(
                    update(JOBS)
                    .where(
                        JOBS.c.job_id == r["job_id"],
                        JOBS.c.state == r["state"],
                        JOBS.c.node == r["node"],
                        orphaned,
                    )
                    .values(
                        node=node,
                        lease_expires_at=lease_until,
                        takeovers_json=json.dumps(notes),
                        # A running job starts again from the top; a queued one counts in start_job.
                        attempts=JOBS.c.attempts + (1 if r["state"] == JobState.RUNNING.value else 0),
                    )
                ).rowcount
            )

        candidates = select(JOBS).where(JOBS.c.state.in_(held), orphaned).order_by(JOBS.c.created_at)
        return self._claim_each(candidates.limit(limit), take_over, self._claimed_job)

    def finish_job(
        self,
        job_id: str,
        now: datetime,
        state: JobState,
        *,
        run_id: str | None = None,
        error: str | None = None,
        detail: str = "",
        actions: Sequence[JobAction] = (),
        owner: str | None = None,
        next_attempt_at: datetime | None = None,
        notifications: Sequence[Notification] = (),
    ) -> bool:
        """Record the outcome, and the job's notifications in the same transaction. With
        ``owner``, only while that node still owns the unfinished job (False, and nothing written:
        it was taken over, and the new owner records the outcome).

        ``incomplete`` (a read of the person failed) releases the job until ``next_attempt_at``.
        A final state drops the event's body (its id stays for the replay check)."""
        q = update(JOBS).where(JOBS.c.job_id == job_id)
        if owner is not None:
            q = q.where(
                JOBS.c.node == owner, JOBS.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value])
            )
        incomplete = state is JobState.INCOMPLETE
        with self.store.begin() as conn:
            result = conn.execute(
                q.values(
                    state=state.value,
                    finished_at=None if incomplete else now,
                    run_id=run_id,
                    error=error,
                    detail=detail,
                    actions_json=json.dumps([action_json(a) for a in actions]),
                    lease_expires_at=None,
                    next_attempt_at=next_attempt_at if incomplete else None,
                    node="" if incomplete else JOBS.c.node,
                )
            )
            if not result.rowcount:
                return False
            if state.final:
                conn.execute(
                    update(EVENTS)
                    .where(EVENTS.c.job_id == job_id, EVENTS.c.body_json != "")
                    .values(body_json="")
                )
            add_notifications(conn, notifications)
            return True

    def claim_retries(self, now: datetime, node: str, lease_until: datetime, limit: int = 20) -> list[Job]:
        """Queue again the incomplete jobs whose next attempt has come, owned by ``node``; each is
        claimed by one caller only. The caller starts them (``start_job``)."""
        due = (JOBS.c.state == JobState.INCOMPLETE.value, JOBS.c.next_attempt_at <= now)

        def requeue(conn: Connection, r: RowMapping) -> bool:
            return bool(
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.job_id == r["job_id"], *due)
                    .values(state=JobState.QUEUED.value, node=node, lease_expires_at=lease_until)
                ).rowcount
            )

        candidates = select(JOBS.c.job_id).where(*due).order_by(JOBS.c.next_attempt_at)
        return self._claim_each(candidates.limit(limit), requeue, self._claimed_job)

    def prune_events(self, received_before: datetime) -> int:
        """Delete the events received before ``received_before`` whose job is finished (their ids
        no longer need to be remembered for the replay check), and drop any body left on an event
        whose job is finished; returns how many events were deleted."""
        finals = [s.value for s in JobState if s.final]
        finished = select(JOBS.c.job_id).where(JOBS.c.state.in_(finals))
        with self.store.begin() as conn:
            conn.execute(
                update(EVENTS)
                .where(EVENTS.c.body_json != "", EVENTS.c.job_id.in_(finished))
                .values(body_json="")
            )
            done = conn.execute(
                delete(EVENTS).where(EVENTS.c.received_at < received_before, EVENTS.c.job_id.in_(finished))
            )
            return int(done.rowcount or 0)

    def event_count(self) -> int:
        with self.store.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar() or 0)

    def abandon_running(self, node: str, now: datetime, reason: str) -> list[str]:
        """When this replica stops: mark its running jobs failed (``reason``) and release its
        queued ones (lease expired now), which another replica, or the next start, then runs."""
        with self.store.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(JOBS.c.node == node, JOBS.c.state == JobState.QUEUED.value)
                .values(lease_expires_at=now)
            )
            ids = list(
                conn.execute(
                    select(JOBS.c.job_id).where(JOBS.c.node == node, JOBS.c.state == JobState.RUNNING.value)
                ).scalars()
            )
            if ids:
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.job_id.in_(ids), JOBS.c.state == JobState.RUNNING.value)
                    .values(state=JobState.FAILED.value, finished_at=now, error=reason, lease_expires_at=None)
                )
        return ids

    # --- scheduled reconciles -------------------------------------------------------------

    def cancel_pending(self, employee_id: str, now: datetime, reason: str) -> list[str]:
        """Cancel waiting (or incomplete) terminations of one person (on rehire); returns the
        cancelled job ids."""
        waiting = [JobState.QUEUED.value, JobState.SCHEDULED.value, JobState.INCOMPLETE.value]
        kinds = [JobKind.TERMINATE.value, JobKind.HR_REFRESH.value]
        with self.store.begin() as conn:
            ids = list(
                conn.execute(
                    select(JOBS.c.job_id).where(
                        JOBS.c.employee_id == employee_id,
                        JOBS.c.state.in_(waiting),
                        JOBS.c.kind.in_(kinds),
                    )
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(
                update(JOBS)
                .where(JOBS.c.job_id.in_(ids), JOBS.c.state.in_(waiting))
                .values(
                    state=JobState.CANCELLED.value,
                    finished_at=now,
                    detail=reason,
                    next_attempt_at=None,
                    lease_expires_at=None,
                )
            )
            conn.execute(
                update(SCHEDULED)
                .where(SCHEDULED.c.job_id.in_(ids), SCHEDULED.c.state == ScheduleState.PENDING.value)
                .values(state=ScheduleState.CANCELLED.value)
            )
        return ids

    def claim_due(
        self, now: datetime, node: str, limit: int = 50, lease_until: datetime | None = None
    ) -> list[ScheduledReconcile]:
        """Claim scheduled reconciles whose time has come; each is claimed by one caller only.

        A claimed reconcile's job goes from ``scheduled`` to ``queued``.
        """

        def claim(conn: Connection, r: RowMapping) -> bool:
            won = conn.execute(
                update(SCHEDULED)
                .where(SCHEDULED.c.id == r["id"], SCHEDULED.c.state == ScheduleState.PENDING.value)
                .values(state=ScheduleState.CLAIMED.value, claimed_by=node, claimed_at=now)
            ).rowcount
            if won:
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.job_id == r["job_id"], JOBS.c.state == JobState.SCHEDULED.value)
                    .values(state=JobState.QUEUED.value, node=node, lease_expires_at=lease_until)
                )
            return bool(won)

        candidates = (
            select(SCHEDULED)
            .where(SCHEDULED.c.state == ScheduleState.PENDING.value, SCHEDULED.c.due_at <= now)
            .order_by(SCHEDULED.c.due_at)
        )
        return self._claim_each(
            candidates.limit(limit),
            claim,
            lambda r: record_of(ScheduledReconcile, r, state=ScheduleState.CLAIMED, claimed_by=node),
        )

    def scheduled(self, employee_id: str | None = None) -> list[ScheduledReconcile]:
        with self.store.begin() as conn:
            q = select(SCHEDULED)
            if employee_id is not None:
                q = q.where(SCHEDULED.c.employee_id == employee_id)
            rows = conn.execute(q.order_by(SCHEDULED.c.id)).mappings()
            return [record_of(ScheduledReconcile, r) for r in rows]

    # --- claiming -------------------------------------------------------------------------

    def _claim_each(
        self,
        candidates: Executable,
        claim: Callable[[Connection, RowMapping], bool],
        claimed: Callable[[RowMapping], T | None],
    ) -> list[T]:
        """Of the rows of ``candidates`` (read in one transaction), what ``claimed`` gives for
        each that ``claim`` wins once its transaction is committed. Each row is tried in a
        transaction of its own: ``claim`` is a conditional update whose row count says whether
        this caller won, so of two callers at once exactly one claims a row."""
        with self.store.begin() as conn:
            rows = list(conn.execute(candidates).mappings())
        out: list[T] = []
        for r in rows:
            with self.store.begin() as conn:
                won = claim(conn, r)
            item = claimed(r) if won else None
            if item is not None:
                out.append(item)
        return out

    def _claimed_job(self, r: RowMapping) -> Job | None:
        """A claimed job, read again after its claim."""
        return self.job(r["job_id"])


def _job_row(job: Job) -> dict[str, object]:
    return row_of(
        job,
        JOBS,
        actions_json=json.dumps([action_json(a) for a in job.actions]),
        takeovers_json=json.dumps([takeover_json(t) for t in job.takeovers]),
    )


def _job(r: RowMapping) -> Job:
    return record_of(
        Job,
        r,
        actions=tuple(JobAction(**a) for a in json.loads(r["actions_json"])),
        takeovers=tuple(takeover_of(t) for t in json.loads(r["takeovers_json"] or "[]")),
    )
