"""Records of the HR webhook path: accepted events, the jobs they start and scheduled (future)
targeted reconciles, with their states.

Plain frozen dataclasses and enums; ``storage/webhook_store.py`` keeps them, the daemon and the
webhook run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from offboard_audit.core.records import require_aware


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


class ScheduleState(StrEnum):
    """A scheduled (future) targeted reconcile."""

    PENDING = "pending"  # waiting for its due time
    CLAIMED = "claimed"  # one replica took it; its job is queued
    CANCELLED = "cancelled"  # a rehire cancelled it


class EventStatus(StrEnum):
    """What became of an accepted event (set by the job that handles it)."""

    RECEIVED = "received"  # not handled yet (or a scheduled termination still waiting)
    APPLIED = "applied"  # its change was written to the stored person
    SUPERSEDED = "superseded"  # older than the person's last applied status change: nothing changed
    CONFLICT = "conflict"  # its email belongs to another person: nothing changed


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
    state: ScheduleState
    claimed_by: str | None = None

    def __post_init__(self) -> None:
        require_aware(self.due_at, "ScheduledReconcile.due_at")
