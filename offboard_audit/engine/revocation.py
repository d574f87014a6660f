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

Where the findings and the circuit breaker come from: ``revoke`` (CLI) uses the stored findings
and the verdict of ``store.latest_run()``: the newest finished run, skipping abandoned runs,
never a targeted run in place of a full run whose breaker tripped; a run stores its findings and
its breaker in one transaction. It does not run an audit of its own. ``auto_revoke`` (daemon,
webhook) uses the run it is given.

Out-of-date data never reaches the wrong account: every finding carries the immutable
identity of its account (``Account.uid``: AWS UserId, objectGUID, entryUUID, nsUniqueId, GCP
uniqueId or binding member). The engine re-reads it before every change and undo; a
different or missing identity (a name deleted and reused) is recorded as ``target-changed``
in the audit chain and nothing is touched. A credential already in the target state is a
``noop``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from datetime import UTC, datetime

from offboard_audit.config import Config
from offboard_audit.core import selectors
from offboard_audit.core.actions import ActionDef
from offboard_audit.core.caps import cap_refusal
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.plan_file import PlanFile
from offboard_audit.core.plan_records import Plan, PlannedAction
from offboard_audit.core.planning import build_plan
from offboard_audit.core.protocols import Revoker, SourceContext
from offboard_audit.core.records import Exemption, Finding, FindingStatus, Person
from offboard_audit.core.runs import RunResult, RunStatus
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.journal import ActionOutcome, ApplyReport, Journal, dry_run, outcome
from offboard_audit.engine.locks import HeldLock, LockNotAcquired, acquire
from offboard_audit.engine.steps import Step, apply_step, describe, read_state, settle_interrupted, undo_step
from offboard_audit.engine.undo import newest_applied, triage, undo_record, undo_refusal
from offboard_audit.storage.actions import NewEvent, append_event, load_actions
from offboard_audit.storage.store import Store

Inputs = tuple[list[Finding], dict[str, datetime]]


@dataclass(frozen=True)
class PassScope:
    """What one revoke pass may act on: these findings (all when empty), this employee_id's, at
    most ``max_people``/``max_actions`` (lower than the policy's cap), the actions of a plan file."""

    finding_ids: Collection[str] = ()
    person: str | None = None
    max_people: int | None = None
    max_actions: int | None = None
    plan_file: PlanFile | None = None


class PassInterrupted(Exception):
    """A revoke or undo pass stopped part-way by an error it could not record (a locked or full
    database) or by an interrupt. ``report`` holds what the pass had already done; ``cause`` is
    why it stopped. Every action that ran has its intent and outcome in the audit log."""

    def __init__(self, report: ApplyReport, cause: BaseException) -> None:
        super().__init__(f"stopped part-way: {type(cause).__name__}: {cause}")
        self.report = report
        self.cause = cause


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class RevocationEngine:
    """Plans and applies revocations under every safety rule (see docs/revocation.md).

    ``actor`` is recorded on every action and audit event ("cli:alice", "daemon").
    ``lock_timeout`` is how long to wait for another process's pass to finish; ``reporter``
    prints progress lines; ``revokers``: ready-made revokers by source name (tests), the rest
    are built from the config.
    """

    config: Config
    store: Store
    ctx: SourceContext
    actor: str
    _: KW_ONLY
    lock_timeout: float = 30.0
    reporter: InitVar[Callable[[str], None] | None] = None
    clock: Callable[[], datetime] = _utc_now
    revokers: InitVar[Mapping[str, Revoker] | None] = None
    report: Callable[[str], None] = field(init=False)
    journal: Journal = field(init=False)
    _revokers: dict[str, Revoker] = field(init=False)

    def __post_init__(
        self, reporter: Callable[[str], None] | None, revokers: Mapping[str, Revoker] | None
    ) -> None:
        self.report = reporter or (lambda _m: None)
        self._revokers = dict(revokers or {})
        self.journal = Journal(self.store, self.actor, self._time, self.report)

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
        breaker: Callable[[], str | None] | None = None,
    ) -> Plan:
        """The plan for the stored findings (or ``inputs``), given everything applied so far.

        Findings of people the stored HR data no longer lists as departed (a rehire since) are
        held, unless the HR circuit breaker (``breaker``, by default the stored one) holds: the
        stored people are then the last good read, older than the findings, and nothing is
        applied anyway."""
        findings, observed = inputs if inputs is not None else self.stored_inputs()
        tripped = (breaker or self.stored_breaker)()
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
            # By index, only the findings' people: a webhook job's pass must not load the workforce.
            people_now=None if tripped else self._people_of(findings),
        )

    def _people_of(self, findings: Sequence[Finding]) -> list[Person]:
        """The stored people of ``findings`` (looked up by employee id, as matching compares)."""
        return self.store.people_with_keys(("id", f.person.employee_id) for f in findings if f.person)

    # --- revoke ----------------------------------------------------------------------------

    def revoke(
        self,
        now: datetime,
        *,
        apply: bool,
        finding_ids: Collection[str] = (),
        person: str | None = None,
        max_people: int | None = None,
        max_actions: int | None = None,
        plan_file: PlanFile | None = None,
    ) -> ApplyReport:
        """``offboard-audit revoke``: act on the stored findings (dry run unless ``apply``).
        ``max_people``/``max_actions`` lower the blast-radius cap for this pass."""
        scope = PassScope(finding_ids, person, max_people, max_actions, plan_file)
        return self._run(now, scope, apply=apply, breaker=self.stored_breaker, inputs=self.stored_inputs)

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

        return self._run(now, PassScope(person=person), apply=True, breaker=breaker, inputs=inputs)

    def _run(
        self,
        now: datetime,
        scope: PassScope,
        *,
        apply: bool,
        breaker: Callable[[], str | None],
        inputs: Callable[[], Inputs],
    ) -> ApplyReport:
        policy = self.config.policy
        limit = scope.max_people if scope.max_people is not None else policy.max_people_per_run
        action_limit = scope.max_actions if scope.max_actions is not None else policy.max_actions_per_run
        plan_file = scope.plan_file

        def make_plan() -> tuple[Plan, str | None]:
            reason = breaker()
            data = inputs()
            plan = self.plan(
                now,
                finding_ids=scope.finding_ids,
                person=scope.person,
                inputs=data,
                breaker=lambda: reason,
            )
            if plan_file is not None:
                if plan.fingerprint != plan_file.fingerprint:
                    reason = reason or (
                        f"plan {plan_file.plan_id} is stale: the findings changed since it was made "
                        f"at {plan_file.created_at.isoformat()}; make a new plan"
                    )
                plan = plan.only(plan_file.keys)
            if reason is None:
                reason = cap_refusal(plan.actions, limit, action_limit)
            return plan, reason

        if not apply:
            plan, reason = make_plan()
            outcomes = tuple(dry_run(pa) for pa in plan.actions)
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
                applied: list[ActionOutcome] = []
                try:
                    for pa in plan.actions:
                        applied.append(
                            self._apply_guarded(pa, plan.plan_id, now, self.store.list_exemptions(), lock)
                        )
                except BaseException as exc:
                    # A pass that stops part-way (a locked or full database, Ctrl-C) must still say
                    # what it had already changed.
                    report = ApplyReport(None, tuple(applied), recovered=recovered, plan=plan, limit=limit)
                    raise PassInterrupted(report, exc) from exc
                return ApplyReport(None, tuple(applied), recovered=recovered, plan=plan, limit=limit)
        except LockNotAcquired as exc:
            return ApplyReport(f"{exc}; try again later", (), limit=limit)

    def _guard(self, pa: PlannedAction, now: datetime, exemptions: Sequence[Exemption]) -> str | None:
        """Last check before touching anything: protected and exempted never pass."""
        return selectors.last_moment_refusal(
            self.config.policy.protected, exemptions, pa.account(), pa.credential(), now
        )

    def _apply_guarded(
        self, pa: PlannedAction, plan_id: str, now: datetime, exemptions: Sequence[Exemption], lock: HeldLock
    ) -> ActionOutcome:
        rec = self.journal.new_record(pa, plan_id, self._time(now))
        why = self._guard(pa, now, exemptions)
        if why is None and lock.lost:
            why = "the revocation lock was taken over by another process"
        if why is not None:
            return self.journal.skipped(rec, why)
        done = self._apply_one(rec)
        lock.renew()
        return done

    def _apply_one(self, rec: ActionRecord) -> ActionOutcome:
        """Run the action's steps (``steps.apply_step``): the intent event and the action row are
        written before anything can change, the outcome event after."""
        self.report(f"{rec.action} on {rec.source}:{rec.username}:{rec.credential_id}")
        step = self._step(
            rec,
            "could not read the state before acting",
            lambda revoker: apply_step(
                revoker, rec.action, rec.target, lambda prior: self.journal.intent(rec, prior)
            ),
        )
        if not step.started:
            return self.journal.not_started(rec, step, "outcome")
        return self.journal.applied(rec, step)

    def _step(self, rec: ActionRecord, failed: str, run: Callable[[Revoker], Step]) -> Step:
        try:
            revoker = self.revoker(rec.source)
        except Exception as exc:
            return Step(ActionStatus.FAILED, error=f"{failed}: {describe(exc)}")
        return run(revoker)

    # --- crash recovery ---------------------------------------------------------------------

    def _recover(self, now: datetime) -> tuple[ActionOutcome, ...]:
        """Settle actions left in ``intent`` by a process that died (we hold the lock: it is not
        running): re-read each target and record what it shows (``steps.settle_interrupted``)."""
        out: list[ActionOutcome] = []
        for rec in load_actions(self.store, statuses=[ActionStatus.INTENT, ActionStatus.UNKNOWN]):
            try:
                state = read_state(self.revoker(rec.source), rec.action, rec.target)
            except Exception as exc:
                # Unknown outcome: leave the intent; planning holds the finding until it can be read.
                out.append(
                    outcome(rec, ActionStatus.INTENT, f"could not re-read to recover: {describe(exc)}")
                )
                continue
            settled = settle_interrupted(rec.target, rec.prior_state, rec.undo_of is not None, state)
            out.append(self.journal.recovered(rec, settled, state, now))
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
        return self._undo(newest_applied(load_actions(self.store, person=employee_id)), now, apply)

    def _undo(self, recs: Sequence[ActionRecord], now: datetime, apply: bool) -> ApplyReport:
        ready, outcomes = triage(recs, apply)
        if not apply or not ready:
            return ApplyReport(None, tuple(outcomes), dry_run=not apply)
        try:
            with acquire(self.store, self.actor, self.lock_timeout, on_wait=self.report) as lock:
                recovered = self._recover(now)
                fresh = {
                    r.action_id: r for r in load_actions(self.store, action_ids=[r.action_id for r in ready])
                }
                try:
                    for r in ready:
                        current = fresh.get(r.action_id, r)
                        skip = undo_refusal(current)
                        outcomes.append(skip if skip is not None else self._undo_one(current, now))
                        lock.renew()
                except BaseException as exc:
                    raise PassInterrupted(
                        ApplyReport(None, tuple(outcomes), recovered=recovered), exc
                    ) from exc
                return ApplyReport(None, tuple(outcomes), recovered=recovered)
        except LockNotAcquired as exc:
            return ApplyReport(f"{exc}; try again later", tuple(outcomes))

    def _undo_one(self, orig: ActionRecord, now: datetime) -> ActionOutcome:
        prior = orig.prior_state
        assert prior is not None
        undo = undo_record(orig, self.actor, self._time(now))
        step = self._step(
            undo,
            "could not read the current state",
            lambda revoker: undo_step(
                revoker,
                orig.action,
                orig.target,
                prior,
                lambda current: self.journal.undo_intent(undo, prior, current),
            ),
        )
        if not step.started:
            return self.journal.not_started(undo, step, "undo-outcome")
        return self.journal.undone(undo, step)


__all__ = ["ActionOutcome", "ApplyReport", "Inputs", "RevocationEngine"]
