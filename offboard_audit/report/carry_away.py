"""The evidence pack's section "Secrets this person could carry away" (issue 14).

One entry per exposure finding of the person (``secret-exposed-to-leaver``,
``persistence-left-by-leaver``): the secret or key, every access that exposed it (time, how,
the system's event id, the call), its rotation state, when it was rotated, and who owns the
rotate task; PCI DSS 8.2.5 for every entry (a terminated person's access), 3.7.5 for key
material (transit and KMS keys, signing secrets).

Where each figure comes from, as for the rest of the pack:

* **accesses** from the exposure ledger (the systems' audit logs as read: CloudTrail, the Vault
  audit log), kept with the finding;
* **versions** (current, oldest still usable) from the latest stored inventory;
* **the tool's own rotation** (``policy.auto_rotate_secrets``) from the hash-chained audit
  events: which action, by whom, when (the one in force, as for revocations);
* **closed at**: the audit that saw the secret rotated, deleted or disabled (the finding's
  status history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from offboard_audit.core.chain_history import ChainAction
from offboard_audit.core.exposure import SecretState, base_scope, exposed_through
from offboard_audit.core.records import (
    CredentialKind,
    ExposureAccess,
    Finding,
    FindingStatus,
    OwnerVia,
    RotateOwner,
    Rule,
)
from offboard_audit.core.rotation import EXPOSURE_RULES, owner_json, owner_label, task_kind

TITLE = "Secrets this person could carry away"

PCI_3_7_5 = (
    "PCI DSS 3.7.5",
    "keys are retired or replaced when their integrity is weakened, including when personnel "
    "with knowledge of cleartext key material leave",
)
PCI_8_2_5 = ("PCI DSS 8.2.5", "access for terminated users is immediately revoked")

# Key material: what 3.7.5 is about (a secret tagged as a signing key counts too).
_KEY_KINDS = frozenset({CredentialKind.TRANSIT_KEY, CredentialKind.KMS_KEY})

BASIS = (
    "accesses from the exposure ledger (the systems' audit logs as read); versions from the latest "
    "stored inventory; the tool's own rotations from the hash-chained audit events; closed at from the "
    "finding's status history"
)


@dataclass(frozen=True)
class Rotation:
    """What became of one exposed secret, and when."""

    state: str
    task: str  # rotate | remove
    current_version_created_at: datetime | None
    oldest_usable_version_created_at: datetime | None
    rotated_at: datetime | None
    rotated_at_from: str | None
    closed_at: datetime | None
    by_tool: ChainAction | None


@dataclass(frozen=True)
class CarriedSecret:
    finding_id: str
    rule: str
    severity: str
    status: str
    stale: bool
    reason: str
    source: str
    system: str
    secret_id: str
    kind: str
    detail: str
    scope: str
    account_id: str
    username: str
    accesses: tuple[ExposureAccess, ...]
    rotation: Rotation
    owner: RotateOwner
    references: tuple[tuple[str, str], ...]
    history: tuple[ChainAction, ...] = ()

    @property
    def last_access(self) -> datetime | None:
        return max((a.at for a in self.accesses), default=None)


def is_exposure(f: Finding) -> bool:
    return f.rule in EXPOSURE_RULES


def _references(f: Finding) -> tuple[tuple[str, str], ...]:
    assert f.credential is not None
    key = f.credential.kind in _KEY_KINDS or (
        f.rule is Rule.SECRET_EXPOSED_TO_LEAVER and f.severity.value == "critical"
    )
    return (PCI_3_7_5, PCI_8_2_5) if key else (PCI_8_2_5,)


def _rotation(
    f: Finding,
    secret: SecretState | None,
    closed_at: datetime | None,
    by_tool: ChainAction | None,
) -> Rotation:
    assert f.credential is not None
    # The latest version an access handed over (a write's own version is no rotation).
    last = max((exposed_through(a.at, a.how) for a in f.exposure), default=None)
    # The plan's task for the finding (rotate, revoke-access or remove): one rule for both.
    task = task_kind(f)
    current = secret.current_version_created_at if secret else None
    oldest = secret.oldest_enabled_version_created_at if secret else None
    newer = current is not None and last is not None and current > last
    old_usable = oldest is not None and last is not None and oldest <= last
    closed = f.status in (FindingStatus.RESOLVED, FindingStatus.REVOKED)
    if task == "remove":
        state = "removed or changed since" if closed else "still in place"
    elif closed:
        if secret is None or not secret.enabled:
            state = "deleted" if secret is None else "disabled"
        else:
            state = "access given away revoked since" if task == "revoke-access" else "rotated"
    elif task == "revoke-access":
        # A new version would not end it: the grant or key policy is what still lets them in.
        state = "access given to another account still in force"
    elif newer and old_usable:
        state = "rotated, but a version from before the last access is still usable"
    else:
        state = "not rotated since the last access"
    if f.stale:
        state += " (stale: not read in the last audit, see its warnings)"
    rotated_at: datetime | None = None
    rotated_from: str | None = None
    if by_tool is not None:
        rotated_at, rotated_from = by_tool.done_at, "audit log: the tool's rotate action"
    elif newer and task == "rotate":
        rotated_at, rotated_from = current, "inventory: the current version's creation"
    return Rotation(
        state=state,
        task=task,
        current_version_created_at=current,
        oldest_usable_version_created_at=oldest,
        rotated_at=rotated_at,
        rotated_at_from=rotated_from,
        closed_at=closed_at if closed else None,
        by_tool=by_tool,
    )


def carried_secrets(
    findings: Sequence[Finding],
    inventory: Mapping[str, Sequence[SecretState]],
    per_finding: Mapping[str, Sequence[ChainAction]],
    closed_at: Mapping[str, datetime | None],
    in_force: Any,
) -> tuple[CarriedSecret, ...]:
    """The section's entries, from the person's exposure findings (``is_exposure``),
    ``inventory`` (stored secrets by source), the chain's actions per finding, when each
    finding was closed, and ``in_force`` (the pack's rule for the action in force)."""
    index: dict[tuple[str, str, str, str], SecretState] = {}
    for source, secrets in inventory.items():
        for s in secrets:
            index[(source, s.scope, s.kind.value, s.secret_id)] = s
    out: list[CarriedSecret] = []
    for f in findings:
        c = f.credential
        if not is_exposure(f) or c is None:
            continue
        history = tuple(sorted(per_finding.get(f.finding_id, ()), key=lambda a: a.steps[0].seq))
        action, _undone = in_force(history)
        secret = index.get((f.source, base_scope(c.scope), c.kind.value, c.credential_id))
        out.append(
            CarriedSecret(
                finding_id=f.finding_id,
                rule=f.rule.value,
                severity=f.severity.value,
                status=f.status.value,
                stale=f.stale,
                reason=f.reason,
                source=f.source,
                system=f.system,
                secret_id=c.credential_id,
                kind=c.kind.value,
                detail=c.detail,
                scope=base_scope(c.scope),
                account_id=f.account.account_id,
                username=f.account.username,
                accesses=tuple(sorted(f.exposure, key=lambda a: (a.at, a.event_id))),
                rotation=_rotation(f, secret, closed_at.get(f.finding_id), action),
                owner=f.owner or RotateOwner(OwnerVia.UNASSIGNED),
                references=_references(f),
                history=history,
            )
        )
    out.sort(key=lambda x: (x.status != FindingStatus.OPEN.value, x.source, x.kind, x.secret_id))
    return tuple(out)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def carried_json(x: CarriedSecret) -> dict[str, Any]:
    r = x.rotation
    tool = r.by_tool
    return {
        "finding": {
            "id": x.finding_id,
            "rule": x.rule,
            "severity": x.severity,
            "status": x.status,
            "stale": x.stale,
            "reason": x.reason,
        },
        "source": x.source,
        "system": x.system,
        "secret": {"id": x.secret_id, "kind": x.kind, "detail": x.detail or None, "scope": x.scope or None},
        "acting_identity": {"id": x.account_id, "name": x.username},
        "exposure": [
            {"at": a.at.isoformat(), "how": a.how.value, "event_id": a.event_id, "action": a.action}
            for a in x.accesses
        ],
        "last_access": _iso(x.last_access),
        "rotation": {
            "task": r.task,
            "state": r.state,
            "current_version_created_at": _iso(r.current_version_created_at),
            "oldest_usable_version_created_at": _iso(r.oldest_usable_version_created_at),
            "rotated_at": _iso(r.rotated_at),
            "rotated_at_from": r.rotated_at_from,
            "closed_at": _iso(r.closed_at),
            "by_tool": {
                "action_id": tool.action_id,
                "action": tool.field("action"),
                "actor": tool.actor,
                "at": tool.done_at.isoformat(),
                "events": [s.seq for s in tool.steps],
            }
            if tool is not None
            else None,
        },
        "rotate_owner": owner_json(x.owner),
        "references": [{"id": ref, "text": text} for ref, text in x.references],
    }


def carried_rows(items: Sequence[CarriedSecret]) -> list[tuple[object, ...]]:
    """The section's HTML table rows (every value escaped by the page's table helper)."""
    rows: list[tuple[object, ...]] = []
    for x in items:
        r = x.rotation
        how = "; ".join(
            f"{a.at.isoformat()} {a.how.value} ({a.action}) event {a.event_id}" for a in x.accesses
        )
        rotated = "-"
        if r.rotated_at is not None:
            rotated = f"{r.rotated_at.isoformat()} ({r.rotated_at_from})"
        rows.append(
            (
                x.source,
                f"{x.kind} {x.secret_id}",
                x.detail,
                x.username,
                how,
                f"{x.severity}, {x.status}",
                r.state,
                rotated,
                _iso(r.closed_at) or "-",
                f"{r.task}: {owner_label(x.owner)}",
                "; ".join(ref for ref, _text in x.references),
            )
        )
    return rows


HEADERS = (
    "source",
    "secret or key",
    "detail",
    "acting identity",
    "how it was exposed (event ids)",
    "finding",
    "rotation state",
    "rotated at",
    "closed at",
    "rotate task owner",
    "cites",
)
