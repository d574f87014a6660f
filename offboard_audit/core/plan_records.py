"""What a revocation plan is: the planned actions, the findings held back and why, the plan, its id.

Frozen records, shared by what makes a plan (``core/planning.py``), writes it to a file and reads
it back (``core/plan_file.py``), caps it (``core/caps.py``), applies it (the revocation engine)
and prints it. Nothing is decided here: the only computation is a plan's identity
(:func:`plan_id_of`, from the findings fingerprint and the action keys). Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from offboard_audit.core.actions import Stage
from offboard_audit.core.records import Account, Credential, Rule, require_aware_fields
from offboard_audit.core.rotation import RotateTask
from offboard_audit.core.stored import TargetFields


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
        require_aware_fields(self, "created_at")

    @property
    def plan_id(self) -> str:
        return plan_id_of(self.fingerprint, [a.key for a in self.actions])

    def only(self, keys: Collection[str]) -> Plan:
        """The same plan restricted to the given action keys (order kept)."""
        wanted = set(keys)
        return replace(self, actions=tuple(a for a in self.actions if a.key in wanted))


def plan_id_of(fingerprint: str, keys: Iterable[str]) -> str:
    """A plan's id: derived from the findings it was made from and its action keys."""
    raw = "\n".join([fingerprint, *keys])
    return "p-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]
