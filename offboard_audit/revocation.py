"""The apply/undo engine (stub: the interface is fixed, the implementation follows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from offboard_audit.config import Config
from offboard_audit.protocols import SourceContext
from offboard_audit.records import RunResult
from offboard_audit.storage.store import Store


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
    held: tuple[str, ...] = ()


class RevocationEngine:
    """Plans and applies revocations under every safety rule (see docs/revocation.md)."""

    def __init__(self, config: Config, store: Store, ctx: SourceContext, actor: str) -> None:
        self.config = config
        self.store = store
        self.ctx = ctx
        self.actor = actor

    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> ApplyReport:
        """Plan from this run's findings and apply under every safety rule."""
        return ApplyReport(refused="revocation engine not implemented yet")

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> ApplyReport:
        """Undo every applied, reversible action of one person."""
        return ApplyReport(refused="revocation engine not implemented yet")
