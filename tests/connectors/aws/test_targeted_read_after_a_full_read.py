"""The targeted read (HR webhook) reads the person's users as they are now, even in a process that
ran a full read before (the daemon keeps one source instance across runs).

A console password created, or a group joined, after the last full read must be in the targeted
read: it is the read the webhook revokes from, minutes after the termination. Against moto in
process, with the source instance reused as the daemon reuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from offboard_audit.core.records import CredentialKind, Person, PersonStatus
from tests.connectors.aws.test_source_moto import make_source
from tests.support.aws import SeedUser, seed_users

NOW = datetime.now(UTC).replace(microsecond=0)
ALICE = Person("E1001", "alice@example.com", "Alice", PersonStatus.TERMINATED, NOW - timedelta(hours=1))


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def test_targeted_read_finds_a_password_and_a_group_added_since_the_last_full_read(
    aws: boto3.session.Session,
) -> None:
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"}, groups=("staff",))])
    source = make_source(aws)
    full = source.collect()
    assert not any(c.kind is CredentialKind.PASSWORD for c in full.credentials)

    iam = aws.client("iam")
    iam.create_login_profile(UserName="alice", Password="Seeded-Password-1!")
    iam.create_group(GroupName="admins")
    iam.add_user_to_group(GroupName="admins", UserName="alice")

    targeted = source.collect_for(ALICE)

    assert targeted.failed_scopes == ()
    ids = {c.credential_id for c in targeted.credentials}
    assert {"login-profile", "group/staff", "group/admins"} <= ids
    assert [a.enabled for a in targeted.accounts] == [True]


def test_targeted_read_carries_the_user_id_of_a_user_recreated_since_the_last_full_read(
    aws: boto3.session.Session,
) -> None:
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"})])
    source = make_source(aws)
    old_uid = next(a.uid for a in source.collect().accounts if a.username == "alice")

    iam = aws.client("iam")
    iam.delete_user(UserName="alice")
    seed_users([SeedUser("alice", tags={"email": "alice@example.com"})])
    new_uid = iam.get_user(UserName="alice")["User"]["UserId"]
    assert new_uid != old_uid

    targeted = source.collect_for(ALICE)

    assert [a.uid for a in targeted.accounts] == [new_uid]
