"""Storage of HR webhook events, daemon jobs and scheduled (future) targeted reconciles.

Rows stay in here; callers see the frozen records below. Every state change that two daemon
replicas could race on is a conditional ``UPDATE ... WHERE state = ...`` whose row count says
who won, so a job or a scheduled reconcile is run by exactly one replica.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from offboard_audit.records import require_aware
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

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


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

    def __post_init__(self) -> None:
        for name in ("created_at", "due_at", "started_at", "finished_at"):
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

    def terminations_since(self, since: datetime | None) -> set[str]:
        """Employee ids terminated through the webhook since ``since`` (all when None)."""
        with self.store.begin() as conn:
            q = select(EVENTS.c.employee_id).where(EVENTS.c.event == HREventType.TERMINATED.value)
            if since is not None:
                q = q.where(EVENTS.c.received_at >= since)
            return set(conn.execute(q).scalars())

    # --- people ---------------------------------------------------------------------------

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

    def start_job(self, job_id: str, now: datetime, node: str) -> bool:
        """queued -> running. False when the job is not queued (taken, cancelled, finished)."""
        with self.store.begin() as conn:
            result = conn.execute(
                update(JOBS)
                .where(JOBS.c.job_id == job_id, JOBS.c.state == JobState.QUEUED.value)
                .values(state=JobState.RUNNING.value, started_at=now, node=node)
            )
            return bool(result.rowcount)

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
    ) -> None:
        with self.store.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(JOBS.c.job_id == job_id)
                .values(
                    state=state.value,
                    finished_at=now,
                    run_id=run_id,
                    error=error,
                    detail=detail,
                    actions_json=json.dumps([_action_json(a) for a in actions]),
                )
            )

    def abandon_running(self, node: str, now: datetime, reason: str) -> list[str]:
        """Mark this replica's unfinished (queued or running) jobs failed; used when it stops."""
        unfinished = [JobState.RUNNING.value, JobState.QUEUED.value]
        with self.store.begin() as conn:
            ids = list(
                conn.execute(
                    select(JOBS.c.job_id).where(JOBS.c.node == node, JOBS.c.state.in_(unfinished))
                ).scalars()
            )
            if ids:
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.job_id.in_(ids), JOBS.c.state.in_(unfinished))
                    .values(state=JobState.FAILED.value, finished_at=now, error=reason)
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

    def claim_due(self, now: datetime, node: str, limit: int = 50) -> list[ScheduledReconcile]:
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
                    .values(state=JobState.QUEUED.value, node=node)
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
    )
