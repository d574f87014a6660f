"""The JSON form of what a job records: the actions it took and its takeovers. The same form is
stored with the job (``storage/webhook_store.py``) and shown by the job API (``daemon/webhook.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from offboard_audit.core.jobs import JobAction, JobState, Takeover


def action_json(a: JobAction) -> dict[str, object]:
    return {
        "action_id": a.action_id,
        "finding_id": a.finding_id,
        "source": a.source,
        "action": a.action,
        "status": a.status,
        "error": a.error,
    }


def takeover_json(t: Takeover) -> dict[str, object]:
    return {
        "at": t.at.isoformat(),
        "previous_owner": t.previous_owner,
        "new_owner": t.new_owner,
        "from_state": t.from_state.value,
        "lease_expired_at": t.lease_expired_at.isoformat() if t.lease_expired_at else None,
    }


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def takeover_of(d: Mapping[str, str]) -> Takeover:
    """The takeover that :func:`takeover_json` wrote."""
    at = _when(d["at"])
    assert at is not None
    return Takeover(
        at, d["previous_owner"], d["new_owner"], JobState(d["from_state"]), _when(d["lease_expired_at"])
    )
