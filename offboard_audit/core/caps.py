"""The blast-radius cap (pure): how many people and how many actions one pass may touch.

People and actions are limited separately: a leaver in 40 directory groups is one person with
42 actions, which a cap that counts actions alone would refuse for ever (so a webhook could
never auto-revoke them), while 30 leavers at once is exactly the mistake the cap is for.
"""

from __future__ import annotations

from collections.abc import Sequence

from offboard_audit.core.plan_records import PlannedAction


def person_key(action: PlannedAction) -> str:
    """Whose access an action takes away: the HR employee id, else the account itself."""
    if action.person:
        return f"person:{action.person}"
    return f"account:{action.source}:{action.account_id}"


def cap_refusal(actions: Sequence[PlannedAction], max_people: int, max_actions: int) -> str | None:
    """Why a plan of ``actions`` must be refused whole, or None when it is within both limits."""
    people = len({person_key(a) for a in actions})
    if people > max_people:
        return (
            f"blast-radius cap: the plan touches {people} people, more than the limit of {max_people} "
            "(policy.max_people_per_run or --max); nothing was applied"
        )
    if len(actions) > max_actions:
        return (
            f"blast-radius cap: the plan has {len(actions)} actions, more than the limit of {max_actions} "
            "(policy.max_actions_per_run or --max-actions); nothing was applied"
        )
    return None
