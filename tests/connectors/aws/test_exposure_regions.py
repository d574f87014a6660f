"""The ``aws_iam`` exposure inventory covers the regions of ``[sources.exposure] regions`` only: a
region dropped from that list is not read, so what is stored about its secrets is kept (the
findings judged on it stale), never taken as rotated. End to end against moto in process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import AwsClients
from offboard_audit.config import build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.aws import SeedUser, seed_users
from tests.support.cloudtrail import (
    BUCKET,
    backdate_secret,
    faithful_secret_versions,
    iam_user,
    log_key,
    put_log,
    record,
)

NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=10)
READ_AT = NOW - timedelta(days=20)
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
)
HOME, OTHER = "us-east-1", "eu-west-1"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    (tmp_path / "hr.csv").write_text(HR)
    with mock_aws(), faithful_secret_versions():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=HOME
        )


def seed(session: boto3.session.Session) -> dict[str, str]:
    """Alice (who left) read one never-rotated secret in each region; their ARNs by region."""
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"})])
    arns: dict[str, str] = {}
    records = []
    for region in (HOME, OTHER):
        name = f"{region}/token"
        arns[region] = session.client("secretsmanager", region_name=region).create_secret(
            Name=name, SecretString="s3cr3t"
        )["ARN"]
        backdate_secret(name, NOW - timedelta(days=400), region=region)
        records.append(
            record(
                "GetSecretValue",
                "secretsmanager.amazonaws.com",
                READ_AT,
                iam_user("alice"),
                {"secretId": name},
                region=region,
                event_id=f"ev-{region}",
            )
        )
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    put_log(s3, log_key(READ_AT), records)
    return arns


def audit(tmp: Path, session: boto3.session.Session, regions: list[str]) -> RunResult:
    raw: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp / 'audit.db'}"},
        "policy": {"max_new_terminations": 1.0},
        "sources": [
            {"name": "hr", "type": "hr_csv", "path": str(tmp / "hr.csv")},
            {
                "name": "aws",
                "type": "aws_iam",
                "service_specific_credentials": False,
                "exposure": {"trail_bucket": BUCKET, "regions": regions},
            },
        ],
    }
    config = build_config(raw, base_dir=tmp, env={})
    ctx = SourceContext(tmp, clients={"aws": AwsClients(session=session)})
    result = Pipeline(config, Store.open(config.database_url), ctx).run(NOW)
    assert result.status.value == "done", result.sources
    return result


def exposed(tmp: Path) -> dict[str, tuple[str, bool]]:
    """(status, stale) of each secret-exposed-to-leaver finding, by secret ARN."""
    return {
        f.credential.credential_id: (f.status.value, f.stale)
        for f in Store.open(f"sqlite:///{tmp / 'audit.db'}").list_findings()
        if f.rule.value == "secret-exposed-to-leaver" and f.credential is not None
    }


def test_a_region_dropped_from_regions_keeps_its_findings_open_and_stale(
    tmp_path: Path, session: boto3.session.Session
) -> None:
    arns = seed(session)
    audit(tmp_path, session, [HOME, OTHER])
    assert exposed(tmp_path) == {arns[HOME]: ("open", False), arns[OTHER]: ("open", False)}
    # The home region's secret is rotated; nothing changes in the other region, which the
    # operator drops from `regions`.
    sm = session.client("secretsmanager", region_name=HOME)
    sm.put_secret_value(SecretId=arns[HOME], SecretString="rotated")
    backdate_secret(f"{HOME}/token", NOW - timedelta(days=1), region=HOME)
    result = audit(tmp_path, session, [HOME])
    assert exposed(tmp_path) == {arns[HOME]: ("resolved", False), arns[OTHER]: ("open", True)}
    run = next(s for s in result.sources if s.name == "aws/exposure")
    assert any(w.startswith("1 secret finding(s) are judged on") for w in run.warnings)
