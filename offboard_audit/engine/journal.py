"""What the revocation engine writes for each action: its row in the ``actions`` table and its
audit events, and what it reports back (:class:`ActionOutcome`, :class:`ApplyReport`).

Events per action: ``intent`` (with the prior state, in the same transaction as the action row)
before anything can change, then ``outcome``; for an undo ``undo-intent`` and ``undo-outcome``;
an action that stopped before its intent (a failed read, a target whose identity changed) has
its outcome event only; ``skipped`` for a last-moment guard; ``recovered`` when a later pass
settles an intent left behind by a process that died.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from offboard_audit.core.actions import ResourceState, state_json
from offboard_audit.core.jobs import JobAction
from offboard_audit.core.plan_records import Plan, PlannedAction
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.steps import Step
from offboard_audit.storage.actions import NewEvent, record_new_action, record_outcome
from offboard_audit.storage.store import Store

# Outcome statuses that exist only in reports (never stored).
DRY_RUN = "dry-run"
IRREVERSIBLE = "irreversible"
NOTHING = "nothing"
REFUSED = "refused"


@dataclass(frozen=True)
class ActionOutcome(JobAction):
    """What happened (or would happen, in a dry run) to one action: what a job records of it
    (:class:`JobAction`) and what a report shows besides."""

    message: str = ""
    stage: str = "disable"
    reversible: bool = True
    person: str | None = None
    account: str = ""
    credential_id: str = ""
    undo_of: str | None = None


@dataclass(frozen=True)
class ApplyReport:
    """The result of one revoke/undo pass. ``refused`` says why nothing was applied."""

    refused: str | None
    outcomes: tuple[ActionOutcome, ...] = ()
    dry_run: bool = False
    recovered: tuple[ActionOutcome, ...] = ()
    plan: Plan | None = None
    limit: int | None = None

    @property
    def changed(self) -> int:
        return sum(1 for o in self.outcomes if o.status in (ActionStatus.APPLIED, ActionStatus.RESTORED))

    @property
    def failed(self) -> tuple[ActionOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == ActionStatus.FAILED)

    @property
    def ok(self) -> bool:
        """Nothing refused, nothing failed, no target changed, nothing irreversible left undone."""
        return self.refused is None and not any(
            o.status in (ActionStatus.FAILED, IRREVERSIBLE, ActionStatus.TARGET_CHANGED, ActionStatus.UNKNOWN)
            for o in self.outcomes
        )


def new_action_id() -> str:
    return "a-" + uuid.uuid4().hex[:16]


def dry_run(pa: PlannedAction) -> ActionOutcome:
    """What a dry run reports for a planned action."""
    return _outcome_of(pa, "", DRY_RUN, None, pa.description, None)


def outcome(rec: ActionRecord, status: str, error: str | None = None, message: str = "") -> ActionOutcome:
    return _outcome_of(rec, rec.action_id, status, error, message, rec.undo_of)


def _outcome_of(
    a: PlannedAction | ActionRecord,
    action_id: str,
    status: str,
    error: str | None,
    message: str,
    undo_of: str | None,
) -> ActionOutcome:
    # A planned action and a stored one describe their action and target alike.
    return ActionOutcome(
        action_id=action_id,
        finding_id=a.finding_id,
        source=a.source,
        action=a.action,
        status=status,
        error=error,
        message=message,
        stage=a.stage.value,
        reversible=a.reversible,
        person=a.person,
        account=a.username,
        credential_id=a.credential_id,
        undo_of=undo_of,
    )


def payload(rec: ActionRecord) -> dict[str, Any]:
    return {
        "action_id": rec.action_id,
        "plan_id": rec.plan_id,
        "finding_id": rec.finding_id,
        "person": rec.person,
        "source": rec.source,
        "system": rec.system,
        "scope": rec.scope,
        "account_id": rec.account_id,
        "account_uid": rec.account_uid,
        "username": rec.username,
        "credential_id": rec.credential_id,
        "credential_kind": rec.credential_kind.value,
        "action": rec.action,
        "stage": rec.stage.value,
        "reversible": rec.reversible,
        "undo_of": rec.undo_of,
    }


@dataclass(frozen=True)
class Journal:
    """Writes one pass's action rows and audit events, all by ``actor``.

    ``time(at)`` is the wall-clock time to record, never earlier than ``at``; ``report`` prints
    progress lines.
    """

    store: Store
    actor: str
    time: Callable[[datetime], datetime]
    report: Callable[[str], None]

    def new_record(self, pa: PlannedAction, plan_id: str, at: datetime, action_id: str = "") -> ActionRecord:
        """The action row for ``pa`` before its first event (status ``intent``)."""
        return ActionRecord(
            action_id=action_id or new_action_id(),
            plan_id=plan_id,
            finding_id=pa.finding_id,
            source=pa.source,
            system=pa.system,
            scope=pa.scope,
            account_id=pa.account_id,
            username=pa.username,
            credential_id=pa.credential_id,
            credential_kind=pa.credential_kind,
            detail=pa.detail,
            account_uid=pa.account_uid,
            action=pa.action,
            stage=pa.stage,
            reversible=pa.reversible,
            person=pa.person,
            status=ActionStatus.INTENT,
            error=None,
            prior_state=None,
            result_state=None,
            actor=self.actor,
            undo_of=None,
            created_at=at,
            updated_at=at,
        )

    def skipped(self, rec: ActionRecord, why: str) -> ActionOutcome:
        rec = replace(rec, status=ActionStatus.SKIPPED, error=why)
        self._new(rec, "skipped", {"reason": why})
        return outcome(rec, ActionStatus.SKIPPED, why)

    def intent(self, rec: ActionRecord, prior: ResourceState) -> None:
        """Before anything can change: the action row and its intent with the prior state."""
        self._new(replace(rec, prior_state=prior), "intent", {"prior_state": state_json(prior)})

    def undo_intent(self, undo: ActionRecord, restore_to: ResourceState, current: ResourceState) -> None:
        self._new(
            replace(undo, prior_state=current),
            "undo-intent",
            {"restore_to": state_json(restore_to), "current": state_json(current)},
        )

    def applied(self, rec: ActionRecord, step: Step) -> ActionOutcome:
        """The outcome of an action whose intent was written."""
        self._outcome(
            rec,
            "outcome",
            step,
            {"message": step.message, "before": state_json(step.before), "after": state_json(step.after)},
        )
        return outcome(rec, step.status, step.error, step.message)

    def undone(self, undo: ActionRecord, step: Step) -> ActionOutcome:
        """The outcome of an undo whose intent was written; the original becomes ``undone``."""
        done = step.status in (ActionStatus.RESTORED, ActionStatus.UNCHANGED)
        also = {undo.undo_of: ActionStatus.UNDONE} if done and undo.undo_of else {}
        extra = {"message": step.message, "after": state_json(step.after)}
        self._outcome(undo, "undo-outcome", step, extra, also)
        return outcome(undo, step.status, step.error, step.message)

    def not_started(self, rec: ActionRecord, step: Step, kind: str) -> ActionOutcome:
        """A step that stopped before its intent (``kind`` is its outcome event): nothing changed."""
        if step.status is ActionStatus.TARGET_CHANGED and step.before is not None:
            return self.target_changed(rec, step.before, step.error or "", kind)
        error = step.error or "failed before the intent"
        rec = replace(rec, status=ActionStatus.FAILED, error=error)
        self._new(rec, kind, {"status": ActionStatus.FAILED, "error": error})
        return outcome(rec, ActionStatus.FAILED, error)

    def target_changed(
        self, rec: ActionRecord, observed: ResourceState, why: str, kind: str
    ) -> ActionOutcome:
        """The target is not the object planned for; nothing was changed."""
        rec = replace(rec, status=ActionStatus.TARGET_CHANGED, error=why, prior_state=observed)
        self.report(f"{rec.action} on {rec.source}:{rec.username}: target changed, nothing touched")
        extra = {"status": ActionStatus.TARGET_CHANGED, "error": why, "observed_identity": observed.identity}
        self._new(rec, kind, extra)
        return outcome(rec, ActionStatus.TARGET_CHANGED, why)

    def recovered(
        self,
        rec: ActionRecord,
        settled: Step,
        observed: ResourceState,
        now: datetime,
    ) -> ActionOutcome:
        """An intent left by a process that died, settled from what ``observed`` shows."""
        restored = settled.status is ActionStatus.RESTORED
        also = {rec.undo_of: ActionStatus.UNDONE} if restored and rec.undo_of else {}
        at = self.time(now)
        record_outcome(
            self.store,
            rec.action_id,
            settled.status,
            at,
            NewEvent(
                "recovered",
                at,
                self.actor,
                {
                    **payload(rec),
                    "status": settled.status,
                    "error": settled.error,
                    "observed": state_json(observed),
                },
                rec.action_id,
            ),
            error=settled.error,
            result_state=observed,
            also=also,
        )
        self.report(f"recovered {rec.action_id}: {settled.message}")
        return outcome(rec, settled.status, settled.error, settled.message)

    def _new(self, rec: ActionRecord, kind: str, extra: Mapping[str, Any]) -> None:
        event = NewEvent(kind, rec.created_at, self.actor, {**payload(rec), **extra}, rec.action_id)
        record_new_action(self.store, rec, event)

    def _outcome(
        self,
        rec: ActionRecord,
        kind: str,
        step: Step,
        extra: Mapping[str, Any],
        also: Mapping[str, ActionStatus] | None = None,
    ) -> None:
        done_at = self.time(rec.created_at)
        record_outcome(
            self.store,
            rec.action_id,
            step.status,
            done_at,
            NewEvent(
                kind,
                done_at,
                self.actor,
                {**payload(rec), "status": step.status, "error": step.error, **extra},
                rec.action_id,
            ),
            error=step.error,
            result_state=step.after,
            also=dict(also or {}),
        )
