"""Records of the HR webhook path: accepted events, the jobs they start and scheduled (future)
targeted reconciles, with their states.

Plain frozen dataclasses and enums; ``storage/webhook_store.py`` keeps them, the daemon and the
webhook run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from offboard_audit.core.records import require_aware_fields


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
    # A read of the person failed: not done until a read succeeds and its actions are applied or
    # refused; retried at ``next_attempt_at`` (backoff, bounded by ``[webhook] retry_max_backoff``).
    INCOMPLETE = "incomplete"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.SUPERSEDED)


class Outcome(StrEnum):
    """How a finished (or incomplete) job ended, as logs and metrics label it: a ``failed`` job is
    ``refused`` when the revocation was refused (circuit breaker, blast-radius cap) and
    ``conflict`` when its event named another person's email."""

    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    CONFLICT = "conflict"
    INCOMPLETE = "incomplete"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


REFUSED_PREFIX = "revocation refused: "
CONFLICT_PREFIX = "conflict: "


def job_outcome(state: JobState, error: str | None) -> Outcome | None:
    """The outcome label of a job in ``state`` with ``error`` (None while it waits or runs)."""
    if state is JobState.FAILED:
        if error and error.startswith(REFUSED_PREFIX):
            return Outcome.REFUSED
        if error and error.startswith(CONFLICT_PREFIX):
            return Outcome.CONFLICT
        return Outcome.FAILED
    if state in (JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING):
        return None
    return Outcome(state.value)


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
        require_aware_fields(self, "effective_at", "signed_at", "received_at")


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
        require_aware_fields(self, "at", "lease_expired_at")


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
    next_attempt_at: datetime | None = None  # an incomplete job is retried then

    def __post_init__(self) -> None:
        require_aware_fields(
            self, "created_at", "due_at", "started_at", "finished_at", "lease_expires_at", "next_attempt_at"
        )

    @property
    def outcome(self) -> Outcome | None:
        return job_outcome(self.state, self.error)


@dataclass(frozen=True, slots=True)
class ScheduledReconcile:
    id: int
    job_id: str
    employee_id: str
    due_at: datetime
    state: ScheduleState
    claimed_by: str | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "due_at")


class NotificationState(StrEnum):
    PENDING = "pending"  # written, not delivered yet (retried with backoff)
    DELIVERED = "delivered"  # a 2xx answer came back
    UNDELIVERABLE = "undeliverable"  # given up: see ``last_error``


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification in the outbox, for one target (a configured URL, known by its hash: the
    URL itself, which often carries a token, is never stored)."""

    notification_id: str  # deterministic: the same message for the same target is written once
    origin: str  # "run:<run_id>" or "job:<job_id>"
    kind: str
    target: str
    payload_json: str
    created_at: datetime
    state: NotificationState = NotificationState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "created_at", "next_attempt_at", "delivered_at")


class TickState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"  # its daemon died mid-run: the next leader re-runs the tick


@dataclass(frozen=True, slots=True)
class ScheduledTick:
    """One firing of the schedule (a full reconcile or an HR refresh) on the leader."""

    tick_id: str
    kind: str
    scheduled_at: datetime
    node: str
    state: TickState
    started_at: datetime
    run_id: str | None = None
    finished_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "scheduled_at", "started_at", "finished_at")
