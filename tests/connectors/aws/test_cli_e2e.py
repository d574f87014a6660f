"""End to end: the CLI (a subprocess) audits a moto server started by the test run on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from offboard_audit.config import load_config
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.pipeline import run_audit
from offboard_audit.storage.store import Store
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users
from tests.support.ports import free_port

from .test_source_moto import canned_error

REPO = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC).replace(microsecond=0)
TERMINATED = NOW - timedelta(days=30)
HR = f"""employee_id,email,name,status,termination_date,aliases
E1001,alice@example.com,Alice Active,active,,alice
E1002,bob@example.com,Bob Leaver,terminated,{TERMINATED.isoformat()},bob;bleaver
"""


def write_config(tmp_path: Path, aws_table: str) -> Path:
    (tmp_path / "hr.csv").write_text(HR)
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "aws-e2e"
type = "aws_iam"
region = "us-east-1"
service_specific_credentials = false
{aws_table}
"""
    )
    return config


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
    )


def seed_bob_and_alice(account_id: str = "123456789012") -> Any:
    return seed_users(
        [
            # bob's key, found under his alias, was used twelve days after he left.
            SeedUser("bleaver", keys=[(NOW - timedelta(days=400), TERMINATED + timedelta(days=12))]),
            SeedUser("alice", tags={"email": "alice@example.com"}, keys=[(NOW - timedelta(days=9), NOW)]),
        ],
        account_id=account_id,
    )


def test_cli_audit_against_moto_server_reports_a_key_used_after_termination(
    moto_endpoint: str, tmp_path: Path
) -> None:
    backend = seed_bob_and_alice()
    key_id = backend.users["bleaver"].access_keys[0].access_key_id
    config = write_config(tmp_path, f'endpoint_url = "{moto_endpoint}"')
    result = run_cli(config)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    aws = next(s for s in report["run"]["sources"] if s["name"] == "aws-e2e")
    assert aws["status"] == "ok" and aws["system"] == "aws_iam"
    critical = [f for f in report["findings"] if f["rule"] == "used-after-termination"]
    assert [(f["account"]["name"], f["credential"]["id"], f["person"]["employee_id"]) for f in critical] == [
        ("bleaver", key_id, "E1002")
    ]
    assert critical[0]["severity"] == "critical"
    assert not any(f["account"]["name"] == "alice" for f in report["findings"])


def test_cli_exits_3_when_the_aws_endpoint_is_unreachable(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, f'endpoint_url = "{dead}"\nmax_attempts = 1')
    result = run_cli(config)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    aws = next(s for s in report["run"]["sources"] if s["name"] == "aws-e2e")
    assert aws["status"] == "failed" and aws["error"]


def test_denied_account_fails_alone_in_a_full_audit_and_the_others_still_report(
    moto_endpoint: str, tmp_path: Path
) -> None:
    seed_bob_and_alice("111111111111")
    config_path = write_config(
        tmp_path,
        f'endpoint_url = "{moto_endpoint}"\naccounts = ["111111111111", "222222222222"]\n'
        'assume_role = "arn:aws:iam::{account}:role/OffboardAudit"',
    )
    config = load_config(config_path, env=FAKE_AWS_ENV)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    denied = session.client("iam", endpoint_url=moto_endpoint)
    denied.meta.events.register_first("before-send.iam", canned_error("AccessDenied", 403))
    from connectors.aws_iam import AwsClients

    clients = {"aws-e2e": AwsClients(session=session, iam_by_account={"222222222222": denied})}
    store = Store.open(config.database_url)
    result = run_audit(config, store, NOW, env=FAKE_AWS_ENV, clients=clients)
    aws = next(s for s in result.sources if s.name == "aws-e2e")
    assert aws.status is SourceStatus.FAILED and aws.stale
    assert [f.scope for f in aws.failed_scopes] == ["222222222222"]
    assert result.any_source_failed  # the CLI maps this to exit code 3
    # The healthy account still produced bob's critical finding.
    assert [(f.rule.value, f.account.scope) for f in result.findings if f.account.source == "aws-e2e"] == [
        ("used-after-termination", "111111111111")
    ]


def test_nothing_is_revoked_in_an_account_that_failed_this_run(moto_endpoint: str, tmp_path: Path) -> None:
    """Bob has a key in two accounts. When one account is denied, its stale finding is kept
    but only the healthy account's key is deactivated."""
    from connectors.aws_iam import AwsClients
    from offboard_audit.core.protocols import SourceContext
    from offboard_audit.engine.revocation import RevocationEngine

    backends = {acct: seed_bob_and_alice(acct) for acct in ("111111111111", "222222222222")}
    config_path = write_config(
        tmp_path,
        f'endpoint_url = "{moto_endpoint}"\naccounts = ["111111111111", "222222222222"]\n'
        'assume_role = "arn:aws:iam::{account}:role/OffboardAudit"',
    )
    config = load_config(config_path, env=FAKE_AWS_ENV)
    store = Store.open(config.database_url)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # First run: both accounts healthy, so account 222's data is stored.
    run_audit(config, store, NOW, env=FAKE_AWS_ENV, clients={"aws-e2e": AwsClients(session=session)})
    denied = session.client("iam", endpoint_url=moto_endpoint)
    denied.meta.events.register_first("before-send.iam", canned_error("AccessDenied", 403))
    clients = {"aws-e2e": AwsClients(session=session, iam_by_account={"222222222222": denied})}
    result = run_audit(config, store, NOW + timedelta(minutes=5), env=FAKE_AWS_ENV, clients=clients)
    bob = {f.account.scope: f for f in result.findings if f.account.username == "bleaver"}
    assert set(bob) == {"111111111111", "222222222222"}
    assert bob["222222222222"].stale and not bob["111111111111"].stale

    ctx = SourceContext(base_dir=tmp_path, env=FAKE_AWS_ENV, clients={"aws-e2e": AwsClients(session=session)})
    report = RevocationEngine(config, store, ctx, actor="test").auto_revoke(
        result, NOW + timedelta(minutes=6)
    )
    touched = {o.finding_id for o in report.outcomes}
    assert bob["111111111111"].finding_id in touched
    assert bob["222222222222"].finding_id not in touched
    status = {acct: backend.users["bleaver"].access_keys[0].status for acct, backend in backends.items()}
    assert status == {"111111111111": "Inactive", "222222222222": "Active"}
