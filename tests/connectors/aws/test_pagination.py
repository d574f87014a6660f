"""Every list call follows IsTruncated/Marker (or NextToken) to the last page.

moto never truncates IAM lists, so the pages are served by botocore's Stubber on real clients;
the Stubber also checks that each follow-up request carries the previous page's marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.settings import parse_settings
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.records import CredentialKind

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:iam::111122223333:user/{}"
CALLER = {
    "Account": "111122223333",
    "Arn": "arn:aws:iam::111122223333:user/auditor",
    "UserId": "AIDAAUDITOR000000000",
}
HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,"
    "cert_2_active,cert_2_last_rotated\n"
)


def client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def user(name: str) -> dict[str, Any]:
    return {
        "Path": "/",
        "UserName": name,
        "UserId": f"AIDA{name.upper():0<16}",
        "Arn": ARN.format(name),
        "CreateDate": T0,
    }


def report_row(name: str) -> str:
    # MFA and a certificate present, so the detail pass must list both.
    return (
        f"{name},{ARN.format(name)},2026-01-01T00:00:00+00:00,false,N/A,N/A,N/A,true,true,"
        "2026-01-01T00:00:00+00:00,N/A,N/A,N/A,true,2026-01-02T00:00:00+00:00,N/A,N/A,N/A,true,N/A,false,N/A\n"
    )


@pytest.fixture
def stubbed() -> Iterator[tuple[AwsIamSource, Stubber, Stubber]]:
    iam, sts = client("iam"), client("sts")
    settings = parse_settings(SourceOptions({"name": "aws-pages", "type": "aws_iam"}))
    source = AwsIamSource(settings, ClientProvider(settings, AwsClients(iam=iam, sts=sts)))
    with Stubber(iam) as iam_stub, Stubber(sts) as sts_stub:
        yield source, iam_stub, sts_stub
        iam_stub.assert_no_pending_responses()


def two_pages(
    stub: Stubber, method: str, key: str, first: list[Any], second: list[Any], **params: Any
) -> None:
    stub.add_response(method, {key: first, "IsTruncated": True, "Marker": "m1"}, params)
    stub.add_response(method, {key: second, "IsTruncated": False}, {**params, "Marker": "m1"})


def test_bulk_pass_reads_every_page_of_authorization_details(
    stubbed: tuple[AwsIamSource, Stubber, Stubber],
) -> None:
    source, iam, sts = stubbed
    sts.add_response("get_caller_identity", CALLER)
    iam.add_response("generate_credential_report", {"State": "COMPLETE"})
    iam.add_response(
        "get_credential_report",
        {"Content": (HEADER + report_row("a") + report_row("b")).encode(), "GeneratedTime": T0},
    )
    two_pages(
        iam, "get_account_authorization_details", "UserDetailList", [user("a")], [user("b")], Filter=["User"]
    )
    data = source.collect()
    assert sorted(a.username for a in data.accounts) == ["a", "b"]


def test_detail_pass_reads_every_page_of_every_per_user_list(
    stubbed: tuple[AwsIamSource, Stubber, Stubber],
) -> None:
    source, iam, sts = stubbed
    sts.add_response("get_caller_identity", CALLER)
    iam.add_response("generate_credential_report", {"State": "COMPLETE"})
    iam.add_response(
        "get_credential_report", {"Content": (HEADER + report_row("a")).encode(), "GeneratedTime": T0}
    )
    iam.add_response(
        "get_account_authorization_details", {"UserDetailList": [user("a")], "IsTruncated": False}
    )
    account = source.collect().accounts[0]

    def key(n: int) -> dict[str, Any]:
        return {"UserName": "a", "AccessKeyId": f"AKIAPAGE{n:012d}", "Status": "Active", "CreateDate": T0}

    two_pages(iam, "list_access_keys", "AccessKeyMetadata", [key(1)], [key(2)], UserName="a")
    iam.add_response(
        "get_access_key_last_used",
        {
            "UserName": "a",
            "AccessKeyLastUsed": {"LastUsedDate": T0, "ServiceName": "s3", "Region": "us-east-1"},
        },
        {"AccessKeyId": key(1)["AccessKeyId"]},
    )
    iam.add_response(
        "get_access_key_last_used",
        {"UserName": "a", "AccessKeyLastUsed": {"ServiceName": "N/A", "Region": "N/A"}},
        {"AccessKeyId": key(2)["AccessKeyId"]},
    )
    ssh = {"UserName": "a", "Status": "Active", "UploadDate": T0}
    two_pages(
        iam,
        "list_ssh_public_keys",
        "SSHPublicKeys",
        [{**ssh, "SSHPublicKeyId": "APKA00000000000000001"}],
        [{**ssh, "SSHPublicKeyId": "APKA00000000000000002"}],
        UserName="a",
    )
    svc = {
        "UserName": "a",
        "Status": "Active",
        "CreateDate": T0,
        "ServiceName": "codecommit.amazonaws.com",
        "ServiceUserName": "a-at-111122223333",
    }
    two_pages(
        iam,
        "list_service_specific_credentials",
        "ServiceSpecificCredentials",
        [{**svc, "ServiceSpecificCredentialId": "ACCA000000000000000001"}],
        [{**svc, "ServiceSpecificCredentialId": "ACCA000000000000000002"}],
        UserName="a",
    )
    cert = {
        "UserName": "a",
        "CertificateBody": "-----BEGIN CERTIFICATE-----",
        "Status": "Active",
        "UploadDate": T0,
    }
    two_pages(
        iam,
        "list_signing_certificates",
        "Certificates",
        [{**cert, "CertificateId": "C" * 24}],
        [{**cert, "CertificateId": "D" * 24}],
        UserName="a",
    )
    mfa = {"UserName": "a", "EnableDate": T0}
    two_pages(
        iam,
        "list_mfa_devices",
        "MFADevices",
        [{**mfa, "SerialNumber": "arn:aws:iam::111122223333:mfa/one"}],
        [{**mfa, "SerialNumber": "arn:aws:iam::111122223333:mfa/two"}],
        UserName="a",
    )
    detail = source.detail([account])
    assert detail.failed_scopes == ()
    by_kind: dict[CredentialKind, int] = {}
    for c in detail.credentials:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + 1
    assert by_kind == {
        CredentialKind.ACCESS_KEY: 2,
        CredentialKind.SSH_KEY: 2,
        CredentialKind.SERVICE_CREDENTIAL: 2,
        CredentialKind.SIGNING_CERTIFICATE: 2,
        CredentialKind.MFA_DEVICE: 2,
    }
    used = {
        c.credential_id: c.last_used_at for c in detail.credentials if c.kind is CredentialKind.ACCESS_KEY
    }
    assert used == {key(1)["AccessKeyId"]: T0, key(2)["AccessKeyId"]: None}


def test_organization_accounts_are_read_across_next_token_pages() -> None:
    org = client("organizations")
    settings = parse_settings(
        SourceOptions(
            {
                "name": "aws-org",
                "type": "aws_iam",
                "organization": True,
                "assume_role": "arn:aws:iam::{account}:role/R",
            }
        )
    )
    source = AwsIamSource(settings, ClientProvider(settings, AwsClients(organizations=org)))

    def account(n: str, state: str = "ACTIVE") -> dict[str, Any]:
        return {"Id": n, "Arn": f"arn:aws:organizations::1:account/o-x/{n}", "Name": n, "Status": state}

    with Stubber(org) as stub:
        stub.add_response("list_accounts", {"Accounts": [account("111111111111")], "NextToken": "t1"}, {})
        stub.add_response(
            "list_accounts",
            {"Accounts": [account("222222222222"), account("333333333333", "SUSPENDED")]},
            {"NextToken": "t1"},
        )
        assert source.scopes() == ["111111111111", "222222222222"]
        stub.assert_no_pending_responses()


def test_truncated_page_without_marker_is_an_error_not_a_short_list(
    stubbed: tuple[AwsIamSource, Stubber, Stubber],
) -> None:
    source, iam, sts = stubbed
    sts.add_response("get_caller_identity", CALLER)
    iam.add_response("generate_credential_report", {"State": "COMPLETE"})
    iam.add_response(
        "get_credential_report", {"Content": (HEADER + report_row("a")).encode(), "GeneratedTime": T0}
    )
    iam.add_response(
        "get_account_authorization_details",
        {"UserDetailList": [user("a")], "IsTruncated": True},
        {"Filter": ["User"]},
    )
    with pytest.raises(SourceError, match="Marker"):
        source.collect()
