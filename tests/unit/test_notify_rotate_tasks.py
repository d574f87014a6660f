"""Run notifications carry the rotate tasks of new exposure findings, with their owners (issue 13:
"Notifications carry the rotate tasks")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Finding,
    FindingStatus,
    OwnerVia,
    RotateOwner,
    Rule,
)
from offboard_audit.core.runs import RunResult
from offboard_audit.daemon.summary import run_messages
from tests.support.fakes import leaver

START = datetime(2026, 3, 1, 12, tzinfo=UTC)


def exposure_finding(secret: str, owner: RotateOwner | None) -> Finding:
    acct = Account("aws-main", "aws_iam", "arn:aws:iam::1:user/bob", "bob", True, scope="1")
    cred = Credential("aws-main", acct.account_id, secret, CredentialKind.SECRET, True, scope="1")
    return Finding(
        finding_id=f"f-{secret}",
        rule=Rule.SECRET_EXPOSED_TO_LEAVER,
        severity=Rule.SECRET_EXPOSED_TO_LEAVER.severity,
        status=FindingStatus.OPEN,
        account=acct,
        person=leaver("E2", START - timedelta(days=3), name="Bob"),
        credential=cred,
        first_seen=START,
        due_at=START,
        reason="read and never rotated",
        owner=owner,
    )


def test_a_run_with_new_exposure_findings_sends_their_rotate_tasks_with_owners() -> None:
    findings = (
        exposure_finding("prod/token-signing-key", RotateOwner(OwnerVia.OWNER_TAG, "platform@example.com")),
        exposure_finding("prod/db-password", None),
    )
    result = RunResult("r1", START, START + timedelta(seconds=5), (), findings)

    (msg,) = [m for m in run_messages(result, "audit") if m.kind == "rotate_tasks"]

    assert "2 secret(s) or key(s) to rotate or remove" in msg.text
    assert "rotate secret prod/token-signing-key (Bob): owner platform@example.com" in msg.text
    assert "rotate secret prod/db-password (Bob): owner unassigned" in msg.text
    tasks = dict(msg.data)["rotate_tasks"]
    assert [t["finding_id"] for t in tasks] == ["f-prod/token-signing-key", "f-prod/db-password"]


def test_a_run_without_exposure_findings_sends_no_rotate_tasks() -> None:
    result = RunResult("r2", START, START + timedelta(seconds=5), (), ())
    assert [m for m in run_messages(result, "audit") if m.kind == "rotate_tasks"] == []
