"""The apply/undo engine: revocation that is safe to run unattended.

One pass (``revoke``, ``auto_revoke``, ``undo_*``) runs like this:

1. Take the revocation lock (``locks.py``): one process at a time plans and applies, so a
   daemon and a CLI (or two daemons) never run the same action twice.
2. Recover: an action row left in ``intent`` means a process died between writing its intent
   and its outcome. Its target is re-read and the real outcome recorded (``applied`` if the
   change is in place, ``failed`` so that it is retried if not); it is never re-applied blind.
3. Refuse the whole pass, applying nothing, when the HR circuit breaker is tripped, a plan file
   is stale, or the plan has more actions than the blast-radius cap.
4. Per action, the steps of ``steps.py`` (the same for every connector, whose specs only read,
   change and restore): read the prior state and check the identity, write an ``intent`` event
   (with that state) and the action row in one transaction, change unless it is a no-op,
   re-read once to verify, write the ``outcome`` event. A failure is recorded with its error
   and the next action goes on; the finding stays open and the action is planned again next
   time.

Where the findings and the circuit breaker come from: ``revoke`` (CLI) uses the findings
stored by the newest finished audit run and that run's circuit breaker state; it does not
run an audit of its own. ``auto_revoke`` (daemon, webhook) uses the run it is given.

Out-of-date data never reaches the wrong account: every finding carries the immutable
identity of its account (``Account.uid``: AWS UserId, objectGUID, entryUUID, nsUniqueId, GCP
uniqueId or binding member). The engine re-reads it before every change and undo; a
different or missing identity (a name deleted and reused) is recorded as ``target-changed``
in the audit chain and nothing is touched. A credential already in the target state is a
``noop``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from offboard_audit.config import Config
from offboard_audit.core import selectors
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.planning import (
    Plan,
    PlanFile,
    PlannedAction,
    build_plan,
)
from offboard_audit.core.protocols import Revoker, SourceContext
from offboard_audit.core.records import (
    ActionDef,
    Exemption,
    Finding,
    FindingStatus,
    ResourceState,
    RunResult,
    RunStatus,
    identity_mismatch,
)
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.locks import HeldLock, LockNotAcquired, acquire
from offboard_audit.engine.steps import Step, apply_step, describe, read_state, undo_step
from offboard_audit.storage.actions import (
    NewEvent,
    append_event,
    load_actions,
    record_new_action,
    record_outcome,
)
from offboard_audit.storage.store import Store

# Outcome statuses that exist only in reports (never stored).
DRY_RUN = "dry-run"
IRREVERSIBLE = "irreversible"
NOTHING = "nothing"
REFUSED = "refused"


@dataclass(frozen=True)
class ActionOutcome:
    """What happened (or would happen, in a dry run) to one action."""

    action_id: str
    finding_id: str | None
    source: str
    action: str
    status: str
    error: str | None = None
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
            o.status in (ActionStatus.FAILED, IRREVERSIBLE, ActionStatus.TARGET_CHANGED)
            for o in self.outcomes
        )


def new_action_id() -> str:
    return "a-" + uuid.uuid4().hex[:16]


def _state_json(state: ResourceState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "exists": state.exists,
        "active": state.active,
        "data": dict(state.data),
        "identity": state.identity,
    }


def _outcome(rec: ActionRecord, status: str, error: str | None = None, message: str = "") -> ActionOutcome:
    return ActionOutcome(
        action_id=rec.action_id,
        finding_id=rec.finding_id,
        source=rec.source,
        action=rec.action,
        status=status,
        error=error,
        message=message,
        stage=rec.stage.value,
        reversible=rec.reversible,
        person=rec.person,
        account=rec.username,
        credential_id=rec.credential_id,
        undo_of=rec.undo_of,
    )


def _payload(rec: ActionRecord) -> dict[str, Any]:
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


Inputs = tuple[list[Finding], dict[str, datetime]]


class RevocationEngine:
    """Plans and applies revocations under every safety rule (see docs/revocation.md).

    ``actor`` is recorded on every action and audit event ("cli:alice", "daemon").
    ``lock_timeout`` is how long to wait for another process's pass to finish.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        actor: str,
        *,
        lock_timeout: float = 30.0,
        reporter: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        revokers: Mapping[str, Revoker] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.ctx = ctx
        self.actor = actor
        self.lock_timeout = lock_timeout
        self.report = reporter or (lambda _m: None)
        self.clock = clock or (lambda: datetime.now(UTC))
        # Ready-made revokers by source name (tests); the rest are built from the config.
        self._revokers: dict[str, Revoker] = dict(revokers or {})

    # --- wiring --------------------------------------------------------------------------

    def action_defs(self) -> dict[str, Mapping[str, ActionDef]]:
        """Declared actions per account source that has a revoker (class-level data, no I/O)."""
        return {
            s.name: s.plugin.revoker_actions
            for s in self.config.account_sources
            if s.plugin.make_revoker is not None
        }

    def revoker(self, source: str) -> Revoker:
        if source not in self._revokers:
            src = self.config.source(source)
            if src.plugin.make_revoker is None:
                raise RevokeError(f"source {source!r} ({src.type}) has no revoker")
            self._revokers[source] = src.plugin.make_revoker(src.options, self.ctx)
        return self._revokers[source]

    def _time(self, now: datetime) -> datetime:
        # Wall-clock time for records, never earlier than the logical ``now`` of the pass.
        return max(self.clock(), now)

    # --- inputs ----------------------------------------------------------------------------

    def stored_inputs(self) -> Inputs:
        """Findings of the latest audits and when each open one was last seen active."""
        findings = self.store.list_findings(
            [FindingStatus.OPEN.value, FindingStatus.EXEMPTED.value, FindingStatus.REVOKED.value]
        )
        good = self.store.last_good_read()
        observed = {
            f.finding_id: good[f.source]
            for f in findings
            if f.status is FindingStatus.OPEN and f.source in good
        }
        return findings, observed

    def stored_breaker(self) -> str | None:
        """Why the stored findings must not be acted on, from the newest finished run."""
        run = self.store.latest_run()
        if run is None:
            return "no audit has run yet: run `offboard-audit audit` first"
        if run.status is RunStatus.FAILED:
            return f"the latest audit run {run.run_id} did not complete: run the audit again"
        if run.circuit_breaker:
            return f"HR circuit breaker tripped in run {run.run_id}: {run.circuit_breaker}"
        return None

    def plan(
        self,
        now: datetime,
        *,
        finding_ids: Collection[str] = (),
        person: str | None = None,
        inputs: Inputs | None = None,
    ) -> Plan:
        """The plan for the stored findings (or ``inputs``), given everything applied so far."""
        findings, observed = inputs if inputs is not None else self.stored_inputs()
        return build_plan(
            findings,
            self.action_defs(),
            self.config.policy,
            now,
            history=load_actions(self.store),
            observed_at=observed,
            exemptions=self.store.list_exemptions(),
            finding_ids=finding_ids,
            person=person,
        )

    # --- revoke ----------------------------------------------------------------------------

    def revoke(
        self,
        now: datetime,
        *,
        apply: bool,
        finding_ids: Collection[str] = (),
        person: str | None = None,
        max_actions: int | None = None,
        plan_file: PlanFile | None = None,
    ) -> ApplyReport:
        """``offboard-audit revoke``: act on the stored findings (dry run unless ``apply``)."""
        return self._run(
            now,
            apply=apply,
            breaker=self.stored_breaker,
            inputs=self.stored_inputs,
            finding_ids=finding_ids,
            person=person,
            max_actions=max_actions,
            plan_file=plan_file,
        )

    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> ApplyReport:
        """Plan from this run's findings (only this employee_id's when `person` is given) and apply
        under every safety rule (lock, cap, circuit breaker, protected, exemptions, idempotence).
        The caller has already checked policy.auto_revoke."""

        def inputs() -> Inputs:
            own = list(result.findings)
            ids = {f.finding_id for f in own}
            extra: list[Finding] = []
            if self.config.policy.delete_after is not None:
                # Revoked findings are no longer in a run's results but may be due for deletion.
                extra = [
                    f
                    for f in self.store.list_findings([FindingStatus.REVOKED.value], person=person)
                    if f.finding_id not in ids
                ]
            observed = {f.finding_id: result.started_at for f in own if f.status is FindingStatus.OPEN}
            return own + extra, observed

        def breaker() -> str | None:
            if result.circuit_breaker:
                return f"HR circuit breaker tripped in run {result.run_id}: {result.circuit_breaker}"
            return None

        return self._run(now, apply=True, breaker=breaker, inputs=inputs, person=person)

    def _run(
        self,
        now: datetime,
        *,
        apply: bool,
        breaker: Callable[[], str | None],
        inputs: Callable[[], Inputs],
        finding_ids: Collection[str] = (),
        person: str | None = None,
        max_actions: int | None = None,
        plan_file: PlanFile | None = None,
    ) -> ApplyReport:
        limit = max_actions if max_actions is not None else self.config.policy.max_revocations_per_run

        def make_plan() -> tuple[Plan, str | None]:
            reason = breaker()
            data = inputs()
            plan = self.plan(now, finding_ids=finding_ids, person=person, inputs=data)
            if plan_file is not None:
                if plan.fingerprint != plan_file.fingerprint:
                    reason = reason or (
                        f"plan {plan_file.plan_id} is stale: the findings changed since it was made "
                        f"at {plan_file.created_at.isoformat()}; make a new plan"
                    )
                plan = plan.only(plan_file.keys)
            if reason is None and len(plan.actions) > limit:
                reason = (
                    f"blast-radius cap: the plan has {len(plan.actions)} actions, more than the limit of "
                    f"{limit} (policy.max_revocations_per_run or --max); nothing was applied"
                )
            return plan, reason

        if not apply:
            plan, reason = make_plan()
            outcomes = tuple(self._dry(pa) for pa in plan.actions)
            return ApplyReport(reason, outcomes, dry_run=True, plan=plan, limit=limit)

        try:
            with acquire(self.store, self.actor, self.lock_timeout, on_wait=self.report) as lock:
                recovered = self._recover(now)
                plan, reason = make_plan()
                if reason is not None:
                    append_event(
                        self.store,
                        NewEvent(
                            "refused",
                            self._time(now),
                            self.actor,
                            {"reason": reason, "plan_id": plan.plan_id, "actions": len(plan.actions)},
                        ),
                    )
                    return ApplyReport(reason, (), recovered=recovered, plan=plan, limit=limit)
                # Exemptions are read again before each action: one added while a long pass
                # runs must stop the actions it covers that have not been applied yet.
                applied = [
                    self._apply_guarded(pa, plan.plan_id, now, self.store.list_exemptions(), lock)
                    for pa in plan.actions
                ]
                return ApplyReport(None, tuple(applied), recovered=recovered, plan=plan, limit=limit)
        except LockNotAcquired as exc:
            return ApplyReport(f"{exc}; try again later", (), limit=limit)

    def _dry(self, pa: PlannedAction) -> ActionOutcome:
        return ActionOutcome(
            action_id="",
            finding_id=pa.finding_id,
            source=pa.source,
            action=pa.action,
            status=DRY_RUN,
            message=pa.description,
            stage=pa.stage.value,
            reversible=pa.reversible,
            person=pa.person,
            account=pa.username,
            credential_id=pa.credential_id,
        )

    def _guard(self, pa: PlannedAction, now: datetime, exemptions: Sequence[Exemption]) -> str | None:
        """Last check before touching anything: protected and exempted never pass."""
        account, credential = pa.account(), pa.credential()
        hit = selectors.first_match(self.config.policy.protected, account, credential)
        if hit is not None:
            return f"protected by policy.protected {hit!r}"
        for ex in exemptions:
            if ex.active(now) and selectors.matches(ex.selector, account, credential):
                return f"exempted by {ex.exemption_id}"
        return None

    def _record(self, pa: PlannedAction, plan_id: str, action_id: str, at: datetime) -> ActionRecord:
        return ActionRecord(
            action_id=action_id,
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

    def _apply_guarded(
        self, pa: PlannedAction, plan_id: str, now: datetime, exemptions: Sequence[Exemption], lock: HeldLock
    ) -> ActionOutcome:
        rec = self._record(pa, plan_id, new_action_id(), self._time(now))
        why = self._guard(pa, now, exemptions)
        if why is None and lock.lost:
            why = "the revocation lock was taken over by another process"
        if why is not None:
            rec = replace(rec, status=ActionStatus.SKIPPED, error=why)
            record_new_action(
                self.store,
                rec,
                NewEvent(
                    "skipped", rec.created_at, self.actor, {**_payload(rec), "reason": why}, rec.action_id
                ),
            )
            return _outcome(rec, ActionStatus.SKIPPED, why)
        outcome = self._apply_one(rec)
        lock.renew()
        return outcome

    def _apply_one(self, rec: ActionRecord) -> ActionOutcome:
        """Run the action's steps (``steps.apply_step``): the intent event and the action row are
        written before anything can change, the outcome event after."""
        self.report(f"{rec.action} on {rec.source}:{rec.username}:{rec.credential_id}")

        def intent(prior: ResourceState) -> None:
            record_new_action(
                self.store,
                replace(rec, prior_state=prior),
                NewEvent(
                    "intent",
                    rec.created_at,
                    self.actor,
                    {**_payload(rec), "prior_state": _state_json(prior)},
                    rec.action_id,
                ),
            )

        step = self._step(
            rec,
            "could not read the state before acting",
            lambda revoker: apply_step(revoker, rec.action, rec.target, intent),
        )
        if not step.started:
            return self._not_started(rec, step, "outcome")
        done_at = self._time(rec.created_at)
        record_outcome(
            self.store,
            rec.action_id,
            step.status,
            done_at,
            NewEvent(
                "outcome",
                done_at,
                self.actor,
                {
                    **_payload(rec),
                    "status": step.status,
                    "error": step.error,
                    "message": step.message,
                    "before": _state_json(step.before),
                    "after": _state_json(step.after),
                },
                rec.action_id,
            ),
            error=step.error,
            result_state=step.after,
        )
        return _outcome(rec, step.status, step.error, step.message)

    def _step(self, rec: ActionRecord, failed: str, run: Callable[[Revoker], Step]) -> Step:
        try:
            revoker = self.revoker(rec.source)
        except Exception as exc:
            return Step(ActionStatus.FAILED, error=f"{failed}: {describe(exc)}")
        return run(revoker)

    def _not_started(self, rec: ActionRecord, step: Step, kind: str) -> ActionOutcome:
        """Record a step that stopped before its intent: nothing was changed."""
        if step.status is ActionStatus.TARGET_CHANGED and step.before is not None:
            return self._target_changed(rec, step.before, step.error or "", kind)
        error = step.error or "failed before the intent"
        rec = replace(rec, status=ActionStatus.FAILED, error=error)
        record_new_action(
            self.store,
            rec,
            NewEvent(
                kind,
                rec.created_at,
                self.actor,
                {**_payload(rec), "status": ActionStatus.FAILED, "error": error},
                rec.action_id,
            ),
        )
        return _outcome(rec, ActionStatus.FAILED, error)

    def _target_changed(
        self, rec: ActionRecord, observed: ResourceState, why: str, kind: str
    ) -> ActionOutcome:
        """Record that the target is not the object planned for; nothing was changed."""
        rec = replace(rec, status=ActionStatus.TARGET_CHANGED, error=why, prior_state=observed)
        self.report(f"{rec.action} on {rec.source}:{rec.username}: target changed, nothing touched")
        record_new_action(
            self.store,
            rec,
            NewEvent(
                kind,
                rec.created_at,
                self.actor,
                {
                    **_payload(rec),
                    "status": ActionStatus.TARGET_CHANGED,
                    "error": why,
                    "observed_identity": observed.identity,
                },
                rec.action_id,
            ),
        )
        return _outcome(rec, ActionStatus.TARGET_CHANGED, why)

    # --- crash recovery ---------------------------------------------------------------------

    def _recover(self, now: datetime) -> tuple[ActionOutcome, ...]:
        """Settle actions left in ``intent`` by a process that died (we hold the lock: it is not running)."""
        out: list[ActionOutcome] = []
        for rec in load_actions(self.store, statuses=[ActionStatus.INTENT]):
            try:
                state = read_state(self.revoker(rec.source), rec.action, rec.target)
            except Exception as exc:
                # Unknown outcome: leave the intent; planning holds the finding until it can be read.
                out.append(
                    _outcome(rec, ActionStatus.INTENT, f"could not re-read to recover: {describe(exc)}")
                )
                continue
            also: dict[str, ActionStatus] = {}
            error: str | None = None
            mismatch = identity_mismatch(rec.target, state)
            if mismatch is not None:
                # Whatever the dead process did, the object under this name is another one now.
                status, error, message = ActionStatus.TARGET_CHANGED, mismatch, mismatch
            elif rec.undo_of is None:
                if not state.active:
                    was_active = rec.prior_state is None or rec.prior_state.active
                    status = ActionStatus.APPLIED if was_active else ActionStatus.NOOP
                    message = "recovered after an interruption: the change was found in place"
                else:
                    status = ActionStatus.FAILED
                    error = "interrupted before the change took effect; it will be retried"
                    message = error
            else:
                if state.active:
                    status = ActionStatus.RESTORED
                    also = {rec.undo_of: ActionStatus.UNDONE}
                    message = "recovered after an interruption: the restore was found in place"
                else:
                    status = ActionStatus.FAILED
                    error = "undo interrupted before the restore took effect"
                    message = error
            at = self._time(now)
            record_outcome(
                self.store,
                rec.action_id,
                status,
                at,
                NewEvent(
                    "recovered",
                    at,
                    self.actor,
                    {**_payload(rec), "status": status, "error": error, "observed": _state_json(state)},
                    rec.action_id,
                ),
                error=error,
                result_state=state,
                also=also,
            )
            self.report(f"recovered {rec.action_id}: {message}")
            out.append(_outcome(rec, status, error, message))
        return tuple(out)

    # --- undo -----------------------------------------------------------------------------

    def undo_action(self, action_id: str, now: datetime, apply: bool = True) -> ApplyReport:
        """Restore what one action changed, from the prior state recorded at its intent."""
        recs = load_actions(self.store, action_ids=[action_id])
        if not recs:
            return ApplyReport(f"no action with id {action_id!r}", dry_run=not apply)
        return self._undo(recs, now, apply)

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> ApplyReport:
        """Undo every applied, reversible action of one person (rehire or mistake), newest first."""
        recs = [
            r
            for r in load_actions(self.store, person=employee_id)
            if r.undo_of is None and r.status == ActionStatus.APPLIED
        ]
        recs.sort(key=lambda r: (r.updated_at, r.created_at), reverse=True)
        return self._undo(recs, now, apply)

    def _undo(self, recs: Sequence[ActionRecord], now: datetime, apply: bool) -> ApplyReport:
        ready: list[ActionRecord] = []
        outcomes: list[ActionOutcome] = []
        for r in recs:
            skip = self._undo_precheck(r)
            if skip is not None:
                outcomes.append(skip)
            elif not apply:
                restore = "active" if r.prior_state and r.prior_state.active else "as recorded"
                outcomes.append(_outcome(r, DRY_RUN, message=f"would restore {r.credential_id} to {restore}"))
            else:
                ready.append(r)
        if not apply or not ready:
            return ApplyReport(None, tuple(outcomes), dry_run=not apply)
        try:
            with acquire(self.store, self.actor, self.lock_timeout, on_wait=self.report) as lock:
                recovered = self._recover(now)
                fresh = {
                    r.action_id: r for r in load_actions(self.store, action_ids=[r.action_id for r in ready])
                }
                for r in ready:
                    current = fresh.get(r.action_id, r)
                    skip = self._undo_precheck(current)
                    outcomes.append(skip if skip is not None else self._undo_one(current, now))
                    lock.renew()
                return ApplyReport(None, tuple(outcomes), recovered=recovered)
        except LockNotAcquired as exc:
            return ApplyReport(f"{exc}; try again later", tuple(outcomes))

    @staticmethod
    def _undo_precheck(r: ActionRecord) -> ActionOutcome | None:
        if r.undo_of is not None:
            return _outcome(r, NOTHING, message=f"{r.action_id} is itself an undo (of {r.undo_of})")
        if r.status == ActionStatus.UNDONE:
            return _outcome(r, NOTHING, message="already undone")
        if r.status == ActionStatus.NOOP:
            return _outcome(r, NOTHING, message="nothing to undo: this action changed nothing")
        if r.status != ActionStatus.APPLIED:
            return _outcome(r, NOTHING, message=f"nothing to undo: the action is {r.status}")
        if not r.reversible:
            return _outcome(
                r,
                IRREVERSIBLE,
                error=f"{r.action} is irreversible: the prior state cannot be restored by this tool",
                message="irreversible",
            )
        if r.prior_state is None:
            return _outcome(r, ActionStatus.FAILED, error="no prior state was recorded for this action")
        return None

    def _undo_one(self, orig: ActionRecord, now: datetime) -> ActionOutcome:
        at = self._time(now)
        prior = orig.prior_state
        assert prior is not None
        undo = replace(
            orig,
            action_id=new_action_id(),
            plan_id="undo",
            status=ActionStatus.INTENT,
            error=None,
            prior_state=None,
            result_state=None,
            actor=self.actor,
            undo_of=orig.action_id,
            created_at=at,
            updated_at=at,
        )

        def intent(current: ResourceState) -> None:
            record_new_action(
                self.store,
                replace(undo, prior_state=current),
                NewEvent(
                    "undo-intent",
                    at,
                    self.actor,
                    {**_payload(undo), "restore_to": _state_json(prior), "current": _state_json(current)},
                    undo.action_id,
                ),
            )

        step = self._step(
            undo,
            "could not read the current state",
            lambda revoker: undo_step(revoker, orig.action, orig.target, prior, intent),
        )
        if not step.started:
            return self._not_started(undo, step, "undo-outcome")
        status, error, message, after = step.status, step.error, step.message, step.after
        done = status in (ActionStatus.RESTORED, ActionStatus.UNCHANGED)
        also = {orig.action_id: ActionStatus.UNDONE} if done else {}
        done_at = self._time(at)
        record_outcome(
            self.store,
            undo.action_id,
            status,
            done_at,
            NewEvent(
                "undo-outcome",
                done_at,
                self.actor,
                {
                    **_payload(undo),
                    "status": status,
                    "error": error,
                    "message": message,
                    "after": _state_json(after),
                },
                undo.action_id,
            ),
            error=error,
            result_state=after,
            also=also,
        )
        return _outcome(undo, status, error, message)
