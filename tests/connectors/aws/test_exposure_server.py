"""The exposure reader against the moto server over HTTP (``endpoint_url``, boto3's own credential
chain, no injected clients): CloudTrail log files, the inventory, and the finding they make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from offboard_audit.config import build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.aws import FAKE_AWS_ENV, MOTO_ACCOUNT
from tests.support.cloudtrail import (
    BUCKET,
    backdate_secret,
    faithful_secret_versions,
    iam_user,
    log_key,
    noise,
    put_log,
    record,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def test_read_not_rotated_against_the_moto_server(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in FAKE_AWS_ENV.items():
        monkeypatch.setenv(k, v)
    session = boto3.Session(region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=moto_endpoint)
    sm = session.client("secretsmanager", endpoint_url=moto_endpoint)
    session.client("iam", endpoint_url=moto_endpoint).create_user(UserName="alice")
    arn = sm.create_secret(
        Name="prod/jwt-signing", SecretString="k", Tags=[{"Key": "purpose", "Value": "signing"}]
    )["ARN"]
    s3.create_bucket(Bucket=BUCKET)
    read_at = NOW - timedelta(days=20)
    put_log(
        s3,
        log_key(read_at),
        [
            record(
                "GetSecretValue",
                "secretsmanager.amazonaws.com",
                read_at,
                iam_user("alice"),
                {"secretId": "prod/jwt-signing"},
                event_id="ev-1",
            ),
            noise(read_at, 1),
        ],
    )
    left = NOW - timedelta(days=10)
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases\n"
        f"E1,alice@example.com,Alice,terminated,{left.isoformat()},alice\n"
        "E2,bob@example.com,Bob,active,,\n"
        "E3,carol@example.com,Carol,active,,\n"
    )
    raw = {
        "database": {"url": f"sqlite:///{tmp_path / 'a.db'}"},
        "policy": {"max_new_terminations": 1.0},
        "sources": [
            {"name": "hr", "type": "hr_csv", "path": "hr.csv"},
            {
                "name": "aws",
                "type": "aws_iam",
                "endpoint_url": moto_endpoint,
                "service_specific_credentials": False,
                "exposure": {"trail_bucket": BUCKET},
            },
        ],
    }
    config = build_config(raw, base_dir=tmp_path, env={})
    with faithful_secret_versions():
        backdate_secret("prod/jwt-signing", NOW - timedelta(days=100), account=MOTO_ACCOUNT)
        result = Pipeline(config, Store.open(config.database_url), SourceContext(tmp_path)).run(NOW)
    exposed = [f for f in result.findings if f.rule.value == "secret-exposed-to-leaver"]
    assert [
        (
            f.person.employee_id if f.person else None,
            f.credential.credential_id if f.credential else None,
            f.severity.value,
            [a.event_id for a in f.exposure],
        )
        for f in exposed
    ] == [("E1", arn, "critical", ["ev-1"])]
    run = next(s for s in result.sources if s.name == "aws/exposure")
    assert dict(run.counts)["log_objects"] == 1 and run.failed_scopes == ()
