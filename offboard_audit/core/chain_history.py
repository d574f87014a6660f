"""What the audit chain says about each action, and where the ``actions`` table disagrees.

The ``actions`` table is a working copy for planning and undo; the hash chain is not built over
it, so an ``UPDATE actions SET updated_at=..., actor=...`` goes unnoticed by the chain. Evidence
is therefore rebuilt from the chained events alone (:func:`chain_actions`), and every row that
disagrees with them is a :class:`Discrepancy` (:func:`discrepancies`).

How the revocation engine writes an action (``engine/journal.py``), and so how it is read back:
its first event (``intent``, ``undo-intent``, ``skipped``, or an ``outcome``/``undo-outcome`` for
an action stopped before its intent) carries the action's description and is written with the
row; later events (``outcome``, ``undo-outcome``, ``recovered``) carry the status and error the
row is updated to. An undo whose outcome is ``restored`` or ``unchanged`` (``restored`` when a
later pass settles it) turns the original action ``undone`` at that moment.

Pure: events and records in, records out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from offboard_audit.core.actions import state_json
from offboard_audit.core.audit_chain import AuditEvent
from offboard_audit.core.stored import DONE_STATUSES, ActionRecord, ActionStatus

_STATUS_KINDS = {"outcome", "undo-outcome", "recovered"}
# An undo that ended in one of these made its original action ``undone``.
_UNDOING = {ActionStatus.RESTORED.value, ActionStatus.UNCHANGED.value}
_DESCRIPTIVE = (
    "finding_id",
    "person",
    "plan_id",
    "source",
    "system",
    "scope",
    "account_id",
    "account_uid",
    "username",
    "credential_id",
    "credential_kind",
    "action",
    "stage",
    "reversible",
    "undo_of",
)


@dataclass(frozen=True)
class ChainStep:
    """One event of an action, as the chain has it."""

    seq: int
    at: datetime
    kind: str
    actor: str
    status: str | None
    hash: str
    keyed: bool


@dataclass(frozen=True)
class ChainAction:
    """An action (revocation or undo) as its chained events describe it.

    ``status`` is what its own events end in; ``undone_*`` is set when a later undo restored
    what it changed, and then ``effective_status`` is ``undone``. ``done_at`` is the time of its
    own last event (its outcome); ``updated_at`` the last time its status changed (the undo's).
    """

    action_id: str
    description: Mapping[str, Any]
    status: str
    error: str | None
    actor: str
    created_at: datetime
    done_at: datetime
    steps: tuple[ChainStep, ...]
    prior_state: Mapping[str, Any] | None = None
    undone_by: str | None = None
    undone_at: datetime | None = None
    undone_by_actor: str | None = None

    def field(self, name: str) -> Any:
        return self.description.get(name)

    @property
    def finding_id(self) -> str | None:
        value = self.description.get("finding_id")
        return str(value) if value is not None else None

    @property
    def person(self) -> str | None:
        value = self.description.get("person")
        return str(value) if value is not None else None

    @property
    def undo_of(self) -> str | None:
        value = self.description.get("undo_of")
        return str(value) if value is not None else None

    @property
    def key(self) -> str:
        return f"{self.finding_id}:{self.field('action')}"

    @property
    def effective_status(self) -> str:
        return ActionStatus.UNDONE.value if self.undone_by is not None else self.status

    @property
    def updated_at(self) -> datetime:
        return self.undone_at if self.undone_at is not None else self.done_at

    @property
    def revoked(self) -> bool:
        """A revocation (not an undo) that took effect: applied, or found already in place."""
        return self.undo_of is None and self.status in {s.value for s in DONE_STATUSES}


class _Builder:
    def __init__(self) -> None:
        self.first: dict[str, AuditEvent] = {}
        self.steps: dict[str, list[ChainStep]] = {}
        self.status: dict[str, tuple[str, str | None]] = {}
        self.prior: dict[str, Mapping[str, Any] | None] = {}

    def add(self, ev: AuditEvent) -> None:
        aid = ev.action_id
        if aid is None:
            return
        payload = ev.payload
        status = payload.get("status")
        step = ChainStep(
            ev.seq, ev.at, ev.kind, ev.actor, str(status) if status is not None else None, ev.hash, ev.keyed
        )
        if aid not in self.first:
            # Normally intent, undo-intent, skipped or the outcome of an action stopped before its
            # intent; an outcome whose intent was deleted still names an action the chain knows
            # about (the break itself is verify_chain's to report).
            self.first[aid] = ev
            self.steps[aid] = []
            if ev.kind == "intent":
                self.status[aid] = (ActionStatus.INTENT.value, None)
                self.prior[aid] = _state(payload.get("prior_state"))
            elif ev.kind == "undo-intent":
                self.status[aid] = (ActionStatus.INTENT.value, None)
                self.prior[aid] = _state(payload.get("current"))
            elif ev.kind == "skipped":
                reason = payload.get("reason")
                self.status[aid] = (ActionStatus.SKIPPED.value, str(reason) if reason is not None else None)
                self.prior[aid] = None
            else:
                self.prior[aid] = None
        self.steps[aid].append(step)
        if ev.kind in _STATUS_KINDS and status is not None:
            error = payload.get("error")
            self.status[aid] = (str(status), str(error) if error is not None else None)

    def build(self) -> dict[str, ChainAction]:
        out: dict[str, ChainAction] = {}
        for aid, first in self.first.items():
            steps = self.steps[aid]
            payload = first.payload
            status, error = self.status.get(aid, (ActionStatus.INTENT.value, None))
            out[aid] = ChainAction(
                action_id=aid,
                description={k: payload.get(k) for k in _DESCRIPTIVE},
                status=status,
                error=error,
                actor=first.actor,
                created_at=first.at,
                done_at=steps[-1].at,
                steps=tuple(steps),
                prior_state=self.prior.get(aid),
            )
        for undo in list(out.values()):
            orig_id = undo.undo_of
            if orig_id is None or undo.status not in _UNDOING or orig_id not in out:
                continue
            orig = out[orig_id]
            if orig.undone_by is None:
                out[orig_id] = replace(
                    orig, undone_by=undo.action_id, undone_at=undo.done_at, undone_by_actor=undo.actor
                )
        return out


def _state(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


class ChainHistory:
    """Collects the actions of a chain while it is read once (for verification too)::

    history = ChainHistory()
    result = verify_chain(history.feed(iter_events(store)))
    actions = history.actions()
    """

    def __init__(self) -> None:
        self._builder = _Builder()
        self._built: dict[str, ChainAction] | None = None

    def feed(self, events: Iterable[AuditEvent]) -> Iterator[AuditEvent]:
        for ev in events:
            self._builder.add(ev)
            yield ev

    def actions(self) -> dict[str, ChainAction]:
        """Every action by id, in the order of their first event."""
        if self._built is None:
            self._built = self._builder.build()
        return self._built


def chain_actions(events: Iterable[AuditEvent]) -> dict[str, ChainAction]:
    history = ChainHistory()
    for _ in history.feed(events):
        pass
    return history.actions()


# --- the actions table against the chain ---------------------------------------------------------


@dataclass(frozen=True)
class Discrepancy:
    """An ``actions`` row that disagrees with the audit chain (``field`` is what differs)."""

    action_id: str
    field: str
    table: str
    chain: str

    def __str__(self) -> str:
        if self.field == "row":
            return f"action {self.action_id}: {self.table}"
        return (
            f"action {self.action_id}: {self.field} is {self.table} in the actions table "
            f"but {self.chain} in the audit log"
        )


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value) if isinstance(value, str) else str(value)


def _row_value(rec: ActionRecord, name: str) -> Any:
    value = getattr(rec, name)
    return value.value if hasattr(value, "value") else value


def compare_action(rec: ActionRecord, chain: ChainAction) -> list[Discrepancy]:
    """Every field of ``rec`` that the chain says otherwise."""
    out: list[Discrepancy] = []

    def differ(name: str, table: Any, logged: Any) -> None:
        if table != logged:
            out.append(Discrepancy(rec.action_id, name, _text(table), _text(logged)))

    for name in _DESCRIPTIVE:
        differ(name, _row_value(rec, name), chain.field(name))
    differ("status", rec.status.value, chain.effective_status)
    differ("actor", rec.actor, chain.actor)
    differ("created_at", rec.created_at, chain.created_at)
    differ("updated_at", rec.updated_at, chain.updated_at)
    differ("error", rec.error, chain.error)
    if chain.prior_state is not None:
        differ("prior_state", state_json(rec.prior_state), dict(chain.prior_state))
    return out


def discrepancies(
    rows: Sequence[ActionRecord], chain: Mapping[str, ChainAction], expected: Iterable[str] = ()
) -> list[Discrepancy]:
    """Rows that disagree with the chain, rows the chain does not know, and actions of
    ``expected`` (ids the chain has) whose row is missing."""
    out: list[Discrepancy] = []
    seen: set[str] = set()
    for rec in rows:
        seen.add(rec.action_id)
        logged = chain.get(rec.action_id)
        if logged is None:
            out.append(
                Discrepancy(
                    rec.action_id,
                    "row",
                    "in the actions table but not in the audit log (row added, or its events deleted)",
                    "",
                )
            )
            continue
        out.extend(compare_action(rec, logged))
    for aid in expected:
        if aid not in seen and aid in chain:
            out.append(
                Discrepancy(aid, "row", "in the audit log but its row in the actions table is missing", "")
            )
    return out
