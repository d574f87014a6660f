"""Revocation planning. Pure: findings + revoker ActionDefs + policy + history + ``now`` -> Plan.

The plan's records (:class:`Plan`, :class:`PlannedAction`, :class:`HeldFinding`) are in
``core/plan_records.py``; this module decides what goes in them.

No I/O here. The revocation engine loads the inputs (stored findings, the actions already
taken, exemptions) and hands them in; the same inputs always give the same plan.

Rules (design.md, issue 6):

* Only findings that are ``open`` and past ``due_at`` get ``disable`` actions.
* ``delete`` actions come only when ``policy.delete_after`` is set, and only once the
  credential has been disabled (by an applied action) for at least that long. A credential
  kind that has no disable action counts the window from the finding's due time.
* ``ambiguous-owner`` and ``orphan-account`` findings are listed, never planned.
* Protected accounts (``policy.protected``) and exempted credentials are listed, never
  planned, even when asked for by finding id.
* An action already applied (``applied``/``noop``) after the credential was last seen
  active is not planned again; one whose credential showed up active again afterwards is.
* Actions are ordered per person, then system and source, then stage (disable before
  delete), then credential kind (the login itself first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from offboard_audit.core import selectors
from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_records import HeldFinding, Plan, PlannedAction
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Credential,
    CredentialKind,
    Exemption,
    Finding,
    FindingStatus,
    Person,
    Rule,
    require_aware,
)
from offboard_audit.core.rotation import (
    EXPOSURE_RULES,
    RotateTask,
    may_auto_rotate,
    rotate_task,
)
from offboard_audit.core.stored import DONE_STATUSES, ActionRecord, ActionStatus

NEVER_PLANNED_RULES = frozenset({Rule.AMBIGUOUS_OWNER, Rule.ORPHAN_ACCOUNT})
# The findings a plan is made from, so also the ones its fingerprint covers: open ones are acted
# on, exempted ones listed, revoked ones can still reach the delete stage.
_PLANNED_STATUSES = frozenset({FindingStatus.OPEN, FindingStatus.EXEMPTED, FindingStatus.REVOKED})

_STAGE_ORDER = {Stage.DISABLE: 0, Stage.DELETE: 1, Stage.ROTATE: 2}
_KIND_ORDER = {kind: i for i, kind in enumerate(CredentialKind)}


def findings_fingerprint(findings: Iterable[Finding]) -> str:
    """A digest of what a plan depends on in the findings (ids, status, due time, exemption,
    the account's immutable identity)."""
    lines = sorted(
        "|".join(
            (
                f.finding_id,
                f.status.value,
                f.due_at.isoformat() if f.due_at else "",
                f.exemption_id or "",
                "stale" if f.stale else "",
                f.credential.credential_id if f.credential else "",
                f.account.uid,
            )
        )
        for f in findings
        if f.status in _PLANNED_STATUSES
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _sort_key(a: PlannedAction) -> tuple[Any, ...]:
    return (
        a.person is None,
        a.person or "",
        a.system,
        a.source,
        _STAGE_ORDER[a.stage],
        _KIND_ORDER[a.credential_kind],
        a.username,
        a.credential_id,
        a.action,
    )


def build_plan(
    findings: Sequence[Finding],
    action_defs: Mapping[str, Mapping[str, ActionDef]],
    policy: PolicyConfig,
    now: datetime,
    *,
    history: Sequence[ActionRecord] = (),
    observed_at: Mapping[str, datetime] | None = None,
    exemptions: Sequence[Exemption] = (),
    finding_ids: Collection[str] = (),
    person: str | None = None,
    people_now: Sequence[Person] | None = None,
) -> Plan:
    """Plan the revocations for ``findings``.

    ``action_defs`` maps a source name to its revoker's declared actions (sources without a
    revoker are absent). ``history`` holds the actions stored so far; ``observed_at`` gives,
    per finding id, when its credential was last seen active (an action applied before that
    moment did not stick and is planned again). ``finding_ids`` and ``person`` narrow the
    plan; they never widen what safety allows. ``people_now`` are the people as HR says now
    (the stored people, None: not known): a finding whose person HR no longer lists as departed
    (rehired, or the termination postponed) is held, so nothing is revoked or deleted for it on
    the strength of the status the finding was made with.
    """
    require_aware(now, "now")
    observed = observed_at or {}
    hr_now = {(p.source, p.employee_id): p for p in people_now or ()}
    by_key: dict[str, list[ActionRecord]] = {}
    pending: dict[str, list[ActionRecord]] = {}
    for rec in history:
        if rec.undo_of is not None or rec.finding_id is None:
            continue
        by_key.setdefault(rec.key, []).append(rec)
        if rec.status in (ActionStatus.INTENT, ActionStatus.UNKNOWN):
            pending.setdefault(rec.finding_id, []).append(rec)

    wanted = set(finding_ids)
    actions: list[PlannedAction] = []
    held: list[HeldFinding] = []
    done: list[str] = []
    tasks: list[RotateTask] = []

    def hold(f: Finding, reason: str) -> None:
        held.append(
            HeldFinding(
                finding_id=f.finding_id,
                rule=f.rule,
                source=f.source,
                username=f.account.username,
                credential_id=f.credential.credential_id if f.credential else None,
                person=f.person.employee_id if f.person else None,
                reason=reason,
            )
        )

    for f in findings:
        if wanted and f.finding_id not in wanted:
            continue
        if person is not None and (f.person is None or f.person.employee_id != person):
            continue
        if f.status not in _PLANNED_STATUSES:
            continue
        is_open = f.status is FindingStatus.OPEN
        # A revoked finding matters only for the delete stage: what holds it back is listed when
        # the policy has a delete stage (policy.delete_after), for every reason alike; without
        # one nothing could be planned for it, so it is not listed at all.
        listed = f.status is not FindingStatus.REVOKED or policy.delete_after is not None
        if f.rule in EXPOSURE_RULES:
            if is_open:
                rotation = _rotation(f, action_defs, policy, by_key, observed, now)
                if isinstance(rotation, PlannedAction):
                    actions.append(rotation)
                elif rotation is not None:
                    done.append(rotation)
                task = rotate_task(f, auto=isinstance(rotation, PlannedAction))
                if task is not None:
                    tasks.append(task)
            continue
        if f.rule in NEVER_PLANNED_RULES:
            if listed:
                hold(f, f"{f.rule.value}: never revoked automatically; resolve the owner by hand")
            continue
        cred = f.credential
        if cred is None:
            if listed:
                hold(f, "no credential to act on")
            continue
        protected = selectors.first_match(policy.protected, f.account, cred)
        if protected is not None:
            if listed:
                hold(f, f"protected by policy.protected {protected!r}: never touched")
            continue
        exemption = selectors.active_exemption(exemptions, f.account, cred, now)
        if f.status is FindingStatus.EXEMPTED or exemption is not None:
            if exemption is not None:
                why = f"exempted by {exemption.exemption_id} until {exemption.until.isoformat()}: {exemption.reason}"
            else:
                why = f"exempted by {f.exemption_id} (as of the last audit)"
            if listed:
                hold(f, why)
            continue
        if f.stale:
            if listed:
                hold(
                    f,
                    "data is stale (its source, or the part of it this comes from, was not read in the last audit): see that audit's warnings, then re-run it",
                )
            continue
        returned = _no_longer_departed(f, hr_now, now)
        if returned is not None:
            if listed:
                hold(f, returned)
            continue
        if f.finding_id in pending:
            if listed:
                ids = ", ".join(r.action_id for r in pending[f.finding_id])
                hold(f, f"outcome of earlier action {ids} is unknown (its target could not be re-read)")
            continue
        defs = action_defs.get(f.source)
        if defs is None:
            if listed:
                hold(f, f"source {f.source!r} has no revoker")
            continue
        kind_defs = sorted(
            (d for d in defs.values() if d.credential_kind is cred.kind),
            key=lambda d: (_STAGE_ORDER[d.stage], d.name),
        )
        if not kind_defs:
            if listed:
                hold(f, f"{f.source} has no action for {cred.kind.value} credentials")
            continue

        disable_defs = [d for d in kind_defs if d.stage is Stage.DISABLE]
        disabled_at: datetime | None = None
        for d in disable_defs:
            last = _last_done(by_key, f"{f.finding_id}:{d.name}")
            # The retention window runs from a disable that still holds: one seen active again
            # since (re-enabled by hand) starts it afresh, never deleting as it is disabled again.
            if last is not None and _still_holds(last, observed.get(f.finding_id)):
                disabled_at = last if disabled_at is None else max(disabled_at, last)
            if not is_open:
                continue
            if f.due_at is None or f.due_at > now:
                due = f.due_at.isoformat() if f.due_at else "never"
                hold(f, f"not due yet (grace period ends {due})")
                break
            if _still_holds(last, observed.get(f.finding_id)):
                done.append(f"{f.finding_id}:{d.name}")
                continue
            note = ""
            if last is not None:
                note = f"revoked at {last.isoformat()} but seen active again since"
            actions.append(_planned(f, cred, d, account_uid=f.account.uid, note=note))

        if policy.delete_after is None:
            continue
        for d in kind_defs:
            if d.stage is not Stage.DELETE:
                continue
            recs = by_key.get(f"{f.finding_id}:{d.name}", [])
            if any(r.status in DONE_STATUSES for r in recs):
                done.append(f"{f.finding_id}:{d.name}")
                continue
            if disable_defs:
                if disabled_at is None:
                    continue  # disable first; deleting comes after the retention window
                start = disabled_at
            else:
                if f.due_at is None:
                    continue
                start = f.due_at
            if start + policy.delete_after > now:
                hold(f, f"delete stage ({d.name}) waits until {(start + policy.delete_after).isoformat()}")
                continue
            actions.append(_planned(f, cred, d, account_uid=f.account.uid))

    actions.sort(key=_sort_key)
    tasks.sort(key=lambda t: (t.person, t.system, t.source, t.task, t.object_id))
    return Plan(
        created_at=now,
        fingerprint=findings_fingerprint(findings),
        actions=tuple(actions),
        held=tuple(held),
        done=tuple(done),
        tasks=tuple(tasks),
    )


def _rotation(
    f: Finding,
    action_defs: Mapping[str, Mapping[str, ActionDef]],
    policy: PolicyConfig,
    by_key: Mapping[str, Sequence[ActionRecord]],
    observed: Mapping[str, datetime],
    now: datetime,
) -> PlannedAction | str | None:
    """The rotate action of an open exposure finding (``policy.auto_rotate_secrets``, rotation
    configured, a revoker action for the secret's kind, not protected, due), the key of one
    already applied, or None: then the plan lists a rotate task only (core/rotation.py)."""
    cred = f.credential
    if cred is None or f.person is None or not may_auto_rotate(f, policy.auto_rotate_secrets):
        return None
    if selectors.first_match(policy.protected, f.account, cred) is not None:
        return None
    if f.due_at is None or f.due_at > now:
        return None
    defs = [d for d in (action_defs.get(f.source) or {}).values() if d.credential_kind is cred.kind]
    rotate = sorted((d for d in defs if d.stage is Stage.ROTATE), key=lambda d: d.name)
    if not rotate:
        return None
    d = rotate[0]
    key = f"{f.finding_id}:{d.name}"
    if _still_holds(_last_done(by_key, key), observed.get(f.finding_id)):
        return key
    # The object acted on is the secret: its own immutable id (an ARN) is what the rotate action
    # re-reads before it changes anything.
    return _planned(f, cred, d, account_uid=cred.credential_id)


def _no_longer_departed(f: Finding, hr_now: Mapping[tuple[str, str], Person], now: datetime) -> str | None:
    """Why ``f`` is held because HR no longer lists its person as departed, or None. A finding
    keeps its person as they were (a revoked one never changes again): without this a rehired
    person's credential would be deleted once ``policy.delete_after`` has passed."""
    p = f.person
    if p is None:
        return None
    current = hr_now.get((p.source, p.employee_id))
    if current is None or current.is_departed(now):
        return None
    when = f", terminated_at {current.terminated_at.isoformat()}" if current.terminated_at else ""
    return f"{p.employee_id} is no longer departed in HR (now {current.status.value}{when}): nothing is revoked or deleted"


def _last_done(by_key: Mapping[str, Sequence[ActionRecord]], key: str) -> datetime | None:
    """When the action ``key`` last took effect (applied, or found already done), if ever."""
    return max((r.updated_at for r in by_key.get(key, ()) if r.status in DONE_STATUSES), default=None)


def _still_holds(last: datetime | None, seen: datetime | None) -> bool:
    """An action done at ``last`` still holds unless its credential was seen active after it."""
    return last is not None and (seen is None or last >= seen)


def _planned(
    f: Finding, cred: Credential, d: ActionDef, *, account_uid: str, note: str = ""
) -> PlannedAction:
    """The action ``d`` on ``cred``, the credential of ``f``; ``account_uid`` is the immutable
    identity the action re-reads before it changes anything."""
    p = f.person
    return PlannedAction(
        finding_id=f.finding_id,
        rule=f.rule,
        severity=f.severity.value,
        person=p.employee_id if p else None,
        person_name=p.name if p else "",
        terminated_at=p.terminated_at if p else None,
        source=f.source,
        system=f.system,
        scope=f.account.scope or cred.scope,
        account_id=f.account.account_id,
        username=f.account.username,
        credential_id=cred.credential_id,
        credential_kind=cred.kind,
        detail=cred.detail,
        account_uid=account_uid,
        action=d.name,
        stage=d.stage,
        reversible=d.reversible,
        permissions=d.permissions,
        description=d.description,
        note=note,
    )
