"""The aws_iam source against moto in process: detail pass, many accounts, failures, targeted reads."""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from connectors.aws_iam import PLUGIN, AwsClients
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind, Person, PersonStatus
from tests.support.aws import MOTO_ACCOUNT, SeedUser, iam_backend, seed_users

NOW = datetime.now(UTC).replace(microsecond=0)
TERMINATED = NOW - timedelta(days=40)
ROLE = "arn:aws:iam::{account}:role/OffboardAudit"


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def make_source(injected: Any, **options: Any) -> AwsIamSource:
    table = {"name": "aws-test", "type": "aws_iam", "service_specific_credentials": False, **options}
    source = PLUGIN.make_source(
        SourceOptions(table), SourceContext(Path("."), clients={"aws-test": injected})
    )
    assert isinstance(source, AwsIamSource)
    return source


def canned_error(code: str, status: int, counter: Counter[str] | None = None) -> Any:
    """A ``before-send`` handler answering every IAM request with an AWS error (no network)."""

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self._body = body

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield self._body

    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message>"
        "</Error><RequestId>injected</RequestId></ErrorResponse>"
    ).encode()

    def handler(request: Any, **_: Any) -> AWSResponse:
        if counter is not None:
            counter[code] += 1
        return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))

    return handler


def test_detail_pass_replaces_report_slots_with_real_ids_and_exact_last_use(
    aws: boto3.session.Session,
) -> None:
    used_after = TERMINATED + timedelta(days=12)
    backend = seed_users(
        [
            SeedUser(
                "bob",
                tags={"employee_id": "E1002"},
                keys=[(NOW - timedelta(days=400), used_after)],
                inactive_keys=[NOW - timedelta(days=500)],
                has_password=True,
                groups=("admins",),
            ),
            SeedUser("alice", tags={"email": "alice@example.com"}, keys=[(NOW - timedelta(days=9), None)]),
        ]
    )
    iam = aws.client("iam")
    iam.upload_ssh_public_key(UserName="bob", SSHPublicKeyBody="ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob@x")
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-mfa")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )
    source = make_source(aws)
    bulk = source.collect()
    bob = next(a for a in bulk.accounts if a.username == "bob")
    assert {c.credential_id for c in bulk.credentials if c.account_id == bob.account_id} == {
        "report/access_key_1",
        "report/access_key_2",
        "report/mfa",
        "login-profile",
        "group/admins",
    }

    detail = source.detail([bob])
    assert detail.failed_scopes == ()
    creds = {c.credential_id: c for c in detail.credentials}
    key_ids = [k.access_key_id for k in backend.users["bob"].access_keys]
    active_id, inactive_id = key_ids
    assert set(creds) == {active_id, inactive_id, serial, "login-profile", "group/admins"} | {
        k.ssh_public_key_id for k in backend.users["bob"].ssh_public_keys
    }
    assert creds[active_id].active and creds[active_id].last_used_at == used_after
    assert not creds[inactive_id].active and creds[inactive_id].last_used_at is None
    assert creds[serial].kind is CredentialKind.MFA_DEVICE
    ssh = next(c for c in detail.credentials if c.kind is CredentialKind.SSH_KEY)
    assert ssh.active and ssh.scope == MOTO_ACCOUNT
    assert [a.username for a in detail.accounts] == ["bob"]


def test_many_accounts_are_read_through_assume_role_and_one_denied_account_fails_alone(
    aws: boto3.session.Session,
) -> None:
    for account, name in (("111111111111", "one"), ("333333333333", "three")):
        seed_users([SeedUser(name, keys=[(NOW - timedelta(days=5), None)])], account_id=account)
    denied = aws.client("iam", region_name="us-east-1")
    denied.meta.events.register_first("before-send.iam", canned_error("AccessDenied", 403))
    injected = AwsClients(session=aws, iam_by_account={"222222222222": denied})
    source = make_source(
        injected, accounts=["111111111111", "222222222222", "333333333333"], assume_role=ROLE
    )
    data = source.collect()
    assert data.scopes == ("111111111111", "222222222222", "333333333333")
    assert [(f.scope, "AccessDenied" in f.error) for f in data.failed_scopes] == [("222222222222", True)]
    assert {(a.scope, a.username) for a in data.accounts} == {
        ("111111111111", "one"),
        ("333333333333", "three"),
    }
    # Each account's user lives in that account: moto keeps one backend per account id.
    assert {c.scope for c in data.credentials} == {"111111111111", "333333333333"}


def test_throttling_past_retries_fails_the_account_instead_of_reading_as_empty(
    aws: boto3.session.Session,
) -> None:
    seed_users([SeedUser("someone", keys=[(NOW - timedelta(days=5), None)])])
    per_call: Counter[str] = Counter()
    throttle = canned_error("Throttling", 400)

    def counted(request: Any, **kwargs: Any) -> AWSResponse:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        per_call[urllib.parse.parse_qs(body)["Action"][0]] += 1
        return throttle(request, **kwargs)

    aws.events.register_first("before-send.iam", counted)
    source = make_source(aws, max_attempts=2)
    with pytest.raises(SourceError, match="Throttling"):
        source.collect()
    # botocore tried each call twice, then gave up. The credential report and the user listing
    # are asked for side by side, so both were tried.
    assert per_call == {"GenerateCredentialReport": 2, "GetAccountAuthorizationDetails": 2}


def test_throttling_within_retries_is_absorbed_and_reads_everything(aws: boto3.session.Session) -> None:
    seed_users([SeedUser("someone", keys=[(NOW - timedelta(days=5), None)])])
    attempts: Counter[str] = Counter()
    throttle = canned_error("Throttling", 400, attempts)

    def first_two_throttled(request: Any, **kwargs: Any) -> AWSResponse | None:
        if attempts["Throttling"] < 2:
            return throttle(request, **kwargs)
        return None

    aws.events.register_first("before-send.iam", first_two_throttled)
    data = make_source(aws, max_attempts=4).collect()
    assert attempts["Throttling"] == 2
    assert [a.username for a in data.accounts] == ["someone"]
    assert data.failed_scopes == ()


def test_organization_lists_active_accounts_and_scans_each(aws: boto3.session.Session) -> None:
    org = aws.client("organizations")
    org.create_organization(FeatureSet="ALL")
    member = org.create_account(AccountName="member", Email="member@example.com")["CreateAccountStatus"][
        "AccountId"
    ]
    seed_users([SeedUser("in-member", keys=[(NOW - timedelta(days=5), None)])], account_id=member)
    seed_users([SeedUser("in-management", has_password=True)])
    data = make_source(aws, organization=True, assume_role=ROLE).collect()
    assert set(data.scopes) == {MOTO_ACCOUNT, member}
    assert {(a.scope, a.username) for a in data.accounts} == {
        (member, "in-member"),
        (MOTO_ACCOUNT, "in-management"),
    }


def test_unreachable_source_raises_instead_of_returning_nothing(aws: boto3.session.Session) -> None:
    aws.events.register_first("before-send.sts", canned_error("AccessDenied", 403))
    with pytest.raises(SourceError, match="AccessDenied"):
        make_source(aws).collect()


def test_service_user_path_and_name_decide_the_account_kind(aws: boto3.session.Session) -> None:
    seed_users([SeedUser("ci-bot", path="/service/"), SeedUser("named-svc"), SeedUser("person")])
    data = make_source(aws, service_users=["named-svc"]).collect()
    kinds = {a.username: a.kind.value for a in data.accounts}
    assert kinds == {"ci-bot": "service", "named-svc": "service", "person": "human"}


def test_full_detail_reads_real_key_ids_for_every_user(aws: boto3.session.Session) -> None:
    seed_users([SeedUser(f"u{i}", keys=[(NOW - timedelta(days=5), None)]) for i in range(3)])
    data = make_source(aws, full_detail=True).collect()
    keys = [c for c in data.credentials if c.kind is CredentialKind.ACCESS_KEY]
    assert len(keys) == 3 and all(c.credential_id.startswith("AKIA") for c in keys)


def test_collect_for_reads_only_the_persons_users(aws: boto3.session.Session) -> None:
    seed_users(
        [
            SeedUser("bleaver", keys=[(NOW - timedelta(days=5), TERMINATED + timedelta(days=1))]),
            SeedUser("tagged", tags={"employee_id": "E1002"}, has_password=True),
            SeedUser("bob@example.com", groups=("admins",)),
            SeedUser("alice", tags={"email": "alice@example.com"}, keys=[(NOW, None)]),
        ]
    )
    bob = Person(
        "E1002", "bob@example.com", "Bob", PersonStatus.TERMINATED, TERMINATED, aliases=("bob", "bleaver")
    )
    data = make_source(aws).collect_for(bob)
    assert {a.username for a in data.accounts} == {"bleaver", "tagged", "bob@example.com"}
    kinds = {(a.split("/")[-1], k) for a, k in ((c.account_id, c.kind.value) for c in data.credentials)}
    assert kinds == {
        ("bleaver", "access_key"),
        ("tagged", "password"),
        ("bob@example.com", "group_membership"),
    }
    key = next(c for c in data.credentials if c.kind is CredentialKind.ACCESS_KEY)
    assert key.credential_id == iam_backend().users["bleaver"].access_keys[0].access_key_id


def test_assume_role_sends_the_configured_external_id(aws: boto3.session.Session) -> None:
    seed_users([SeedUser("one", keys=[(NOW - timedelta(days=5), None)])], account_id="111111111111")
    sent: list[dict[str, Any]] = []
    aws.events.register("provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params)))
    source = make_source(aws, accounts=["111111111111"], assume_role=ROLE, external_id="tenant-42")
    data = source.collect()
    assert data.failed_scopes == ()
    assert [p.get("ExternalId") for p in sent] == ["tenant-42"]
    assert [p["RoleArn"] for p in sent] == ["arn:aws:iam::111111111111:role/OffboardAudit"]
