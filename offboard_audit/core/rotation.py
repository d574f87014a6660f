"""Rotate tasks: what ``plan`` asks a person to do about an exposure finding. Pure.

A secret a leaver could carry away is not revoked like a login: rotating it can break whatever
uses it, so by default nothing is rotated automatically. Each open exposure finding becomes a
task with an owner (the secret's owner tag, else the leaver's manager, else unassigned):

- ``rotate``: a secret or key of ``secret-exposed-to-leaver`` (make a new version, retire the old);
- ``revoke-access``: a key of ``secret-exposed-to-leaver`` exposed only through access the leaver
  gave another account (a KMS grant, a key policy) that is still in force: a new version would
  leave that access in place, so the task is to revoke the grant or take the account out of the
  policy (a secret whose material the leaver also had stays ``rotate``; its detail names the
  access to revoke as well);
- ``remove``: an object of ``persistence-left-by-leaver`` (delete the access key, user, login
  profile or policy attachment; restore the trust policy).

With ``policy.auto_rotate_secrets = true`` the plan also carries a ``rotate`` stage action for a
secret whose own rotation is already configured (and whose system's revoker declares one, e.g.
Secrets Manager ``RotateSecret``); the task then says so (``auto``). That action goes through the
same cap, breaker, dry run, verify and audit events as every revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from offboard_audit.core.exposure import (
    SECRET_KINDS,
    base_scope,
    exposed_only_through_access,
    rotation_configured,
)
from offboard_audit.core.records import Finding, FindingStatus, OwnerVia, RotateOwner, Rule

EXPOSURE_RULES = frozenset({Rule.SECRET_EXPOSED_TO_LEAVER, Rule.PERSISTENCE_LEFT_BY_LEAVER})


@dataclass(frozen=True)
class RotateTask:
    """One thing a person must rotate or remove, from one exposure finding."""

    finding_id: str
    rule: Rule
    severity: str
    task: str  # "rotate" | "revoke-access" | "remove" (task_kind)
    source: str
    system: str
    scope: str
    object_id: str
    kind: str
    detail: str
    person: str
    person_name: str
    terminated_at: datetime | None
    owner: RotateOwner
    last_access: datetime | None
    # Planned as an action of this plan (policy.auto_rotate_secrets and rotation configured).
    auto: bool = False
    stale: bool = False

    @property
    def key(self) -> str:
        return f"{self.finding_id}:{self.task}"


def task_kind(f: Finding) -> str:
    """``rotate``, ``revoke-access`` or ``remove`` for an exposure finding (module docstring)."""
    c = f.credential
    if c is None or c.kind not in SECRET_KINDS:
        return "remove"
    return "revoke-access" if exposed_only_through_access(c.detail) else "rotate"


def rotate_task(f: Finding, auto: bool = False) -> RotateTask | None:
    """The task for one exposure finding, or None for any other finding (or one without a
    credential or person)."""
    if f.rule not in EXPOSURE_RULES or f.credential is None or f.person is None:
        return None
    c = f.credential
    p = f.person
    return RotateTask(
        finding_id=f.finding_id,
        rule=f.rule,
        severity=f.severity.value,
        task=task_kind(f),
        source=f.source,
        system=f.system,
        scope=base_scope(f.account.scope or c.scope),
        object_id=c.credential_id,
        kind=c.kind.value,
        detail=c.detail,
        person=p.employee_id,
        person_name=p.name,
        terminated_at=p.terminated_at,
        owner=f.owner or RotateOwner(OwnerVia.UNASSIGNED),
        last_access=max((a.at for a in f.exposure), default=None),
        auto=auto,
        stale=f.stale,
    )


def may_auto_rotate(f: Finding, auto_rotate_secrets: bool) -> bool:
    """Whether the plan may act on ``f`` itself: only a secret of ``secret-exposed-to-leaver``
    whose rotation is configured, and only with ``policy.auto_rotate_secrets``; never one exposed
    only through access given away (a rotation would not end it)."""
    return (
        auto_rotate_secrets
        and f.rule is Rule.SECRET_EXPOSED_TO_LEAVER
        and f.status is FindingStatus.OPEN
        and not f.stale
        and f.credential is not None
        and f.credential.kind in SECRET_KINDS
        and rotation_configured(f.credential.detail)
        and not exposed_only_through_access(f.credential.detail)
    )


_VIA_LABEL = {
    OwnerVia.OWNER_TAG: "owner tag",
    OwnerVia.MANAGER: "manager",
    OwnerVia.OBJECT_ADMINS: "admins of the object",
}


def owner_label(owner: RotateOwner) -> str:
    """``alice@example.com (owner tag)``, ``bob@example.com (manager)``, ``octo, hub (admins of
    the object)`` or ``unassigned``."""
    if owner.via is OwnerVia.UNASSIGNED or not owner.email:
        return "unassigned"
    return f"{owner.email} ({_VIA_LABEL[owner.via]})"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def owner_json(owner: RotateOwner | None) -> dict[str, Any]:
    """The rotate owner as the findings JSON and plan files print it."""
    o = owner or RotateOwner(OwnerVia.UNASSIGNED)
    return {"email": o.email, "via": o.via.value}


def rotate_task_json(t: RotateTask) -> dict[str, Any]:
    return {
        "key": t.key,
        "finding_id": t.finding_id,
        "rule": t.rule.value,
        "severity": t.severity,
        "task": t.task,
        "source": t.source,
        "system": t.system,
        "scope": t.scope or None,
        "object": {"id": t.object_id, "kind": t.kind, "detail": t.detail or None},
        "person": {"employee_id": t.person, "name": t.person_name, "terminated_at": _iso(t.terminated_at)},
        "owner": owner_json(t.owner),
        "last_access": _iso(t.last_access),
        "auto": t.auto,
        "stale": t.stale,
    }
