"""What leavers could carry away, end to end against moto in process: CloudTrail log files in S3,
secrets with versions, SecureString parameters, KMS keys and grants, IAM users and roles; full
audits through the pipeline, findings read back from the store.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import AwsClients
from offboard_audit.config import Config, build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding, FindingStatus
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.aws import MOTO_ACCOUNT, SeedUser, seed_users
from tests.support.cloudtrail import (
    BUCKET,
    backdate_parameter,
    backdate_secret,
    faithful_secret_versions,
    iam_user,
    log_key,
    noise,
    put_log,
    record,
    sso_session,
)

NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=10)
READ_AT = NOW - timedelta(days=20)
OUTSIDE = "210987654321"
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
    f"E3,carol@example.com,Carol Sso,terminated,{LEFT.isoformat()},,boss2@example.com\n"
    f"E4,dana@example.com,Dana Org,terminated,{LEFT.isoformat()},,\n"
    "E5,erin@example.com,Erin Active,active,,,\n"
    "E6,frank@example.com,Frank Active,active,,,\n"
)
SECRETS = "secretsmanager.amazonaws.com"


@dataclass
class World:
    session: boto3.session.Session
    tmp: Path
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name="us-east-1")

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o, _p in self.calls if s == service and o == operation)

    def config(self, exposure: dict[str, Any] | None = None, policy: dict[str, Any] | None = None) -> Config:
        raw = {
            "database": {"url": f"sqlite:///{self.tmp / 'audit.db'}"},
            "policy": {"max_new_terminations": 1.0, **(policy or {})},
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(self.tmp / "hr.csv")},
                {
                    "name": "aws",
                    "type": "aws_iam",
                    "service_specific_credentials": False,
                    "ssh_public_keys": True,
                    "exposure": exposure or {"trail_bucket": BUCKET},
                },
            ],
        }
        return build_config(raw, base_dir=self.tmp, env={})

    def ctx(self) -> SourceContext:
        return SourceContext(self.tmp, clients={"aws": AwsClients(session=self.session)})

    def run(self, exposure: dict[str, Any] | None = None, policy: dict[str, Any] | None = None) -> RunResult:
        config = self.config(exposure, policy)
        return Pipeline(config, Store.open(config.database_url), self.ctx()).run(NOW)

    def stored(self) -> dict[tuple[str, str, str], Finding]:
        store = Store.open(f"sqlite:///{self.tmp / 'audit.db'}")
        out = {}
        for f in store.list_findings():
            if f.rule.value in ("secret-exposed-to-leaver", "persistence-left-by-leaver"):
                assert f.person is not None and f.credential is not None
                out[(f.rule.value, f.person.employee_id, f.credential.credential_id)] = f
        return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    from moto import mock_aws

    (tmp_path / "hr.csv").write_text(HR)
    with mock_aws(), faithful_secret_versions():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        w = World(session, tmp_path)

        def record_call(model: Any, params: dict[str, Any], **_: Any) -> None:
            w.calls.append((model.service_model.service_name, model.name, dict(params)))

        session.events.register("before-call", record_call)
        _seed(w)
        yield w


def _seed(w: World) -> None:
    seed_users(
        [
            SeedUser("alice", tags={"email": "alice@example.com"}),
            SeedUser("bob", tags={"email": "bob@example.com"}),
            SeedUser("svc-build", path="/service/"),
        ]
    )
    iam = w.client("iam")
    w.ids["svc_key"] = iam.create_access_key(UserName="svc-build")["AccessKey"]["AccessKeyId"]
    w.ids["alice_own_key"] = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="alice", AccessKeyId=w.ids["alice_own_key"], Status="Inactive")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName="deploy", AssumeRolePolicyDocument=json.dumps(trust))
    w.ids["trust"] = json.dumps(trust)

    sm = w.client("secretsmanager")
    signing = sm.create_secret(
        Name="prod/token-signing-key",
        SecretString="-----BEGIN PRIVATE KEY-----",
        Tags=[{"Key": "owner", "Value": "sec-team@example.com"}, {"Key": "purpose", "Value": "signing"}],
    )
    w.ids["signing"] = signing["ARN"]
    backdate_secret("prod/token-signing-key", NOW - timedelta(days=400))
    db = sm.create_secret(Name="prod/db-password", SecretString="hunter2")
    w.ids["db"] = db["ARN"]
    # Read by alice, then rotated (its current version is newer than her read): no finding.
    backdate_secret("prod/db-password", NOW - timedelta(days=15))
    reporting = sm.create_secret(Name="prod/reporting", SecretString="r3p0rt")
    w.ids["reporting"] = reporting["ARN"]
    backdate_secret("prod/reporting", NOW - timedelta(days=400))

    ssm = w.client("ssm")
    ssm.put_parameter(Name="/app/prod/api-token", Value="t0k3n", Type="SecureString")
    w.ids["param"] = f"arn:aws:ssm:us-east-1:{MOTO_ACCOUNT}:parameter/app/prod/api-token"
    backdate_parameter("/app/prod/api-token", NOW - timedelta(days=300))

    kms = w.client("kms")
    key = kms.create_key(Description="payments key")["KeyMetadata"]
    w.ids["kms"] = key["Arn"]
    kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=f"arn:aws:iam::{MOTO_ACCOUNT}:user/alice",
        Operations=["Decrypt"],
    )

    w.client("s3").create_bucket(Bucket=BUCKET)
    # The records carry the UserIds moto gave the users: the actors are these accounts.
    alice, bob = (iam_user(n, user_id=iam.get_user(UserName=n)["User"]["UserId"]) for n in ("alice", "bob"))
    carol = sso_session("carol@example.com")
    records = [
        record(
            "GetSecretValue",
            SECRETS,
            READ_AT,
            alice,
            {"secretId": "prod/token-signing-key"},
            event_id="ev-sign",
        ),
        record("GetSecretValue", SECRETS, READ_AT, alice, {"secretId": w.ids["db"]}, event_id="ev-db"),
        record("GetSecretValue", SECRETS, READ_AT, alice, {"secretId": "prod/other"}, error="AccessDenied"),
        record(
            "CreateAccessKey",
            "iam.amazonaws.com",
            READ_AT,
            alice,
            {"userName": "svc-build"},
            {"accessKey": {"accessKeyId": w.ids["svc_key"], "userName": "svc-build", "status": "Active"}},
            event_id="ev-key",
        ),
        record(
            "CreateAccessKey",
            "iam.amazonaws.com",
            READ_AT,
            alice,
            {},
            {"accessKey": {"accessKeyId": w.ids["alice_own_key"], "userName": "alice", "status": "Active"}},
        ),
        record(
            "UpdateAssumeRolePolicy",
            "iam.amazonaws.com",
            READ_AT,
            alice,
            {"roleName": "deploy", "policyDocument": w.ids["trust"]},
            event_id="ev-trust",
        ),
        record(
            "CreateGrant", "kms.amazonaws.com", READ_AT, alice, {"keyId": key["KeyId"]}, event_id="ev-grant"
        ),
        record("GetSecretValue", SECRETS, READ_AT, bob, {"secretId": "prod/token-signing-key"}),
        record(
            "GetParameter",
            "ssm.amazonaws.com",
            READ_AT,
            carol,
            {"name": "/app/prod/api-token", "withDecryption": True},
            event_id="ev-sso",
        ),
        record("GetParameter", "ssm.amazonaws.com", READ_AT, carol, {"name": "/app/prod/api-token"}),
    ]
    records += [noise(READ_AT, i) for i in range(40)]
    put_log(w.client("s3"), log_key(READ_AT), records[:5])
    put_log(w.client("s3"), log_key(READ_AT + timedelta(minutes=5)), records[5:])


def _key_of(findings: dict[tuple[str, str, str], Finding]) -> set[tuple[str, str, str, str]]:
    return {
        (r, p, c, f.severity.value) for (r, p, c), f in findings.items() if f.status is FindingStatus.OPEN
    }


def test_leavers_exposure_findings_are_exact(world: World) -> None:
    result = world.run()
    assert result.status.value == "done", [s for s in result.sources]
    found = world.stored()
    assert _key_of(found) == {
        ("secret-exposed-to-leaver", "E1", world.ids["signing"], "critical"),
        ("secret-exposed-to-leaver", "E1", world.ids["kms"], "high"),
        ("persistence-left-by-leaver", "E1", world.ids["svc_key"], "high"),
        ("persistence-left-by-leaver", "E1", "deploy", "high"),
        ("secret-exposed-to-leaver", "E3", world.ids["param"], "high"),
    }
    signing = found[("secret-exposed-to-leaver", "E1", world.ids["signing"])]
    assert [(a.at, a.how.value, a.event_id) for a in signing.exposure] == [(READ_AT, "read", "ev-sign")]
    assert (signing.owner.via.value, signing.owner.email) == ("owner-tag", "sec-team@example.com")  # type: ignore[union-attr]
    assert signing.account.account_id == f"arn:aws:iam::{MOTO_ACCOUNT}:user/alice"
    assert signing.credential.kind.value == "secret"  # type: ignore[union-attr]
    # The SSO session named by email: matched to Carol, rotated by her manager.
    sso = found[("secret-exposed-to-leaver", "E3", world.ids["param"])]
    assert sso.account.account_id.endswith("assumed-role/AWSReservedSSO_Admin_0123abcd/carol@example.com")
    assert (sso.owner.via.value, sso.owner.email) == ("manager", "boss2@example.com")  # type: ignore[union-attr]
    assert [a.event_id for a in sso.exposure] == ["ev-sso"]
    trust = found[("persistence-left-by-leaver", "E1", "deploy")]
    assert trust.credential.kind.value == "trust_policy"  # type: ignore[union-attr]
    assert OUTSIDE in trust.reason


def test_the_tool_never_reads_a_secret_value(world: World) -> None:
    world.run()
    operations = {(s, o) for s, o, _p in world.calls}
    assert ("secretsmanager", "GetSecretValue") not in operations
    assert ("secretsmanager", "BatchGetSecretValue") not in operations
    decrypted = [
        (o, p)
        for s, o, p in world.calls
        if s == "ssm" and o.startswith("GetParameter") and p.get("WithDecryption")
    ]
    assert decrypted == []
    assert ("secretsmanager", "ListSecretVersionIds") in operations  # the inventory did read versions


def test_a_secret_rotated_after_the_read_resolves_its_finding(world: World) -> None:
    world.run()
    key = ("secret-exposed-to-leaver", "E1", world.ids["signing"])
    assert world.stored()[key].status is FindingStatus.OPEN
    world.client("secretsmanager").put_secret_value(SecretId=world.ids["signing"], SecretString="new key")
    backdate_secret("prod/token-signing-key", NOW - timedelta(days=1))
    world.run()
    assert world.stored()[key].status is FindingStatus.RESOLVED


def test_incremental_rerun_reads_only_new_objects(world: World) -> None:
    world.run()
    first = world.count("s3", "GetObject")
    assert first == 2
    put_log(world.client("s3"), log_key(NOW - timedelta(hours=2)), [noise(NOW - timedelta(hours=2), 1)])
    world.run()
    assert world.count("s3", "GetObject") - first == 1
    world.run()
    assert world.count("s3", "GetObject") - first == 1  # nothing new: nothing read


def test_a_malformed_object_fails_its_scope_and_resolves_nothing(world: World) -> None:
    world.run()
    key = ("secret-exposed-to-leaver", "E1", world.ids["signing"])
    bad = log_key(NOW - timedelta(hours=1))
    world.client("s3").put_object(Bucket=BUCKET, Key=bad, Body=b"not gzip at all")
    # Rotating now would resolve the finding, were the scope read.
    world.client("secretsmanager").put_secret_value(SecretId=world.ids["signing"], SecretString="new key")
    backdate_secret("prod/token-signing-key", NOW - timedelta(days=1))
    result = world.run()
    run = next(s for s in result.sources if s.name == "aws/exposure")
    assert [f.scope for f in run.failed_scopes] == [f"exposure:{MOTO_ACCOUNT}"]
    assert bad in run.failed_scopes[0].error
    assert result.status.value == "failed_sources"
    stored = world.stored()[key]
    assert stored.status is FindingStatus.OPEN and stored.stale


def test_organisation_trail_layout(world: World) -> None:
    org_key = log_key(READ_AT, prefix="org/", org="o-abcdef1234")
    dana = sso_session("dana", role="AWSReservedSSO_Dev_99", source_identity="dana@example.com")
    put_log(
        world.client("s3"),
        org_key,
        [record("GetSecretValue", SECRETS, READ_AT, dana, {"secretId": "prod/reporting"}, event_id="ev-org")],
    )
    world.run(exposure={"trail_bucket": BUCKET, "trail_prefix": "org/"})
    found = world.stored()
    assert _key_of(found) == {("secret-exposed-to-leaver", "E4", world.ids["reporting"], "high")}
    assert found[("secret-exposed-to-leaver", "E4", world.ids["reporting"])].owner.via.value == "unassigned"  # type: ignore[union-attr]


def test_plan_lists_rotate_tasks_and_rotates_nothing_by_default(world: World) -> None:
    from offboard_audit.core.planning import build_plan
    from offboard_audit.core.policy import PolicyConfig

    world.run()
    findings = list(world.stored().values())
    plan = build_plan(findings, {"aws": {}}, PolicyConfig(), NOW)
    assert plan.actions == ()
    tasks = {(t.task, t.object_id, t.owner.email) for t in plan.tasks}
    assert tasks == {
        ("rotate", world.ids["signing"], "sec-team@example.com"),
        ("rotate", world.ids["kms"], "boss@example.com"),
        ("remove", world.ids["svc_key"], "boss@example.com"),
        ("remove", "deploy", "boss@example.com"),
        ("rotate", world.ids["param"], "boss2@example.com"),
    }


def test_version_histories_are_read_only_for_what_leavers_touched(world: World) -> None:
    world.run()
    counts = Counter(o for s, o, _p in world.calls if s in ("secretsmanager", "ssm", "kms"))
    # Three secrets exist; alice read two of them (bob, who is active, does not count).
    assert counts["ListSecretVersionIds"] == 2
    assert counts["GetParameterHistory"] == 1


def test_auto_rotate_rotates_only_secrets_whose_rotation_is_configured(world: World) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    from offboard_audit.engine.revocation import RevocationEngine

    secret = secretsmanager_backends[MOTO_ACCOUNT]["us-east-1"].secrets["prod/token-signing-key"]
    secret.rotation_enabled = secret.rotation_requested = True
    secret.rotation_lambda_arn = f"arn:aws:lambda:us-east-1:{MOTO_ACCOUNT}:function:rotate-signing"
    secret.auto_rotate_after_days = 30
    policy = {"auto_rotate_secrets": True}
    world.run(policy=policy)
    config = world.config(policy=policy)
    engine = RevocationEngine(config, Store.open(config.database_url), world.ctx(), "test", clock=lambda: NOW)

    dry = engine.revoke(NOW, apply=False)
    assert dry.refused is None
    assert [(o.action, o.stage, o.status) for o in dry.outcomes] == [("rotate_secret", "rotate", "dry-run")]
    assert world.count("secretsmanager", "RotateSecret") == 0

    applied = engine.revoke(NOW, apply=True)
    assert [(o.action, o.status, o.reversible) for o in applied.outcomes] == [
        ("rotate_secret", "applied", False)
    ]
    assert world.count("secretsmanager", "RotateSecret") == 1
    # The rotate tasks are still listed, the one rotated marked auto.
    auto = {t.object_id for t in (applied.plan.tasks if applied.plan else ()) if t.auto}
    assert auto == {world.ids["signing"]}

    again = engine.revoke(NOW, apply=True)
    assert again.outcomes == () and world.count("secretsmanager", "RotateSecret") == 1


def test_the_blast_radius_cap_holds_rotations_too(world: World) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    from offboard_audit.engine.revocation import RevocationEngine

    secret = secretsmanager_backends[MOTO_ACCOUNT]["us-east-1"].secrets["prod/token-signing-key"]
    secret.rotation_enabled = secret.rotation_requested = True
    secret.rotation_lambda_arn = f"arn:aws:lambda:us-east-1:{MOTO_ACCOUNT}:function:rotate-signing"
    policy = {"auto_rotate_secrets": True, "max_actions_per_run": 0}
    world.run(policy=policy)
    config = world.config(policy=policy)
    engine = RevocationEngine(config, Store.open(config.database_url), world.ctx(), "test", clock=lambda: NOW)
    report = engine.revoke(NOW, apply=True)
    assert report.refused is not None and report.outcomes == ()
    assert world.count("secretsmanager", "RotateSecret") == 0
