"""A credential report row belongs to the user it was written for, not to whoever has that name now.

AWS serves the same credential report for up to four hours. A user deleted and re-created under
the same name inside that window (a leaver re-creating their own user, a name reused) still has
the old user's row in it, keyed by the same name and ARN. The row's ``user_creation_time`` is the
old user's: it must not describe the new user's console password, MFA devices or certificates,
or the detail pass skips the calls that would find them.

Against moto in process; the only fake is the report cache: the IAM client below answers
``GetCredentialReport`` with the report moto generated before the user was re-created, as AWS
would within the four hours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from connectors.aws_iam.clients import AwsClients
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.records import CredentialKind
from tests.connectors.aws.test_source_moto import make_source
from tests.support.aws import SeedUser, seed_users

NOW = datetime.now(UTC).replace(microsecond=0)


class CachedReportIAM:
    """moto's IAM client, except that ``GetCredentialReport`` answers with a report read earlier."""

    def __init__(self, client: Any, report: Mapping[str, Any]) -> None:
        self._client = client
        self._report = report

    def get_credential_report(self, **_: Any) -> Mapping[str, Any]:
        return self._report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def recreated_with_password(aws: boto3.session.Session) -> AwsIamSource:
    """``alice`` without a password when the report is generated; deleted and re-created with a
    console password afterwards. The source reads the report of before."""
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"}, created=NOW - timedelta(days=700))])
    iam = aws.client("iam")
    iam.generate_credential_report()
    report = iam.get_credential_report()
    assert b"alice,arn:aws:iam::" in report["Content"]
    iam.delete_user(UserName="alice")
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"}, has_password=True)])
    return make_source(AwsClients(iam=CachedReportIAM(iam, report), sts=aws.client("sts")))


def test_detail_pass_reads_the_login_profile_of_a_user_recreated_after_the_report(
    aws: boto3.session.Session,
) -> None:
    source = recreated_with_password(aws)
    bulk = source.collect()
    alice = next(a for a in bulk.accounts if a.username == "alice")

    detail = source.detail([alice])

    assert detail.failed_scopes == ()
    passwords = [c for c in detail.credentials if c.kind is CredentialKind.PASSWORD]
    # The re-created user can log in to the console: the old user's "no password" does not apply.
    assert [(c.credential_id, c.active) for c in passwords] == [("login-profile", True)]
    assert [a.enabled for a in detail.accounts] == [True]


def test_bulk_pass_does_not_give_a_recreated_user_the_old_users_report_row(
    aws: boto3.session.Session,
) -> None:
    data = recreated_with_password(aws).collect()

    alice = next(a for a in data.accounts if a.username == "alice")
    # Nothing is known of the new user's credentials until the detail pass: never "cannot log in".
    assert alice.enabled
    assert any("alice" in w for w in data.warnings)
