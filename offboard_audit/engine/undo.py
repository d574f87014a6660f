"""What an undo pass decides before it touches anything: which actions can be undone, what a dry
run says, and the action row an undo writes. The pass itself (the revocation lock, crash recovery,
the ``steps.undo_step`` of each action) is :meth:`RevocationEngine.undo_action` and
:meth:`RevocationEngine.undo_person` in ``revocation.py``.

An action can be undone once: only an ``applied``, reversible action with a recorded prior state,
that is not itself an undo. The undo is an action row of its own (``undo_of`` names the original,
``plan_id`` is ``undo``); the original becomes ``undone`` when the undo restored it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.journal import (
    DRY_RUN,
    IRREVERSIBLE,
    NOTHING,
    ActionOutcome,
    new_action_id,
    outcome,
)


def undo_refusal(r: ActionRecord) -> ActionOutcome | None:
    """Why ``r`` cannot be undone (None: it can)."""
    if r.undo_of is not None:
        return outcome(r, NOTHING, message=f"{r.action_id} is itself an undo (of {r.undo_of})")
    if r.status == ActionStatus.UNDONE:
        return outcome(r, NOTHING, message="already undone")
    if r.status == ActionStatus.NOOP:
        return outcome(r, NOTHING, message="nothing to undo: this action changed nothing")
    if r.status != ActionStatus.APPLIED:
        return outcome(r, NOTHING, message=f"nothing to undo: the action is {r.status}")
    if not r.reversible:
        return outcome(
            r,
            IRREVERSIBLE,
            error=f"{r.action} is irreversible: the prior state cannot be restored by this tool",
            message="irreversible",
        )
    if r.prior_state is None:
        return outcome(r, ActionStatus.FAILED, error="no prior state was recorded for this action")
    return None


def newest_applied(recs: Iterable[ActionRecord]) -> list[ActionRecord]:
    """The applied actions among ``recs`` that are not undos, newest first (a person's undo)."""
    applied = [r for r in recs if r.undo_of is None and r.status == ActionStatus.APPLIED]
    applied.sort(key=lambda r: (r.updated_at, r.created_at), reverse=True)
    return applied


def triage(recs: Sequence[ActionRecord], apply: bool) -> tuple[list[ActionRecord], list[ActionOutcome]]:
    """The actions to undo, and the outcomes already known: the refused ones, and in a dry run
    what each undo would do."""
    ready: list[ActionRecord] = []
    outcomes: list[ActionOutcome] = []
    for r in recs:
        skip = undo_refusal(r)
        if skip is not None:
            outcomes.append(skip)
        elif not apply:
            restore = "active" if r.prior_state and r.prior_state.active else "as recorded"
            outcomes.append(outcome(r, DRY_RUN, message=f"would restore {r.credential_id} to {restore}"))
        else:
            ready.append(r)
    return ready, outcomes


def undo_record(orig: ActionRecord, actor: str, at: datetime) -> ActionRecord:
    """The action row of the undo of ``orig``, before its first event (status ``intent``)."""
    return replace(
        orig,
        action_id=new_action_id(),
        plan_id="undo",
        status=ActionStatus.INTENT,
        error=None,
        prior_state=None,
        result_state=None,
        actor=actor,
        undo_of=orig.action_id,
        created_at=at,
        updated_at=at,
    )
