"""Storage of HR webhook events, daemon jobs and scheduled (future) targeted reconciles.

Rows stay in here; callers see the frozen records below. Every state change that two daemon
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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from offboard_audit.core.records import require_aware
from offboard_audit.storage.models import ScheduledReconcileRow, WebhookEventRow, WebhookJobRow
from offboard_audit.storage.store import Store

EVENTS = WebhookEventRow.__table__  # type: ignore[attr-defined]
JOBS = WebhookJobRow.__table__  # type: ignore[attr-defined]
SCHEDULED = ScheduledReconcileRow.__table__  # type: ignore[attr-defined]


class HREventType(StrEnum):
    TERMINATED = "employee.terminated"
    REHIRED = "employee.rehired"
    UPDATED = "employee.updated"


class JobKind(StrEnum):
    TERMINATE = "terminate"  # targeted reconcile of one leaver (revokes with auto_revoke)
    REHIRE = "rehire"  # cancel pending work, mark active, undo revocations if configured
    UPDATE = "update"  # employee.updated: refresh the stored person, nothing else
    HR_REFRESH = "hr_refresh"  # targeted reconcile of someone an HR-only refresh found departed


class JobState(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"  # waiting for a future effective_at
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # the event is older than the person's last applied status change

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.SUPERSEDED)


class EventStatus(StrEnum):
    """What became of an accepted event (set by the job that handles it)."""

    RECEIVED = "received"  # not handled yet (or a scheduled termination still waiting)
    APPLIED = "applied"  # its change was written to the stored person
    SUPERSEDED = "superseded"  # older than the person's last applied status change: nothing changed
    CONFLICT = "conflict"  # its email belongs to another person: nothing changed


def new_job_id() -> str:
    """Unguessable: the job URL is the only thing that reveals a job."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class HREvent:
    event_id: str
    event: HREventType
    employee_id: str
    email: str | None
    effective_at: datetime
    signed_at: datetime
    received_at: datetime
    body: str = ""

    def __post_init__(self) -> None:
        require_aware(self.effective_at, "HREvent.effective_at")
        require_aware(self.signed_at, "HREvent.signed_at")
        require_aware(self.received_at, "HREvent.received_at")


@dataclass(frozen=True, slots=True)
class JobAction:
    """One action a job took, as the revocation engine reported it."""

    action_id: str
    finding_id: str | None
    source: str
    action: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Takeover:
    """A daemon took a job over from an owner whose lease had expired."""

    at: datetime
    previous_owner: str
    new_owner: str
    from_state: JobState
    lease_expired_at: datetime | None

    def __post_init__(self) -> None:
        require_aware(self.at, "Takeover.at")
        require_aware(self.lease_expired_at, "Takeover.lease_expired_at")


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    kind: JobKind
    employee_id: str
    state: JobState
    created_at: datetime
    event_id: str | None = None
    due_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node: str = ""
    run_id: str | None = None
    error: str | None = None
    detail: str = ""
    actions: tuple[JobAction, ...] = ()
    lease_expires_at: datetime | None = None  # ``node`` owns the job until then (queued/running)
    attempts: int = 0  # how many times a daemon started it
    takeovers: tuple[Takeover, ...] = ()

    def __post_init__(self) -> None:
        for name in ("created_at", "due_at", "started_at", "finished_at", "lease_expires_at"):
            require_aware(getattr(self, name), f"Job.{name}")


@dataclass(frozen=True, slots=True)
class ScheduledReconcile:
    id: int
    job_id: str
    employee_id: str
    due_at: datetime
    state: str
    claimed_by: str | None = None


class WebhookStore:
    """Events, jobs and scheduled reconciles, in the same database as the rest of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- events ---------------------------------------------------------------------------

    def accept(self, event: HREvent, job: Job) -> bool:
        """Store an event with its job in one transaction. False (and nothing written) on a replay."""
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(EVENTS).values(
                        event_id=event.event_id,
                        event=event.event.value,
                        employee_id=event.employee_id,
                        email=event.email,
                        effective_at=event.effective_at,
                        signed_at=event.signed_at,
                        received_at=event.received_at,
                        body_json=event.body,
                        job_id=job.job_id,
                    )
                )
                conn.execute(insert(JOBS).values(**_job_row(job)))
                if job.state is JobState.SCHEDULED:
                    assert job.due_at is not None
                    conn.execute(
                        insert(SCHEDULED).values(
                            job_id=job.job_id,
                            employee_id=job.employee_id,
                            due_at=job.due_at,
                            state="pending",
                            created_at=job.created_at,
                        )
                    )
        except IntegrityError:
            return False
        return True

    def event(self, event_id: str) -> HREvent | None:
        with self.store.begin() as conn:
            r = conn.execute(select(EVENTS).where(EVENTS.c.event_id == event_id)).mappings().first()
        if r is None:
            return None
        return HREvent(
            event_id=r["event_id"],
            event=HREventType(r["event"]),
            employee_id=r["employee_id"],
            email=r["email"],
            effective_at=r["effective_at"],
            signed_at=r["signed_at"],
            received_at=r["received_at"],
            body=r["body_json"],
        )

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
            conn.execute(insert(JOBS).values(**_job_row(job)))

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
        with self.store.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(JOBS.c.job_id.in_(list(job_ids)), JOBS.c.node == node, JOBS.c.state.in_(held))
                .values(lease_expires_at=until)
            )
            return set(
                conn.execute(
                    select(JOBS.c.job_id).where(
                        JOBS.c.job_id.in_(list(job_ids)), JOBS.c.node == node, JOBS.c.state.in_(held)
                    )
                ).scalars()
            )

    def claim_orphaned(self, now: datetime, node: str, lease_until: datetime, limit: int = 20) -> list[Job]:
        """Take over ``queued`` and ``running`` jobs whose owner's lease expired (or that have no
        lease); each job is claimed by one caller only. The job keeps its state; the caller runs
        it (a queued one through ``start_job``, a running one again from the start)."""
        held = [JobState.QUEUED.value, JobState.RUNNING.value]
        orphaned = (JOBS.c.lease_expires_at.is_(None)) | (JOBS.c.lease_expires_at <= now)
        with self.store.begin() as conn:
            rows = list(
                conn.execute(
                    select(JOBS)
                    .where(JOBS.c.state.in_(held), orphaned)
                    .order_by(JOBS.c.created_at)
                    .limit(limit)
                ).mappings()
            )
        claimed: list[Job] = []
        for r in rows:
            note = Takeover(now, r["node"], node, JobState(r["state"]), r["lease_expires_at"])
            notes = [*json.loads(r["takeovers_json"] or "[]"), _takeover_json(note)]
            with self.store.begin() as conn:
                won = conn.execute(
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
            if won:
                job = self.job(r["job_id"])
                if job is not None:
                    claimed.append(job)
        return claimed

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
    ) -> bool:
        """Record the outcome. With ``owner``, only while that node still owns the unfinished job
        (False: it was taken over, and the new owner records the outcome)."""
        q = update(JOBS).where(JOBS.c.job_id == job_id)
        if owner is not None:
            q = q.where(
                JOBS.c.node == owner, JOBS.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value])
            )
        with self.store.begin() as conn:
            result = conn.execute(
                q.values(
                    state=state.value,
                    finished_at=now,
                    run_id=run_id,
                    error=error,
                    detail=detail,
                    actions_json=json.dumps([_action_json(a) for a in actions]),
                    lease_expires_at=None,
                )
            )
            return bool(result.rowcount)

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
        """Cancel waiting terminations of one person (on rehire); returns the cancelled job ids."""
        waiting = [JobState.QUEUED.value, JobState.SCHEDULED.value]
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
                .values(state=JobState.CANCELLED.value, finished_at=now, detail=reason)
            )
            conn.execute(
                update(SCHEDULED)
                .where(SCHEDULED.c.job_id.in_(ids), SCHEDULED.c.state == "pending")
                .values(state="cancelled")
            )
        return ids

    def claim_due(
        self, now: datetime, node: str, limit: int = 50, lease_until: datetime | None = None
    ) -> list[ScheduledReconcile]:
        """Claim scheduled reconciles whose time has come; each is claimed by one caller only.

        A claimed reconcile's job goes from ``scheduled`` to ``queued``.
        """
        with self.store.begin() as conn:
            rows = list(
                conn.execute(
                    select(SCHEDULED)
                    .where(SCHEDULED.c.state == "pending", SCHEDULED.c.due_at <= now)
                    .order_by(SCHEDULED.c.due_at)
                    .limit(limit)
                ).mappings()
            )
        claimed: list[ScheduledReconcile] = []
        for r in rows:
            with self.store.begin() as conn:
                won = conn.execute(
                    update(SCHEDULED)
                    .where(SCHEDULED.c.id == r["id"], SCHEDULED.c.state == "pending")
                    .values(state="claimed", claimed_by=node, claimed_at=now)
                ).rowcount
                if not won:
                    continue
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.job_id == r["job_id"], JOBS.c.state == JobState.SCHEDULED.value)
                    .values(state=JobState.QUEUED.value, node=node, lease_expires_at=lease_until)
                )
            claimed.append(
                ScheduledReconcile(r["id"], r["job_id"], r["employee_id"], r["due_at"], "claimed", node)
            )
        return claimed

    def scheduled(self, employee_id: str | None = None) -> list[ScheduledReconcile]:
        with self.store.begin() as conn:
            q = select(SCHEDULED)
            if employee_id is not None:
                q = q.where(SCHEDULED.c.employee_id == employee_id)
            return [
                ScheduledReconcile(
                    r["id"], r["job_id"], r["employee_id"], r["due_at"], r["state"], r["claimed_by"]
                )
                for r in conn.execute(q.order_by(SCHEDULED.c.id)).mappings()
            ]


def _action_json(a: JobAction) -> dict[str, Any]:
    return {
        "action_id": a.action_id,
        "finding_id": a.finding_id,
        "source": a.source,
        "action": a.action,
        "status": a.status,
        "error": a.error,
    }


def _takeover_json(t: Takeover) -> dict[str, Any]:
    return {
        "at": t.at.isoformat(),
        "previous_owner": t.previous_owner,
        "new_owner": t.new_owner,
        "from_state": t.from_state.value,
        "lease_expired_at": t.lease_expired_at.isoformat() if t.lease_expired_at else None,
    }


def _takeover(d: dict[str, Any]) -> Takeover:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value).astimezone(UTC) if value else None

    at = when(d["at"])
    assert at is not None
    return Takeover(
        at, d["previous_owner"], d["new_owner"], JobState(d["from_state"]), when(d["lease_expired_at"])
    )


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": job.kind.value,
        "employee_id": job.employee_id,
        "event_id": job.event_id,
        "state": job.state.value,
        "created_at": job.created_at,
        "due_at": job.due_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "node": job.node,
        "run_id": job.run_id,
        "error": job.error,
        "detail": job.detail,
        "actions_json": json.dumps([_action_json(a) for a in job.actions]),
        "lease_expires_at": job.lease_expires_at,
        "attempts": job.attempts,
        "takeovers_json": json.dumps([_takeover_json(t) for t in job.takeovers]),
    }


def _job(r: RowMapping) -> Job:
    return Job(
        job_id=r["job_id"],
        kind=JobKind(r["kind"]),
        employee_id=r["employee_id"],
        state=JobState(r["state"]),
        created_at=r["created_at"],
        event_id=r["event_id"],
        due_at=r["due_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        node=r["node"],
        run_id=r["run_id"],
        error=r["error"],
        detail=r["detail"],
        actions=tuple(
            JobAction(
                action_id=a["action_id"],
                finding_id=a["finding_id"],
                source=a["source"],
                action=a["action"],
                status=a["status"],
                error=a["error"],
            )
            for a in json.loads(r["actions_json"])
        ),
        lease_expires_at=r["lease_expires_at"],
        attempts=r["attempts"],
        takeovers=tuple(_takeover(t) for t in json.loads(r["takeovers_json"] or "[]")),
    )
