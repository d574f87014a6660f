"""Records of what the store keeps between runs: a person's HR state, runs, actions taken, and
the finding lifecycle's input and output.

Plain frozen dataclasses and enums like :mod:`offboard_audit.core.records`; storage maps them to
and from its tables and depends on nothing else of the core's logic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.records import CredentialKind, Finding, FindingStatus, Person, require_aware_fields
from offboard_audit.core.runs import RunStatus

# --- people ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonState:
    """A stored person with where their data came from.

    ``person`` is what matching and evaluation use. ``hr_row`` is the row the HR source gave
    last (None: never listed by it, e.g. recorded from a webhook event). ``version`` is the
    stored row's version, used for conditional writes (empty for a person not stored yet).
    """

    person: Person
    hr_row: Person | None = None
    changed_at: datetime | None = None
    changed_by: str = ""
    missing_since: datetime | None = None
    version: str = ""

    def __post_init__(self) -> None:
        require_aware_fields(self, "changed_at", "missing_since")

    @property
    def key(self) -> tuple[str, str]:
        return (self.person.source, self.person.employee_id)

    @property
    def in_last_read(self) -> bool:
        """Listed by the HR source in its last accepted read."""
        return self.hr_row is not None and self.missing_since is None


# --- runs -----------------------------------------------------------------------------------


class RunKind(StrEnum):
    AUDIT = "audit"  # a full reconcile (CLI ``audit``, the daemon's schedule)
    HR_REFRESH = "hr_refresh"  # HR sources only (the daemon's ``schedule.hr_refresh``)
    TARGETED = "targeted"  # one person (the HR webhook)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A stored run, without its findings."""

    run_id: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    circuit_breaker: str | None

    def __post_init__(self) -> None:
        require_aware_fields(self, "started_at", "finished_at")


# --- actions --------------------------------------------------------------------------------


class ActionStatus(StrEnum):
    """Statuses stored in the ``actions`` table."""

    PLANNED = "planned"
    INTENT = "intent"  # written before the change; an intent left behind means the process died
    APPLIED = "applied"  # the change was made and verified by re-reading
    NOOP = "noop"  # the object was already in the target state
    FAILED = "failed"  # API error or not verified; the finding stays open and is retried
    UNDONE = "undone"  # a later undo restored the prior state
    SKIPPED = "skipped"
    # The target's immutable identity was not the one planned for (name reused, account gone):
    # nothing was touched. The finding stays open; the next audit sees the account as it is now.
    TARGET_CHANGED = "target-changed"
    # The change call failed and the re-read after it failed too: the change may or may not be in
    # place. Like an intent left by a dead process, it is re-read and settled on the next pass,
    # and planning holds its finding until then.
    UNKNOWN = "unknown"
    # Statuses of undo rows (rows with ``undo_of`` set).
    RESTORED = "restored"
    UNCHANGED = "unchanged"

    @property
    def done(self) -> bool:
        """The credential is in the revoked state because of this action."""
        return self in DONE_STATUSES


DONE_STATUSES = frozenset({ActionStatus.APPLIED, ActionStatus.NOOP})


@dataclass(frozen=True)
class TargetFields:
    """The object an action changes, flattened (shared by planned and stored actions)."""

    source: str
    system: str
    scope: str
    account_id: str
    username: str
    credential_id: str
    credential_kind: CredentialKind
    detail: str
    # The account's immutable identity (Account.uid) when the finding was made.
    account_uid: str

    @property
    def target(self) -> ActionTarget:
        return ActionTarget(
            source=self.source,
            system=self.system,
            account_id=self.account_id,
            username=self.username,
            credential_id=self.credential_id,
            credential_kind=self.credential_kind,
            detail=self.detail,
            scope=self.scope,
            account_uid=self.account_uid,
        )


@dataclass(frozen=True)
class ActionRecord(TargetFields):
    """One stored action (a revocation attempt or an undo), as history for planning and undo."""

    action_id: str
    plan_id: str
    finding_id: str | None
    action: str
    stage: Stage
    reversible: bool
    person: str | None
    status: ActionStatus
    error: str | None
    prior_state: ResourceState | None
    result_state: ResourceState | None
    actor: str
    undo_of: str | None
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        require_aware_fields(self, "created_at", "updated_at")

    @property
    def key(self) -> str:
        return f"{self.finding_id}:{self.action}"


def state_to_json(state: ResourceState | None) -> str | None:
    """ResourceState as JSON text (what the audit log and the action row keep)."""
    if state is None:
        return None
    return json.dumps(
        {
            "exists": state.exists,
            "active": state.active,
            "data": [list(x) for x in state.data],
            "identity": state.identity,
        }
    )


def state_from_json(text: str | None) -> ResourceState | None:
    if text is None:
        return None
    raw = json.loads(text)
    return ResourceState(
        exists=bool(raw["exists"]),
        active=bool(raw["active"]),
        data=tuple((str(k), str(v)) for k, v in raw.get("data", [])),
        identity=raw.get("identity"),
    )


# --- the finding lifecycle (decided by core.lifecycle, persisted by storage) -----------------


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """What the lifecycle needs of a stored finding to tell new, changed and closed apart."""

    finding_id: str
    status: FindingStatus
    source: str
    scope: str
    reason: str
    stale: bool
    exemption_id: str | None
    due_at: datetime | None
    account_uid: str

    def __post_init__(self) -> None:
        require_aware_fields(self, "due_at")


@dataclass(frozen=True, slots=True)
class FindingChange:
    """A finding of this run that differs from its stored row (``was``: its stored status)."""

    finding: Finding
    was: FindingStatus


@dataclass(frozen=True, slots=True)
class FindingClosure:
    """A stored finding this run did not produce, closed (``to`` is revoked or resolved)."""

    finding_id: str
    was: FindingStatus
    to: FindingStatus


@dataclass(frozen=True, slots=True)
class FindingUpdate:
    """Everything one run changes in the stored findings."""

    new: tuple[Finding, ...] = ()
    changed: tuple[FindingChange, ...] = ()
    closed: tuple[FindingClosure, ...] = ()

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "closed": len(self.closed)}
