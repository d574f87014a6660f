"""CloudTrail event kinds the exposure reader translates that the other exposure tests leave out
(issue 13): IAM ``CreateUser``, ``CreateLoginProfile``, ``CreateRole``, ``AttachUserPolicy``;
SSM ``GetParameters``, ``GetParametersByPath``, ``PutParameter``; Secrets Manager
``CreateSecret``, ``UpdateSecret``; KMS ``PutKeyPolicy``. Also identities named only by
``onBehalfOf`` (IAM Identity Center) and ``lookback`` bounding the first read of a trail.

Records are written in CloudTrail's documented format (IAM response dates as CloudTrail writes
them: ``"Aug 1, 2024 1:42:21 PM"``) into gzip log files in moto's S3; the objects they name are
real moto objects, and expected ids come from moto's own answers. Full audits go through the
pipeline with storage on SQLite; findings are read back from the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import AwsClients
from connectors.aws_iam.exposure.translate import record_events
from offboard_audit.config import Config, build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind, ExposureHow, Finding, FindingStatus
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
ACTED_AT = NOW - timedelta(days=20)
LONG_AGO = NOW - timedelta(days=400)
OUTSIDE = "210987654321"
# An IAM Identity Center user id (identity store GUID): what ``onBehalfOf.userId`` carries.
IVY_SSO_ID = "94d00cd8-e9e6-4810-b177-b08e84775435"
IDENTITY_STORE = f"arn:aws:identitystore::{MOTO_ACCOUNT}:identitystore/d-1234567890"
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
    f"E5,ivy@example.com,Ivy Sso,terminated,{LEFT.isoformat()},{IVY_SSO_ID},\n"
)
IAM = "iam.amazonaws.com"
SSM = "ssm.amazonaws.com"
SECRETS = "secretsmanager.amazonaws.com"
KMS = "kms.amazonaws.com"
EXPOSURE_RULES = ("secret-exposed-to-leaver", "persistence-left-by-leaver")


def cloudtrail_date(t: datetime) -> str:
    """An IAM response date as CloudTrail writes it in ``responseElements``."""
    t = t.astimezone(UTC)
    hour = t.hour % 12 or 12
    return f"{t:%b} {t.day}, {t.year} {hour}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"


def trust_policy(account: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


@dataclass
class World:
    seed: boto3.session.Session
    tool: boto3.session.Session
    tmp: Path
    calls: list[tuple[str, str]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """A client for seeding (its calls are not the tool's)."""
        return self.seed.client(service, region_name="us-east-1")

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o in self.calls if (s, o) == (service, operation))

    def config(self, db: str = "audit.db", **exposure: Any) -> Config:
        raw = {
            "database": {"url": f"sqlite:///{self.tmp / db}"},
            "policy": {"max_new_terminations": 1.0},
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(self.tmp / "hr.csv")},
                {
                    "name": "aws",
                    "type": "aws_iam",
                    "service_specific_credentials": False,
                    "exposure": {"trail_bucket": BUCKET, **exposure},
                },
            ],
        }
        return build_config(raw, base_dir=self.tmp, env={})

    def run(self, db: str = "audit.db", **exposure: Any) -> RunResult:
        config = self.config(db, **exposure)
        ctx = SourceContext(self.tmp, clients={"aws": AwsClients(session=self.tool)})
        return Pipeline(config, Store.open(config.database_url), ctx).run(NOW)

    def stored(self, db: str = "audit.db") -> dict[tuple[str, str, str], Finding]:
        out = {}
        for f in Store.open(f"sqlite:///{self.tmp / db}").list_findings():
            if f.rule.value in EXPOSURE_RULES:
                assert f.person is not None and f.credential is not None
                out[(f.rule.value, f.person.employee_id, f.credential.credential_id)] = f
        return out

    def open_findings(self, db: str = "audit.db") -> dict[tuple[str, str, str], Finding]:
        return {k: f for k, f in self.stored(db).items() if f.status is FindingStatus.OPEN}

    def log(self, at: datetime, records: list[dict[str, Any]]) -> str:
        key = log_key(at)
        put_log(self.client("s3"), key, [*records, *(noise(at, i) for i in range(5))])
        return key


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    from moto import mock_aws

    (tmp_path / "hr.csv").write_text(HR)
    with mock_aws(), faithful_secret_versions():
        w = World(_session(), _session(), tmp_path)

        def record_call(model: Any, **_: Any) -> None:
            w.calls.append((model.service_model.service_name, model.name))

        w.tool.events.register("before-call", record_call)
        seed_users(
            [
                SeedUser("alice", tags={"email": "alice@example.com"}),
                SeedUser("bob", tags={"email": "bob@example.com"}),
                SeedUser("svc-build", path="/service/"),
            ]
        )
        w.client("s3").create_bucket(Bucket=BUCKET)
        yield w


ALICE = iam_user("alice")


# --- IAM objects made for another identity (persistence) ----------------------------------------


def _seed_persistence(w: World) -> list[dict[str, Any]]:
    """Alice's IAM calls, each on a real moto object; returns the CloudTrail records."""
    iam = w.client("iam")
    out: list[dict[str, Any]] = []

    def create_user(name: str, event_id: str) -> None:
        user = iam.create_user(UserName=name)["User"]
        out.append(
            record(
                "CreateUser",
                IAM,
                ACTED_AT,
                ALICE,
                {"userName": name},
                {
                    "user": {
                        "path": "/",
                        "userName": name,
                        "userId": user["UserId"],
                        "arn": user["Arn"],
                        "createDate": cloudtrail_date(ACTED_AT),
                    }
                },
                event_id=event_id,
            )
        )

    create_user("svc-new", "ev-create-user")
    # Made by Alice, then deleted and re-created by someone else: not the user she made.
    create_user("svc-recreated", "ev-create-user-gone")
    iam.delete_user(UserName="svc-recreated")
    iam.create_user(UserName="svc-recreated")

    # A role whose trust policy lets an outside account in (the document as the caller sent it,
    # indented: the digest must not depend on formatting).
    iam.create_role(RoleName="vendor-access", AssumeRolePolicyDocument=json.dumps(trust_policy(OUTSIDE)))
    out.append(
        record(
            "CreateRole",
            IAM,
            ACTED_AT,
            ALICE,
            {
                "roleName": "vendor-access",
                "assumeRolePolicyDocument": json.dumps(trust_policy(OUTSIDE), indent=2),
            },
            {"role": {"roleName": "vendor-access", "arn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/vendor-access"}},
            event_id="ev-create-role",
        )
    )
    # A role she made whose trust policy an administrator replaced since: not hers any more.
    iam.create_role(RoleName="ci-runner", AssumeRolePolicyDocument=json.dumps(trust_policy(OUTSIDE)))
    out.append(
        record(
            "CreateRole",
            IAM,
            ACTED_AT,
            ALICE,
            {"roleName": "ci-runner", "assumeRolePolicyDocument": json.dumps(trust_policy(OUTSIDE))},
            event_id="ev-create-role-changed",
        )
    )
    iam.update_assume_role_policy(RoleName="ci-runner", PolicyDocument=json.dumps(trust_policy(MOTO_ACCOUNT)))

    def policy(name: str) -> str:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        return str(iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"])

    def attach(user: str, arn: str, event_id: str) -> None:
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
        out.append(
            record(
                "AttachUserPolicy",
                IAM,
                ACTED_AT,
                ALICE,
                {"userName": user, "policyArn": arn},
                event_id=event_id,
            )
        )

    w.ids["admin_policy"] = policy("deploy-everything")
    attach("svc-build", w.ids["admin_policy"], "ev-attach")
    detached = policy("temporary-admin")
    attach("svc-build", detached, "ev-attach-detached")
    iam.detach_user_policy(UserName="svc-build", PolicyArn=detached)
    attach("alice", policy("self-service"), "ev-attach-own")  # her own user: no backdoor
    return out


def test_users_roles_and_attached_policies_a_leaver_made_for_others_and_still_in_place_are_found(
    world: World,
) -> None:
    world.log(ACTED_AT, _seed_persistence(world))
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    found = world.open_findings()
    binding = f"svc-build/{world.ids['admin_policy']}"
    assert {(k, f.credential.kind) for k, f in found.items()} == {  # type: ignore[union-attr]
        (("persistence-left-by-leaver", "E1", "svc-new"), CredentialKind.ACCOUNT),
        (("persistence-left-by-leaver", "E1", "vendor-access"), CredentialKind.TRUST_POLICY),
        (("persistence-left-by-leaver", "E1", binding), CredentialKind.IAM_BINDING),
    }
    events = {k[2]: [(a.how, a.event_id, a.action) for a in f.exposure] for k, f in found.items()}
    assert events == {
        "svc-new": [(ExposureHow.CREATED, "ev-create-user", "CreateUser")],
        "vendor-access": [(ExposureHow.CREATED, "ev-create-role", "CreateRole")],
        binding: [(ExposureHow.CHANGED_ACCESS, "ev-attach", "AttachUserPolicy")],
    }
    assert OUTSIDE in found[("persistence-left-by-leaver", "E1", "vendor-access")].reason
    # Nobody tagged these objects: the remove tasks go to the leaver's manager.
    assert {(f.owner.via.value, f.owner.email) for f in found.values()} == {("manager", "boss@example.com")}  # type: ignore[union-attr]


def test_persistence_findings_resolve_when_the_objects_are_removed(world: World) -> None:
    world.log(ACTED_AT, _seed_persistence(world))
    world.run()
    assert len(world.open_findings()) == 3
    iam = world.client("iam")
    iam.delete_user(UserName="svc-new")
    iam.delete_role(RoleName="vendor-access")
    iam.detach_user_policy(UserName="svc-build", PolicyArn=world.ids["admin_policy"])
    world.run()
    stored = world.stored()
    assert len(stored) == 3 and all(f.status is FindingStatus.RESOLVED for f in stored.values())


def _login_profile_record(w: World, user: str, event_id: str) -> dict[str, Any]:
    profile = w.client("iam").create_login_profile(UserName=user, Password="Seeded-Passw0rd!")["LoginProfile"]
    return record(
        "CreateLoginProfile",
        IAM,
        ACTED_AT,
        ALICE,
        {"userName": user, "passwordResetRequired": False},
        {
            "loginProfile": {
                "userName": user,
                "createDate": cloudtrail_date(profile["CreateDate"]),
                "passwordResetRequired": False,
            }
        },
        event_id=event_id,
    )


def test_a_console_password_a_leaver_gave_another_user_is_persistence(world: World) -> None:
    world.log(
        ACTED_AT,
        [
            _login_profile_record(world, "svc-build", "ev-login-profile"),
            _login_profile_record(world, "alice", "ev-login-profile-own"),  # her own: nothing
        ],
    )
    result = world.run()
    exposure = next(s for s in result.sources if s.name == "aws/exposure")
    assert exposure.failed_scopes == (), exposure.failed_scopes
    found = world.open_findings()
    assert set(found) == {("persistence-left-by-leaver", "E1", "svc-build/login-profile")}
    f = found[("persistence-left-by-leaver", "E1", "svc-build/login-profile")]
    assert f.credential is not None and f.credential.kind is CredentialKind.PASSWORD
    assert [a.event_id for a in f.exposure] == ["ev-login-profile"]


def _password_dated(user: str, when: datetime) -> None:
    """Give ``user`` a console password dated ``when``: moto reports the user's creation time as
    its login profile's CreateDate and as the credential report's password_last_changed."""
    from tests.support.aws import iam_backend

    iam = iam_backend()
    iam.create_login_profile(user, "Seeded-Passw0rd!")
    iam.get_user(user).create_date = when


def _update_login_profile(user: str, event_id: str) -> dict[str, Any]:
    # CloudTrail leaves the password out of the record (AWS's documented example has no response).
    request = {"userName": user, "passwordResetRequired": False}
    return record("UpdateLoginProfile", IAM, ACTED_AT, ALICE, request, event_id=event_id)


def test_a_console_password_a_leaver_set_for_another_user_is_persistence_until_changed(
    world: World,
) -> None:
    """UpdateLoginProfile gives an existing login profile a password the caller knows: set on
    another user (a service user nobody watches), it is a login she can still use, like one she
    created. Her own password is no backdoor; a password changed since (the credential report's
    password_last_changed after her call) or a profile deleted since is no longer hers."""
    _password_dated("svc-build", LONG_AGO)
    _password_dated("alice", LONG_AGO)
    world.client("iam").create_user(UserName="svc-changed")
    # Its password changed after her call (moto dates the change by the user's creation).
    _password_dated("svc-changed", ACTED_AT + timedelta(days=1))
    world.log(
        ACTED_AT,
        [
            _update_login_profile("svc-build", "ev-update-password"),
            _update_login_profile("alice", "ev-update-own-password"),
            _update_login_profile("svc-changed", "ev-update-changed"),
        ],
    )
    result = world.run()
    exposure = next(s for s in result.sources if s.name == "aws/exposure")
    assert exposure.failed_scopes == (), exposure.failed_scopes
    found = world.open_findings()
    assert set(found) == {("persistence-left-by-leaver", "E1", "svc-build/login-profile")}
    f = found[("persistence-left-by-leaver", "E1", "svc-build/login-profile")]
    assert f.credential is not None and f.credential.kind is CredentialKind.PASSWORD
    assert [(a.how, a.event_id, a.action) for a in f.exposure] == [
        (ExposureHow.CHANGED_ACCESS, "ev-update-password", "UpdateLoginProfile")
    ]
    assert world.count("iam", "GetCredentialReport") >= 1

    world.client("iam").delete_login_profile(UserName="svc-build")
    world.run()
    stored = world.stored()
    assert (
        stored[("persistence-left-by-leaver", "E1", "svc-build/login-profile")].status
        is FindingStatus.RESOLVED
    )


# --- SSM parameters, Secrets Manager secrets, KMS key policies ----------------------------------


def _seed_secrets(w: World) -> list[dict[str, Any]]:
    ssm, sm, kms = w.client("ssm"), w.client("secretsmanager"), w.client("kms")
    for name in (
        "/app/prod/db-url",
        "/app/prod/api-key",
        "/app/prod/unread",
        "/team/payments/token",
        "/team/payments/stripe/key",
        "/team/payroll/key",
        "/ops/direct",
        "/ops/deep/nested",
    ):
        ssm.put_parameter(Name=name, Value="v", Type="SecureString")
        backdate_parameter(name, LONG_AGO)
        w.ids[name] = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    # Written by Alice: the value in use is the one she wrote.
    ssm.put_parameter(Name="/app/prod/feature-key", Value="hers", Type="SecureString")
    backdate_parameter("/app/prod/feature-key", ACTED_AT)
    w.ids["/app/prod/feature-key"] = ssm.get_parameter(Name="/app/prod/feature-key")["Parameter"]["ARN"]

    created = sm.create_secret(Name="prod/partner-api", SecretString="hers")
    backdate_secret("prod/partner-api", ACTED_AT)
    w.ids["partner"] = created["ARN"]
    w.ids["ldap"] = sm.create_secret(Name="prod/ldap-bind", SecretString="hers")["ARN"]
    backdate_secret("prod/ldap-bind", ACTED_AT)
    # Updated by Alice, then rotated (a version newer than her update is current).
    w.ids["rotated"] = sm.create_secret(Name="prod/rotated", SecretString="new")["ARN"]
    backdate_secret("prod/rotated", NOW - timedelta(days=2))

    key = kms.create_key(Description="orders key")["KeyMetadata"]
    w.ids["kms"] = key["Arn"]

    def params(event: str, request: dict[str, Any], event_id: str) -> dict[str, Any]:
        return record(event, SSM, ACTED_AT, ALICE, request, event_id=event_id)

    return [
        params(
            "GetParameters",
            {"names": ["/app/prod/db-url", "/app/prod/api-key"], "withDecryption": True},
            "ev-get-params",
        ),
        params("GetParameters", {"names": ["/app/prod/unread"], "withDecryption": False}, "ev-ciphertext"),
        params(
            "GetParametersByPath",
            {"path": "/team/payments", "recursive": True, "withDecryption": True},
            "ev-by-path",
        ),
        params(
            "GetParametersByPath",
            {"path": "/ops/", "recursive": False, "withDecryption": True},
            "ev-by-path-flat",
        ),
        record(
            "PutParameter",
            SSM,
            ACTED_AT,
            ALICE,
            {"name": "/app/prod/feature-key", "type": "SecureString", "overwrite": True},
            {"version": 1, "tier": "Standard"},
            event_id="ev-put-param",
        ),
        record(
            "CreateSecret",
            SECRETS,
            ACTED_AT,
            ALICE,
            {"name": "prod/partner-api", "clientRequestToken": "t-1"},
            {"aRN": w.ids["partner"], "name": "prod/partner-api", "versionId": "t-1"},
            event_id="ev-create-secret",
        ),
        record(
            "UpdateSecret",
            SECRETS,
            ACTED_AT,
            ALICE,
            {"secretId": "prod/ldap-bind", "clientRequestToken": "t-2"},
            {"aRN": w.ids["ldap"], "name": "prod/ldap-bind", "versionId": "t-2"},
            event_id="ev-update-secret",
        ),
        record(
            "UpdateSecret",
            SECRETS,
            ACTED_AT,
            ALICE,
            {"secretId": w.ids["rotated"]},
            {"aRN": w.ids["rotated"], "name": "prod/rotated"},
            event_id="ev-update-rotated",
        ),
        record(
            "PutKeyPolicy",
            KMS,
            ACTED_AT,
            ALICE,
            {"keyId": key["KeyId"], "policyName": "default", "policy": "{}"},
            event_id="ev-key-policy",
        ),
    ]


def test_parameters_and_secrets_the_leaver_read_or_wrote_and_nobody_rotated_are_exposed(
    world: World,
) -> None:
    world.log(ACTED_AT, _seed_secrets(world))
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    found = world.open_findings()
    ids = world.ids
    expected = {
        ids["/app/prod/db-url"]: [(ExposureHow.READ, "ev-get-params#0", "GetParameters")],
        ids["/app/prod/api-key"]: [(ExposureHow.READ, "ev-get-params#1", "GetParameters")],
        # A recursive read by path covers every level under it.
        ids["/team/payments/token"]: [(ExposureHow.READ, "ev-by-path", "GetParametersByPath")],
        ids["/team/payments/stripe/key"]: [(ExposureHow.READ, "ev-by-path", "GetParametersByPath")],
        # A non-recursive one only the direct children.
        ids["/ops/direct"]: [(ExposureHow.READ, "ev-by-path-flat", "GetParametersByPath")],
        ids["/app/prod/feature-key"]: [(ExposureHow.CREATED, "ev-put-param", "PutParameter")],
        ids["partner"]: [(ExposureHow.CREATED, "ev-create-secret", "CreateSecret")],
        ids["ldap"]: [(ExposureHow.CREATED, "ev-update-secret", "UpdateSecret")],
    }
    assert {k[2]: [(a.how, a.event_id, a.action) for a in f.exposure] for k, f in found.items()} == expected
    assert {k[:2] for k in found} == {("secret-exposed-to-leaver", "E1")}
    kinds = {k[2]: f.credential.kind for k, f in found.items()}  # type: ignore[union-attr]
    assert {kinds[ids["partner"]], kinds[ids["ldap"]]} == {CredentialKind.SECRET}
    assert {kinds[ids["/app/prod/feature-key"]], kinds[ids["/ops/direct"]]} == {CredentialKind.PARAMETER}
    # Left out, each for its reason: a read without decryption (ciphertext only), parameters
    # outside the paths read, a secret rotated after the update, and a key policy change on a
    # KMS key whose AWS-generated material never left KMS (no grant to her either).
    for absent in ("/app/prod/unread", "/team/payroll/key", "/ops/deep/nested"):
        assert ids[absent] not in {k[2] for k in found}, absent
    assert ids["rotated"] not in {k[2] for k in world.stored()}
    assert ids["kms"] not in {k[2] for k in world.stored()}


def test_a_parameter_rewritten_after_the_read_resolves_and_the_others_stay_open(world: World) -> None:
    world.log(ACTED_AT, _seed_secrets(world))
    world.run()
    db_url = world.ids["/app/prod/db-url"]
    assert ("secret-exposed-to-leaver", "E1", db_url) in world.open_findings()
    world.client("ssm").put_parameter(
        Name="/app/prod/db-url", Value="new", Type="SecureString", Overwrite=True
    )
    backdate_parameter("/app/prod/db-url", NOW - timedelta(days=1))
    world.run()
    stored = world.stored()
    assert stored[("secret-exposed-to-leaver", "E1", db_url)].status is FindingStatus.RESOLVED
    api_key = world.ids["/app/prod/api-key"]
    assert stored[("secret-exposed-to-leaver", "E1", api_key)].status is FindingStatus.OPEN


@pytest.mark.parametrize(
    ("name", "source", "request_", "response", "kind", "object_id", "how"),
    [
        (
            "PutKeyPolicy",
            KMS,
            {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "policyName": "default", "policy": "{}"},
            None,
            CredentialKind.KMS_KEY,
            "us-east-1:1234abcd-12ab-34cd-56ef-1234567890ab",
            ExposureHow.CHANGED_ACCESS,
        ),
        (
            "CreateSecret",
            SECRETS,
            {"name": "prod/x"},
            None,  # no response (e.g. a Lake row without it): named by region and name
            CredentialKind.SECRET,
            "us-east-1:prod/x",
            ExposureHow.CREATED,
        ),
        (
            "GetParametersByPath",
            SSM,
            {"path": "/a/b/", "withDecryption": True},
            None,
            CredentialKind.PARAMETER,
            "us-east-1:/a/b/+",
            ExposureHow.READ,
        ),
    ],
)
def test_translation_names_the_object_and_how_it_was_touched(
    name: str,
    source: str,
    request_: dict[str, Any],
    response: dict[str, Any] | None,
    kind: CredentialKind,
    object_id: str,
    how: ExposureHow,
) -> None:
    (event,) = record_events(record(name, source, ACTED_AT, ALICE, request_, response, event_id="e1"), "aws")
    assert (event.target.kind, event.target.object_id, event.how, event.action) == (
        kind,
        object_id,
        how,
        name,
    )
    assert (event.event_id, event.scope, event.at) == ("e1", MOTO_ACCOUNT, ACTED_AT)
    # The user is its UserId; its ARN names the account it was when the record was written.
    assert (event.actor.identity, event.actor.uid, event.actor.account_id) == (
        ALICE["principalId"],
        ALICE["principalId"],
        ALICE["arn"],
    )


# --- identities named by onBehalfOf (IAM Identity Center) ---------------------------------------


def test_sessions_acting_on_behalf_of_an_identity_center_user_are_matched_to_that_person(
    world: World,
) -> None:
    sm = world.client("secretsmanager")
    for name in ("prod/warehouse", "prod/portal", "prod/unnamed"):
        world.ids[name] = sm.create_secret(Name=name, SecretString="v")["ARN"]
        backdate_secret(name, LONG_AGO)
    on_behalf = {"userId": IVY_SSO_ID, "identityStoreArn": IDENTITY_STORE}
    # An identity-enhanced role session: its session name says nothing about who it is.
    session = sso_session("botocore-session-1731000000", role="AWSReservedSSO_Data_5f1c")
    anonymous = sso_session("botocore-session-1731000999", role="AWSReservedSSO_Data_5f1c")
    portal_user = {
        "type": "IdentityCenterUser",
        "accountId": MOTO_ACCOUNT,
        "onBehalfOf": on_behalf,
        "credentialId": "EXAMPLE-credential-id",
    }
    world.log(
        ACTED_AT,
        [
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                {**session, "onBehalfOf": on_behalf},
                {"secretId": "prod/warehouse"},
                event_id="ev-on-behalf",
            ),
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                portal_user,
                {"secretId": "prod/portal"},
                event_id="ev-portal",
            ),
            # Another such session without onBehalfOf names nobody.
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                anonymous,
                {"secretId": "prod/unnamed"},
                event_id="ev-anon",
            ),
        ],
    )
    world.run()
    found = world.open_findings()
    assert set(found) == {
        ("secret-exposed-to-leaver", "E5", world.ids["prod/warehouse"]),
        ("secret-exposed-to-leaver", "E5", world.ids["prod/portal"]),
    }
    warehouse = found[("secret-exposed-to-leaver", "E5", world.ids["prod/warehouse"])]
    assert [a.event_id for a in warehouse.exposure] == ["ev-on-behalf"]
    # The identity she acted through: the session and the Identity Center user behind it.
    assert warehouse.account.account_id == f"{session['arn']}#{IVY_SSO_ID}"


# --- IAM users by UserId ------------------------------------------------------------------------


def test_a_read_by_a_user_deleted_and_re_created_under_its_name_stays_the_leavers(world: World) -> None:
    sm = world.client("secretsmanager")
    world.ids["prod/sign"] = sm.create_secret(Name="prod/sign", SecretString="v")["ARN"]
    backdate_secret("prod/sign", LONG_AGO)
    iam = world.client("iam")
    alices_user = iam_user("alice", user_id=iam.get_user(UserName="alice")["User"]["UserId"])
    world.log(ACTED_AT, [record("GetSecretValue", SECRETS, ACTED_AT, alices_user, {"secretId": "prod/sign"})])
    # Alice's user is deleted at offboarding and the name given to Bob (active): same ARN, new
    # UserId, tagged with Bob's email. Alice's read is not Bob's, and still not rotated.
    iam.delete_user(UserName="alice")
    iam.create_user(UserName="alice", Tags=[{"Key": "email", "Value": "bob@example.com"}])
    assert iam.get_user(UserName="alice")["User"]["UserId"] != alices_user["principalId"]

    world.run()
    [(key, finding)] = world.open_findings().items()
    assert key == ("secret-exposed-to-leaver", "E1", world.ids["prod/sign"])
    assert (finding.account.account_id, finding.account.uid) == (
        alices_user["arn"],
        alices_user["principalId"],
    )


def test_a_user_renamed_since_its_read_is_still_matched_as_its_account(world: World) -> None:
    sm = world.client("secretsmanager")
    world.ids["prod/sign"] = sm.create_secret(Name="prod/sign", SecretString="v")["ARN"]
    backdate_secret("prod/sign", LONG_AGO)
    iam = world.client("iam")
    # Alice's user was called "a-smith" when it read the secret (a name that matches nobody);
    # renamed since, it is the account tagged with her email, found by its UserId.
    user_id = iam.get_user(UserName="alice")["User"]["UserId"]
    old = iam_user("a-smith", user_id=user_id)
    world.log(ACTED_AT, [record("GetSecretValue", SECRETS, ACTED_AT, old, {"secretId": "prod/sign"})])

    world.run()
    [(key, finding)] = world.open_findings().items()
    assert key == ("secret-exposed-to-leaver", "E1", world.ids["prod/sign"])
    assert (finding.account.account_id, finding.account.uid) == (
        f"arn:aws:iam::{MOTO_ACCOUNT}:user/alice",
        user_id,
    )


# --- lookback ----------------------------------------------------------------------------------


def test_lookback_bounds_the_first_read_of_a_trail(world: World) -> None:
    sm = world.client("secretsmanager")
    recent_at, old_at = NOW - timedelta(days=20), NOW - timedelta(days=60)
    for name in ("prod/recent", "prod/old"):
        world.ids[name] = sm.create_secret(Name=name, SecretString="v")["ARN"]
        backdate_secret(name, LONG_AGO)
    world.log(old_at, [record("GetSecretValue", SECRETS, old_at, ALICE, {"secretId": "prod/old"})])
    world.log(recent_at, [record("GetSecretValue", SECRETS, recent_at, ALICE, {"secretId": "prod/recent"})])

    world.run(db="bounded.db", lookback="30d")
    assert world.count("s3", "GetObject") == 1  # the 60-day-old object is never fetched
    assert {k[2] for k in world.open_findings("bounded.db")} == {world.ids["prod/recent"]}

    # The same trail read with the default lookback (a year) in a fresh database: the old read
    # counts, so it was the bound that kept it out above.
    world.run(db="default.db")
    assert world.count("s3", "GetObject") == 1 + 2
    assert {k[2] for k in world.open_findings("default.db")} == {
        world.ids["prod/recent"],
        world.ids["prod/old"],
    }


def test_a_console_password_deleted_and_given_again_by_someone_else_is_not_the_leavers(
    world: World,
) -> None:
    made = _login_profile_record(world, "svc-build", "ev-login-profile")
    # The record says the profile was made ten minutes before the one in place now.
    profile = world.client("iam").get_login_profile(UserName="svc-build")["LoginProfile"]
    made["responseElements"]["loginProfile"]["createDate"] = cloudtrail_date(
        profile["CreateDate"] - timedelta(minutes=10)
    )
    world.log(ACTED_AT, [made])
    result = world.run()
    exposure = next(s for s in result.sources if s.name == "aws/exposure")
    assert exposure.failed_scopes == (), exposure.failed_scopes
    assert world.open_findings() == {}


def test_the_login_profile_date_in_cloudtrails_console_form_becomes_the_fingerprint() -> None:
    response = {"loginProfile": {"userName": "svc", "createDate": "Aug 1, 2024 1:42:21 PM"}}
    rec = record("CreateLoginProfile", IAM, ACTED_AT, ALICE, {"userName": "svc"}, response, event_id="e1")
    (event,) = record_events(rec, "aws")
    assert event.target.fingerprint == datetime(2024, 8, 1, 13, 42, 21, tzinfo=UTC).isoformat()
    response["loginProfile"]["createDate"] = "not a date"
    (event,) = record_events(rec, "aws")
    assert event.target.fingerprint == ""  # unknown: the profile in place is taken as hers


def test_parameters_read_by_arn_version_or_label_are_the_parameters_read(world: World) -> None:
    """SSM takes a parameter's ARN for its name, and ``name:version`` / ``name:label`` (also after
    an ARN) to read one version; CloudTrail logs the name as sent. Each such read handed the value
    over as a read by plain name does: the finding names the parameter."""
    ssm = world.client("ssm")
    names = (
        "/app/prod/by-arn",
        "/app/prod/by-version",
        "/app/prod/by-label",
        "/app/prod/arn-version",
        "flat",
    )
    for name in names:
        ssm.put_parameter(Name=name, Value="v", Type="SecureString")
        backdate_parameter(name, LONG_AGO)
        world.ids[name] = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    ssm.label_parameter_version(Name="/app/prod/by-label", ParameterVersion=1, Labels=["prod"])

    def read(event: str, request: dict[str, Any], event_id: str) -> dict[str, Any]:
        return record(event, SSM, ACTED_AT, ALICE, {**request, "withDecryption": True}, event_id=event_id)

    world.log(
        ACTED_AT,
        [
            read("GetParameter", {"name": world.ids["/app/prod/by-arn"]}, "ev-arn"),
            read("GetParameter", {"name": "/app/prod/by-version:1"}, "ev-version"),
            read("GetParameters", {"names": ["/app/prod/by-label:prod", "flat:1"]}, "ev-label"),
            read("GetParameter", {"name": world.ids["/app/prod/arn-version"] + ":1"}, "ev-arn-version"),
        ],
    )
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    found = {k[2]: [a.event_id for a in f.exposure] for k, f in world.open_findings().items()}
    assert found == {
        world.ids["/app/prod/by-arn"]: ["ev-arn"],
        world.ids["/app/prod/by-version"]: ["ev-version"],
        world.ids["/app/prod/by-label"]: ["ev-label#0"],
        world.ids["flat"]: ["ev-label#1"],
        world.ids["/app/prod/arn-version"]: ["ev-arn-version"],
    }
    # The inventory read the version history of each of them, the one read by ARN too.
    assert world.count("ssm", "GetParameterHistory") == len(names)


def federated_session(name: str, issuer: dict[str, Any]) -> dict[str, Any]:
    """The ``userIdentity`` of a ``GetFederationToken`` session: its name is whatever the caller
    chose; ``sessionIssuer`` is the IAM user whose credentials made it (CloudTrail's own example)."""
    account = str(issuer["accountId"])
    return {
        "type": "FederatedUser",
        "principalId": f"{account}:{name}",
        "arn": f"arn:aws:sts::{account}:federated-user/{name}",
        "accountId": account,
        "accessKeyId": "ASIAEXAMPLEFEDERATED",
        "sessionContext": {
            "sessionIssuer": {
                "type": "IAMUser",
                "principalId": issuer["principalId"],
                "arn": issuer["arn"],
                "accountId": account,
                "userName": issuer["userName"],
            },
            "attributes": {"creationDate": "2025-01-01T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }


def test_a_federated_session_is_the_iam_user_that_made_it(world: World) -> None:
    """A ``GetFederationToken`` session acts with its issuer's permissions under a name the issuer
    chose: what it reads, the issuer's person read (matched by the user's UserId)."""
    sm, iam = world.client("secretsmanager"), world.client("iam")
    for name in ("prod/via-federation", "prod/bob-federated"):
        world.ids[name] = sm.create_secret(Name=name, SecretString="v")["ARN"]
        backdate_secret(name, LONG_AGO)
    alice, bob = (iam_user(n, user_id=iam.get_user(UserName=n)["User"]["UserId"]) for n in ("alice", "bob"))
    world.log(
        ACTED_AT,
        [
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                federated_session("tmp-export", alice),
                {"secretId": "prod/via-federation"},
                event_id="ev-federated",
            ),
            # Bob (active) under the same session name: his read is his, and raises nothing.
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                federated_session("tmp-export", bob),
                {"secretId": "prod/bob-federated"},
                event_id="ev-bob-federated",
            ),
        ],
    )
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    [(key, finding)] = world.open_findings().items()
    assert key == ("secret-exposed-to-leaver", "E1", world.ids["prod/via-federation"])
    assert [a.event_id for a in finding.exposure] == ["ev-federated"]


def test_a_federated_session_made_by_a_broker_user_that_is_nobodys_is_matched_by_its_name(
    world: World,
) -> None:
    """An identity broker's IAM user (nobody's) makes sessions named after the people it serves:
    its session for Alice is Alice's, as it was before the issuer was read."""
    sm, iam = world.client("secretsmanager"), world.client("iam")
    world.ids["prod/brokered"] = sm.create_secret(Name="prod/brokered", SecretString="v")["ARN"]
    backdate_secret("prod/brokered", LONG_AGO)
    broker = iam_user("svc-build", user_id=iam.get_user(UserName="svc-build")["User"]["UserId"])
    world.log(
        ACTED_AT,
        [
            record(
                "GetSecretValue",
                SECRETS,
                ACTED_AT,
                federated_session("alice@example.com", broker),
                {"secretId": "prod/brokered"},
                event_id="ev-brokered",
            )
        ],
    )
    world.run()
    assert set(world.open_findings()) == {("secret-exposed-to-leaver", "E1", world.ids["prod/brokered"])}


# --- a value the leaver wrote is the value they had ---------------------------------------------


def test_a_value_the_leaver_wrote_is_exposed_though_aws_stamps_its_version_after_the_call(
    world: World,
) -> None:
    """CloudTrail's eventTime is the call's second (``...:05Z``); AWS stamps the version the call
    made a moment later, with milliseconds (``...:05.350``). That version is the leaver's value:
    it was not made after their write."""
    from moto.secretsmanager.models import secretsmanager_backends

    sm, ssm = world.client("secretsmanager"), world.client("ssm")
    world.ids["secret"] = sm.create_secret(Name="prod/written", SecretString="hers")["ARN"]
    stamped = ACTED_AT + timedelta(milliseconds=350)
    secret = secretsmanager_backends[MOTO_ACCOUNT]["us-east-1"].secrets["prod/written"]
    for version in secret.versions.values():
        version["createdate"] = stamped.timestamp()
    ssm.put_parameter(Name="/app/prod/written", Value="hers", Type="SecureString")
    backdate_parameter("/app/prod/written", stamped)
    world.ids["param"] = ssm.get_parameter(Name="/app/prod/written")["Parameter"]["ARN"]
    world.log(
        ACTED_AT,
        [
            record(
                "PutSecretValue",
                SECRETS,
                ACTED_AT,
                ALICE,
                {"secretId": "prod/written", "clientRequestToken": "t-9"},
                {"arn": world.ids["secret"], "versionId": "t-9", "versionStages": ["AWSCURRENT"]},
                event_id="ev-put-secret",
            ),
            record(
                "PutParameter",
                SSM,
                ACTED_AT,
                ALICE,
                {"name": "/app/prod/written", "type": "SecureString", "overwrite": True},
                {"version": 1, "tier": "Standard"},
                event_id="ev-put-param",
            ),
        ],
    )
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    found = {k[2]: [a.event_id for a in f.exposure] for k, f in world.open_findings().items()}
    assert found == {world.ids["secret"]: ["ev-put-secret"], world.ids["param"]: ["ev-put-param"]}


def test_a_parameters_history_read_with_decryption_is_a_read_of_its_values(world: World) -> None:
    """``GetParameterHistory`` with decryption returns every version's value (up to the last
    100): the leaver read the parameter as surely as with ``GetParameter``. Without decryption it
    returns ciphertext only."""
    ssm = world.client("ssm")
    for name in ("/app/prod/history", "/app/prod/history-ciphertext"):
        ssm.put_parameter(Name=name, Value="v", Type="SecureString")
        backdate_parameter(name, LONG_AGO)
        world.ids[name] = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    world.log(
        ACTED_AT,
        [
            record(
                "GetParameterHistory",
                SSM,
                ACTED_AT,
                ALICE,
                {"name": "/app/prod/history", "withDecryption": True},
                event_id="ev-history",
            ),
            record(
                "GetParameterHistory",
                SSM,
                ACTED_AT,
                ALICE,
                {"name": "/app/prod/history-ciphertext", "withDecryption": False},
                event_id="ev-history-ciphertext",
            ),
        ],
    )
    world.run()
    found = {k[2]: [(a.how, a.event_id) for a in f.exposure] for k, f in world.open_findings().items()}
    assert found == {world.ids["/app/prod/history"]: [(ExposureHow.READ, "ev-history")]}


# --- KMS grants a leaver made to another account ------------------------------------------------


def test_a_kms_grant_the_leaver_made_to_another_account_exposes_the_key_while_it_is_live(
    world: World,
) -> None:
    """A grant lets its grantee use the key from its own account (sign, decrypt) with no key
    policy change: one the leaver made to another account keeps the key working for whoever holds
    that account, whatever becomes of her. A grant to a role of the key's own account is no such
    door. Revoking the grant resolves it."""
    kms = world.client("kms")
    key = kms.create_key(Description="token signer", KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")[
        "KeyMetadata"
    ]
    app = kms.create_key(Description="app data key")["KeyMetadata"]
    outside = f"arn:aws:iam::{OUTSIDE}:root"
    inside = f"arn:aws:iam::{MOTO_ACCOUNT}:role/app"
    grant = kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=outside, Operations=["Sign"])
    kms.create_grant(KeyId=app["KeyId"], GranteePrincipal=inside, Operations=["Decrypt"])

    def create_grant(key_id: str, grantee: str, grant_id: str, event_id: str) -> dict[str, Any]:
        request = {"keyId": key_id, "granteePrincipal": grantee, "operations": ["Sign"]}
        return record("CreateGrant", KMS, ACTED_AT, ALICE, request, {"grantId": grant_id}, event_id=event_id)

    world.log(
        ACTED_AT,
        [
            create_grant(key["KeyId"], outside, grant["GrantId"], "ev-grant-outside"),
            create_grant(app["KeyId"], inside, "g-inside", "ev-grant-inside"),
        ],
    )
    world.run()
    found = world.open_findings()
    assert set(found) == {("secret-exposed-to-leaver", "E1", key["Arn"])}
    f = found[("secret-exposed-to-leaver", "E1", key["Arn"])]
    assert f.severity.value == "high" and outside in f.reason
    assert [(a.how, a.event_id) for a in f.exposure] == [(ExposureHow.CHANGED_ACCESS, "ev-grant-outside")]
    kms.revoke_grant(KeyId=key["KeyId"], GrantId=grant["GrantId"])
    world.run()
    assert world.stored()[("secret-exposed-to-leaver", "E1", key["Arn"])].status is FindingStatus.RESOLVED


# --- KMS key policies a leaver opened to another account ----------------------------------------


def key_policy(*outside: str) -> str:
    """A key policy: the key's own account administers it (AWS's default statement), and each
    principal of ``outside`` may sign and decrypt with it."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if outside:
        statements.append(
            {
                "Sid": "Partner use",
                "Effect": "Allow",
                "Principal": {"AWS": list(outside)},
                "Action": ["kms:Sign", "kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Id": "key-consolepolicy-3", "Statement": statements})


def test_a_key_policy_the_leaver_opened_to_another_account_exposes_the_key_while_it_still_does(
    world: World,
) -> None:
    """A key policy that lets a principal of another account use the key works from there like a
    grant, and outlives any rotation. A policy the leaver set (PutKeyPolicy, or CreateKey with a
    policy) that the policy in force (GetKeyPolicy) still agrees with is a door she left open; a
    policy she set for the key's own account only, or one replaced since by a policy without the
    outside account, is none. Putting the account-only policy back resolves it."""
    kms = world.client("kms")
    signer = kms.create_key(Description="token signer", KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")[
        "KeyMetadata"
    ]
    own = kms.create_key(Description="app data key")["KeyMetadata"]
    closed = kms.create_key(Description="closed since")["KeyMetadata"]
    partner = f"arn:aws:iam::{OUTSIDE}:role/partner-signer"
    other = "123456789099"
    made = kms.create_key(Description="made open", Policy=key_policy(other))["KeyMetadata"]
    for key, policy in ((signer, key_policy(partner)), (own, key_policy()), (closed, key_policy(partner))):
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy)
    # An administrator closed that one again since.
    kms.put_key_policy(KeyId=closed["KeyId"], PolicyName="default", Policy=key_policy())

    def put_policy(key_id: str, policy: str, event_id: str) -> dict[str, Any]:
        request = {"keyId": key_id, "policyName": "default", "policy": policy}
        return record("PutKeyPolicy", KMS, ACTED_AT, ALICE, request, event_id=event_id)

    world.log(
        ACTED_AT,
        [
            put_policy(signer["KeyId"], key_policy(partner), "ev-policy-outside"),
            put_policy(own["KeyId"], key_policy(), "ev-policy-own"),
            put_policy(closed["KeyId"], key_policy(partner), "ev-policy-closed"),
            record(
                "CreateKey",
                KMS,
                ACTED_AT,
                ALICE,
                {"description": "made open", "policy": key_policy(other)},
                {"keyMetadata": {"keyId": made["KeyId"], "arn": made["Arn"]}},
                event_id="ev-create-open",
            ),
        ],
    )
    result = world.run()
    assert result.status.value == "done", [(s.name, s.error, s.failed_scopes) for s in result.sources]
    found = world.open_findings()
    assert set(found) == {
        ("secret-exposed-to-leaver", "E1", signer["Arn"]),
        ("secret-exposed-to-leaver", "E1", made["Arn"]),
    }
    f = found[("secret-exposed-to-leaver", "E1", signer["Arn"])]
    assert f.severity.value == "high" and f"account {OUTSIDE}" in f.reason
    assert [(a.how, a.event_id) for a in f.exposure] == [(ExposureHow.CHANGED_ACCESS, "ev-policy-outside")]
    g = found[("secret-exposed-to-leaver", "E1", made["Arn"])]
    assert f"account {other}" in g.reason
    assert [(a.how, a.event_id) for a in g.exposure] == [
        (ExposureHow.CREATED, "ev-create-open#0"),
        (ExposureHow.CHANGED_ACCESS, "ev-create-open#1"),
    ]
    assert world.count("kms", "GetKeyPolicy") == 4

    kms.put_key_policy(KeyId=signer["KeyId"], PolicyName="default", Policy=key_policy())
    world.run()
    stored = world.stored()
    assert stored[("secret-exposed-to-leaver", "E1", signer["Arn"])].status is FindingStatus.RESOLVED
    assert stored[("secret-exposed-to-leaver", "E1", made["Arn"])].status is FindingStatus.OPEN
