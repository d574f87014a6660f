"""Helpers for the planning tests (``tests/unit/test_*plan*.py``): stored action records made
from a finding, as the revocation engine would have stored them. (No tests in this module.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from offboard_audit.core.actions import Stage
from offboard_audit.core.records import Finding
from offboard_audit.core.stored import ActionRecord, ActionStatus


def record_for(f: Finding, action: str, status: ActionStatus, at: datetime, **changes: Any) -> ActionRecord:
    """A record of ``action`` on the credential of ``f``, created and updated at ``at``.

    Defaults: id ``a-<action>-<status>``, plan ``p``, disable stage, reversible, the finding's
    person, no states, not an undo; ``changes`` replace any field."""
    assert f.credential is not None
    base = ActionRecord(
        action_id=f"a-{action}-{status}",
        plan_id="p",
        finding_id=f.finding_id,
        source=f.source,
        system=f.system,
        scope="",
        account_id=f.account.account_id,
        username=f.account.username,
        credential_id=f.credential.credential_id,
        credential_kind=f.credential.kind,
        detail="",
        account_uid=f.account.uid,
        action=action,
        stage=Stage.DISABLE,
        reversible=True,
        person=f.person.employee_id if f.person else None,
        status=status,
        error=None,
        prior_state=None,
        result_state=None,
        actor="t",
        undo_of=None,
        created_at=at,
        updated_at=at,
    )
    return replace(base, **changes)
