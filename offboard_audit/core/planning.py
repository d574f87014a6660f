"""Revocation planning. Pure: findings + revoker ActionDefs + policy + history + ``now`` -> Plan.

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
import hmac
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from offboard_audit.core import selectors
from offboard_audit.core.audit_chain import ChainKey
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Account,
    ActionDef,
    Credential,
    CredentialKind,
    Exemption,
    Finding,
    FindingStatus,
    Rule,
    Stage,
    require_aware,
)
from offboard_audit.core.rotation import (
    EXPOSURE_RULES,
    RotateTask,
    may_auto_rotate,
    rotate_task,
    rotate_task_json,
)
from offboard_audit.core.stored import DONE_STATUSES, ActionRecord, ActionStatus, TargetFields

PLAN_FORMAT = "offboard-audit-plan/1"

NEVER_PLANNED_RULES = frozenset({Rule.AMBIGUOUS_OWNER, Rule.ORPHAN_ACCOUNT})

_STAGE_ORDER = {Stage.DISABLE: 0, Stage.DELETE: 1, Stage.ROTATE: 2}
_KIND_ORDER = {kind: i for i, kind in enumerate(CredentialKind)}


@dataclass(frozen=True)
class PlannedAction(TargetFields):
    """One action the plan would apply: what it changes, whether it is reversible, what it needs."""

    finding_id: str
    rule: Rule
    severity: str
    person: str | None
    person_name: str
    terminated_at: datetime | None
    action: str
    stage: Stage
    reversible: bool
    permissions: tuple[str, ...]
    description: str
    note: str = ""

    @property
    def key(self) -> str:
        """Identity of the action across runs: the same finding and action name."""
        return f"{self.finding_id}:{self.action}"

    def account(self) -> Account:
        return Account(
            source=self.source,
            system=self.system,
            account_id=self.account_id,
            username=self.username,
            enabled=True,
            scope=self.scope,
            uid=self.account_uid,
        )

    def credential(self) -> Credential:
        return Credential(
            source=self.source,
            account_id=self.account_id,
            credential_id=self.credential_id,
            kind=self.credential_kind,
            active=True,
            detail=self.detail,
            scope=self.scope,
        )


@dataclass(frozen=True)
class HeldFinding:
    """A finding the plan lists but does not act on, with the reason."""

    finding_id: str
    rule: Rule
    source: str
    username: str
    credential_id: str | None
    person: str | None
    reason: str


@dataclass(frozen=True)
class Plan:
    """The ordered actions for the given findings, plus what was held back and why.

    ``fingerprint`` summarises the findings the plan was made from: a plan file whose
    fingerprint no longer matches the stored findings is stale. ``done`` lists the keys of
    actions skipped because they were already applied.
    """

    created_at: datetime
    fingerprint: str
    actions: tuple[PlannedAction, ...]
    held: tuple[HeldFinding, ...] = ()
    done: tuple[str, ...] = ()
    # Rotate / remove tasks of the exposure findings, with their owners (core/rotation.py).
    tasks: tuple[RotateTask, ...] = ()

    def __post_init__(self) -> None:
        require_aware(self.created_at, "Plan.created_at")

    @property
    def plan_id(self) -> str:
        raw = "\n".join([self.fingerprint, *(a.key for a in self.actions)])
        return "p-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]

    def only(self, keys: Collection[str]) -> Plan:
        """The same plan restricted to the given action keys (order kept)."""
        wanted = set(keys)
        return replace(self, actions=tuple(a for a in self.actions if a.key in wanted))


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
        if f.status in (FindingStatus.OPEN, FindingStatus.EXEMPTED, FindingStatus.REVOKED)
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
) -> Plan:
    """Plan the revocations for ``findings``.

    ``action_defs`` maps a source name to its revoker's declared actions (sources without a
    revoker are absent). ``history`` holds the actions stored so far; ``observed_at`` gives,
    per finding id, when its credential was last seen active (an action applied before that
    moment did not stick and is planned again). ``finding_ids`` and ``person`` narrow the
    plan; they never widen what safety allows.
    """
    require_aware(now, "now")
    observed = observed_at or {}
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
        if f.status not in (FindingStatus.OPEN, FindingStatus.EXEMPTED, FindingStatus.REVOKED):
            continue
        is_open = f.status is FindingStatus.OPEN
        # Revoked findings only matter for the delete stage; the rest is listed for open ones.
        listed = f.status is not FindingStatus.REVOKED
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
            hold(f, why)
            continue
        if f.stale:
            if listed:
                hold(f, "data is stale (its source failed in the last audit): re-run the audit")
            continue
        if f.finding_id in pending:
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

        def make(d: ActionDef, note: str = "", f: Finding = f, cred: Credential = cred) -> PlannedAction:
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
                account_uid=f.account.uid,
                action=d.name,
                stage=d.stage,
                reversible=d.reversible,
                permissions=d.permissions,
                description=d.description,
                note=note,
            )

        disable_defs = [d for d in kind_defs if d.stage is Stage.DISABLE]
        disabled_at: datetime | None = None
        for d in disable_defs:
            recs = [r for r in by_key.get(f"{f.finding_id}:{d.name}", []) if r.status in DONE_STATUSES]
            last = max((r.updated_at for r in recs), default=None)
            if last is not None:
                disabled_at = last if disabled_at is None else max(disabled_at, last)
            if not is_open:
                continue
            if f.due_at is None or f.due_at > now:
                due = f.due_at.isoformat() if f.due_at else "never"
                hold(f, f"not due yet (grace period ends {due})")
                break
            seen = observed.get(f.finding_id)
            if last is not None and (seen is None or last >= seen):
                done.append(f"{f.finding_id}:{d.name}")
                continue
            note = ""
            if last is not None:
                note = f"revoked at {last.isoformat()} but seen active again since"
            actions.append(make(d, note))

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
            actions.append(make(d))

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
    last = max((r.updated_at for r in by_key.get(key, ()) if r.status in DONE_STATUSES), default=None)
    seen = observed.get(f.finding_id)
    if last is not None and (seen is None or last >= seen):
        return key
    p = f.person
    return PlannedAction(
        finding_id=f.finding_id,
        rule=f.rule,
        severity=f.severity.value,
        person=p.employee_id,
        person_name=p.name,
        terminated_at=p.terminated_at,
        source=f.source,
        system=f.system,
        scope=f.account.scope or cred.scope,
        account_id=f.account.account_id,
        username=f.account.username,
        credential_id=cred.credential_id,
        credential_kind=cred.kind,
        detail=cred.detail,
        # The object acted on is the secret: its own immutable id (an ARN) is what the rotate
        # action re-reads before it changes anything.
        account_uid=cred.credential_id,
        action=d.name,
        stage=d.stage,
        reversible=d.reversible,
        permissions=d.permissions,
        description=d.description,
    )


# --- plan files ----------------------------------------------------------------------------


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def action_json(a: PlannedAction) -> dict[str, Any]:
    return {
        "key": a.key,
        "finding_id": a.finding_id,
        "rule": a.rule.value,
        "severity": a.severity,
        "person": {"employee_id": a.person, "name": a.person_name, "terminated_at": _iso(a.terminated_at)}
        if a.person
        else None,
        "source": a.source,
        "system": a.system,
        "scope": a.scope or None,
        "account": {"id": a.account_id, "name": a.username, "uid": a.account_uid or None},
        "credential": {"id": a.credential_id, "kind": a.credential_kind.value, "detail": a.detail or None},
        "action": a.action,
        "stage": a.stage.value,
        "reversible": a.reversible,
        "permissions": list(a.permissions),
        "description": a.description,
        "note": a.note or None,
    }


def held_json(h: HeldFinding) -> dict[str, Any]:
    return {
        "finding_id": h.finding_id,
        "rule": h.rule.value,
        "source": h.source,
        "account": h.username,
        "credential_id": h.credential_id,
        "person": h.person,
        "reason": h.reason,
    }


def _signed_content(body: Mapping[str, Any]) -> bytes:
    """What the signature covers: every field but ``checksum`` and ``signature``, canonical JSON."""
    content = {k: v for k, v in body.items() if k not in ("checksum", "signature")}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def plan_signature(body: Mapping[str, Any], key: ChainKey) -> dict[str, str]:
    """HMAC-SHA256 with the audit key over ``"offboard-audit-plan/1\n"`` + the signed content."""
    return {
        "alg": "hmac-sha256",
        "key_id": key.key_id,
        "value": key.sign(PLAN_FORMAT.encode("ascii"), _signed_content(body)),
    }


def plan_json(plan: Plan, key: ChainKey | None = None) -> dict[str, Any]:
    """The plan as one JSON object. With the audit key it is ``signature``-d; ``checksum``
    covers everything else in it (the signature too)."""
    body: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "plan_id": plan.plan_id,
        "created_at": plan.created_at.isoformat(),
        "findings_fingerprint": plan.fingerprint,
        "actions": [action_json(a) for a in plan.actions],
        "held": [held_json(h) for h in plan.held],
        "already_done": list(plan.done),
        "rotate_tasks": [rotate_task_json(t) for t in plan.tasks],
    }
    if key is not None:
        body["signature"] = plan_signature(body, key)
    body["checksum"] = plan_checksum(body)
    return body


def plan_checksum(body: Mapping[str, Any]) -> str:
    content = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PlanFileError(ValueError):
    """A plan file that must not be used: edited, malformed, unsigned or of another format."""


@dataclass(frozen=True)
class PlanFile:
    """What ``revoke --plan`` needs from a plan file: its fingerprint and action keys, and the
    actions and held findings as written (checked against a fresh plan by :func:`check_plan_file`).
    ``signed``: its signature was checked with the audit key."""

    plan_id: str
    created_at: datetime
    fingerprint: str
    keys: tuple[str, ...]
    actions: tuple[Mapping[str, Any], ...] = ()
    held: tuple[Mapping[str, Any], ...] = ()
    signed: bool = False


def _check_signature(body: Mapping[str, Any], key: ChainKey) -> None:
    sig = body.get("signature")
    if sig is None:
        raise PlanFileError(
            "not signed, but the audit key is set ([audit] key_env): plan files must be made with it; "
            "make a new plan"
        )
    if not isinstance(sig, dict) or sig.get("alg") != "hmac-sha256" or not isinstance(sig.get("value"), str):
        raise PlanFileError("signature is malformed (expected alg hmac-sha256 and a value)")
    if sig.get("key_id") != key.key_id:
        raise PlanFileError(
            f"signed with another key (key id {sig.get('key_id')}, the configured key is {key.key_id})"
        )
    expected = plan_signature(body, key)["value"]
    if not hmac.compare_digest(expected, str(sig["value"])):
        raise PlanFileError("signature does not match: the plan file was edited after it was made")


def read_plan_json(body: Any, key: ChainKey | None = None) -> PlanFile:
    """Check a parsed plan file (format, checksum, the signature when ``key`` is given, plan id)
    and extract what revoke uses. Without a key a signature is not checked (nor required): the
    descriptive fields are still checked against a fresh plan (:func:`check_plan_file`)."""
    if not isinstance(body, dict) or body.get("format") != PLAN_FORMAT:
        raise PlanFileError(f"not an offboard-audit plan file (expected format {PLAN_FORMAT!r})")
    checksum = body.get("checksum")
    if not isinstance(checksum, str) or checksum != plan_checksum(body):
        raise PlanFileError("checksum mismatch: the plan file was edited after it was made")
    if key is not None:
        _check_signature(body, key)
    try:
        actions = tuple(body["actions"])
        keys = tuple(str(a["key"]) for a in actions)
        held = tuple(body.get("held") or ())
        if not all(isinstance(x, dict) for x in (*actions, *held)):
            raise TypeError("actions and held must be objects")
        created = datetime.fromisoformat(str(body["created_at"]))
        fingerprint = str(body["findings_fingerprint"])
        plan_id = str(body["plan_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"malformed plan file: {exc}") from None
    raw = "\n".join([fingerprint, *keys])
    if plan_id != "p-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]:
        raise PlanFileError(
            "plan_id does not match the plan's findings and actions: the plan file was edited"
        )
    return PlanFile(plan_id, created, fingerprint, keys, actions, held, signed=key is not None)


def _first_difference(path: str, written: Any, fresh: Any) -> tuple[str, Any, Any] | None:
    if isinstance(written, dict) and isinstance(fresh, dict):
        for name in sorted(set(written) | set(fresh)):
            found = _first_difference(f"{path}.{name}", written.get(name), fresh.get(name))
            if found is not None:
                return found
        return None
    if isinstance(written, list) and isinstance(fresh, list) and len(written) == len(fresh):
        for i, (w, f) in enumerate(zip(written, fresh, strict=True)):
            found = _first_difference(f"{path}[{i}]", w, f)
            if found is not None:
                return found
        return None
    return None if written == fresh else (path, written, fresh)


def check_plan_file(plan_file: PlanFile, fresh: Plan) -> None:
    """Refuse a plan file whose descriptive fields disagree with ``fresh`` (the plan made now
    from the same findings), naming the first field that differs.

    Only when the findings are the same (same fingerprint): otherwise the file is stale and the
    engine refuses it as such. Actions of the file that the fresh plan no longer has (applied
    since, or held now) are not compared; the engine leaves them out anyway.
    """
    if plan_file.fingerprint != fresh.fingerprint:
        return
    now = {a.key: a for a in fresh.actions}
    for i, written in enumerate(plan_file.actions):
        current = now.get(str(written.get("key")))
        if current is None:
            continue
        diff = _first_difference(f"actions[{i}]", dict(written), action_json(current))
        if diff is not None:
            field, was, is_now = diff
            raise PlanFileError(
                f"{field} is {was!r} in the plan file but {is_now!r} in a plan made now from the same "
                "findings: the plan file was edited; make a new plan"
            )
    held_now = {h.finding_id: h for h in fresh.held}
    for i, written in enumerate(plan_file.held):
        current_held = held_now.get(str(written.get("finding_id")))
        if current_held is None:
            continue
        diff = _first_difference(f"held[{i}]", dict(written), held_json(current_held))
        if diff is not None:
            field, was, is_now = diff
            raise PlanFileError(
                f"{field} is {was!r} in the plan file but {is_now!r} in a plan made now from the same "
                "findings: the plan file was edited; make a new plan"
            )
