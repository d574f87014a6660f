"""The evidence pack's "Secrets this person could carry away" (issue 14) lists exposure findings of
every system, not only Vault's: a full audit of AWS (CloudTrail files in moto's S3, Secrets
Manager, IAM) and one of Google Cloud (the real clients against the local fakes) each end in
``report --person``'s section (``collect_evidence`` + ``evidence_json``, what the command runs),
with the event ids, rotation state and rotate-task owner of each entry.
"""

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
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.report.carry_away import TITLE
from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html, evidence_json
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
from tests.support.gcp_exposure import DATA_ACCESS, SM, ExposureFake

NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=10)
READ_AT = NOW - timedelta(days=20)
LONG_AGO = NOW - timedelta(days=400)
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
)


def section(store: Store, person: str = "E1") -> dict[str, dict[str, Any]]:
    data = evidence_json(collect_evidence(store, person, NOW))
    return {x["secret"]["id"]: x for x in data["secrets_could_carry_away"]}


@pytest.fixture
def aws_store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, str]]]:
    """Alice read a signing secret (never rotated) and made an access key for a service user."""
    from moto import mock_aws

    (tmp_path / "hr.csv").write_text(HR)
    with mock_aws(), faithful_secret_versions():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        seed_users(
            [SeedUser("alice", tags={"email": "alice@example.com"}), SeedUser("svc-build", path="/service/")]
        )
        iam, sm, s3 = (session.client(s, region_name="us-east-1") for s in ("iam", "secretsmanager", "s3"))
        ids = {"key": iam.create_access_key(UserName="svc-build")["AccessKey"]["AccessKeyId"]}
        ids["signing"] = sm.create_secret(
            Name="prod/token-signing-key",
            SecretString="-----BEGIN PRIVATE KEY-----",
            Tags=[{"Key": "owner", "Value": "sec-team@example.com"}, {"Key": "purpose", "Value": "signing"}],
        )["ARN"]
        backdate_secret("prod/token-signing-key", LONG_AGO)
        s3.create_bucket(Bucket=BUCKET)
        alice = iam_user("alice")
        put_log(
            s3,
            log_key(READ_AT),
            [
                record(
                    "GetSecretValue",
                    "secretsmanager.amazonaws.com",
                    READ_AT,
                    alice,
                    {"secretId": "prod/token-signing-key"},
                    event_id="ev-aws-read",
                ),
                record(
                    "CreateAccessKey",
                    "iam.amazonaws.com",
                    READ_AT,
                    alice,
                    {"userName": "svc-build"},
                    {"accessKey": {"accessKeyId": ids["key"], "userName": "svc-build", "status": "Active"}},
                    event_id="ev-aws-key",
                ),
            ],
        )
        raw = {
            "database": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
            "policy": {"max_new_terminations": 1.0},
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(tmp_path / "hr.csv")},
                {
                    "name": "aws",
                    "type": "aws_iam",
                    "service_specific_credentials": False,
                    "exposure": {"trail_bucket": BUCKET},
                },
            ],
        }
        config = build_config(raw, base_dir=tmp_path, env={})
        store = Store.open(config.database_url)
        ctx = SourceContext(tmp_path, clients={"aws": AwsClients(session=session)})
        Pipeline(config, store, ctx).run(NOW)
        yield store, ids


def test_the_section_lists_aws_secrets_and_objects_the_leaver_left(
    aws_store: tuple[Store, dict[str, str]],
) -> None:
    store, ids = aws_store
    found = section(store)
    assert set(found) == {ids["signing"], ids["key"]}

    secret = found[ids["signing"]]
    assert (secret["source"], secret["system"], secret["secret"]["kind"]) == ("aws", "aws_iam", "secret")
    assert (secret["finding"]["rule"], secret["finding"]["severity"]) == (
        "secret-exposed-to-leaver",
        "critical",
    )
    assert [(a["how"], a["event_id"], a["action"]) for a in secret["exposure"]] == [
        ("read", "ev-aws-read", "GetSecretValue")
    ]
    assert secret["last_access"] == READ_AT.isoformat()
    rotation = secret["rotation"]
    assert (rotation["task"], rotation["state"]) == ("rotate", "not rotated since the last access")
    assert rotation["current_version_created_at"] == LONG_AGO.isoformat() and rotation["rotated_at"] is None
    assert secret["rotate_owner"] == {"email": "sec-team@example.com", "via": "owner-tag"}
    # A signing secret whose material she had: key management (3.7.5) and terminated access (8.2.5).
    assert [r["id"] for r in secret["references"]] == ["PCI DSS 3.7.5", "PCI DSS 8.2.5"]

    key = found[ids["key"]]
    assert (key["finding"]["rule"], key["secret"]["kind"]) == ("persistence-left-by-leaver", "access_key")
    assert [a["event_id"] for a in key["exposure"]] == ["ev-aws-key"]
    assert (key["rotation"]["task"], key["rotation"]["state"]) == ("remove", "still in place")
    assert key["rotate_owner"] == {"email": "boss@example.com", "via": "manager"}
    assert [r["id"] for r in key["references"]] == ["PCI DSS 8.2.5"]

    page = evidence_html(collect_evidence(store, "E1", NOW))
    assert TITLE in page and "ev-aws-read" in page and ids["key"] in page
    # Bob, active, has nothing to carry away.
    assert section(store, "E2") == {}


@pytest.fixture
def gcp_store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, str]]]:
    """Alice read a Secret Manager secret (Data Access logs on) that was never rotated."""
    (tmp_path / "hr.csv").write_text(HR)
    fake = ExposureFake().start()
    try:
        st = fake.state
        st.add_project("p1")
        st.enable_data_access("p1")
        db = st.add_secret("p1", "db-password", LONG_AGO, [(LONG_AGO, "ENABLED")])
        st.add_secret("p1", "untouched", LONG_AGO, [(LONG_AGO, "ENABLED")])
        st.audit_entry(
            "projects/p1",
            READ_AT,
            "secretmanager.googleapis.com",
            SM + "AccessSecretVersion",
            "alice@example.com",
            f"{db.name}/versions/1",
            log=DATA_ACCESS,
            insert_id="ev-gcp-read",
        )
        raw = {
            "database": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
            "policy": {"max_new_terminations": 1.0},
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(tmp_path / "hr.csv")},
                fake.source_table("gcp", projects=["p1"]),
            ],
        }
        config = build_config(raw, base_dir=tmp_path, env={})
        store = Store.open(config.database_url)
        Pipeline(config, store, SourceContext(tmp_path)).run(NOW)
        # The fake names the secret by project number; findings name it by project id.
        yield store, {"db": db.name.replace(f"projects/{st.number_of('p1')}/", "projects/p1/")}
    finally:
        fake.stop()


def test_the_section_lists_google_cloud_secrets_the_leaver_read(
    gcp_store: tuple[Store, dict[str, str]],
) -> None:
    store, ids = gcp_store
    found = section(store)
    assert set(found) == {ids["db"]}
    entry = found[ids["db"]]
    assert (entry["source"], entry["system"]) == ("gcp", "gcp_iam")
    assert (entry["finding"]["rule"], entry["finding"]["status"]) == ("secret-exposed-to-leaver", "open")
    assert [(a["how"], a["event_id"]) for a in entry["exposure"]] == [("read", "ev-gcp-read")]
    assert entry["rotation"]["state"] == "not rotated since the last access"
    assert entry["rotation"]["current_version_created_at"] == LONG_AGO.isoformat()
    assert entry["rotate_owner"] == {"email": "boss@example.com", "via": "manager"}
    assert "PCI DSS 8.2.5" in [r["id"] for r in entry["references"]]
