"""Identity: every aws_iam read carries the user's UserId; the revoker never acts on another user
that reuses a name (moto in process, the engine's steps, calls counted with botocore event hooks)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.revoker import (
    DEACTIVATE_ACCESS_KEY,
    DELETE_LOGIN_PROFILE,
    REMOVE_GROUP_MEMBERSHIP,
    AwsIamRevoker,
)
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import TargetChanged
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.aws import MOTO_ACCOUNT, SeedUser, iam_backend, seed_users

NOW = datetime.now(UTC).replace(microsecond=0)
# Calls that only read. Anything else the revoker sends is a change.
READS = frozenset(
    {
        "GetUser",
        "ListAccessKeys",
        "GetLoginProfile",
        "ListGroupsForUser",
        "ListSSHPublicKeys",
        "GetUserPolicy",
    }
)


@pytest.fixture
def session() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def make_revoker(session: boto3.session.Session, **options: Any) -> AwsIamRevoker:
    table = {"name": "aws-id", "type": "aws_iam", **options}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-id": session}))
    assert isinstance(made, AwsIamRevoker)
    return made


def make_source(session: boto3.session.Session) -> AwsIamSource:
    table = {"name": "aws-id", "type": "aws_iam", "service_specific_credentials": False}
    made = PLUGIN.make_source(SourceOptions(table), SourceContext(Path("."), clients={"aws-id": session}))
    assert isinstance(made, AwsIamSource)
    return made


def record_calls(session: boto3.session.Session) -> list[str]:
    calls: list[str] = []
    session.events.register("before-call.iam.*", lambda model, **_: calls.append(model.name))
    return calls


def jdoe_target(credential_id: str, kind: CredentialKind, uid: str, detail: str = "") -> ActionTarget:
    return ActionTarget(
        source="aws-id",
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:user/jdoe",
        username="jdoe",
        credential_id=credential_id,
        credential_kind=kind,
        detail=detail,
        scope=MOTO_ACCOUNT,
        account_uid=uid,
    )


def reuse_the_name(iam: Any) -> tuple[str, str]:
    """Delete jdoe (keys, login profile, groups, user); create a new hire jdoe with a login
    profile, a key and the same group. Returns the new UserId and key id."""
    for key in iam.list_access_keys(UserName="jdoe")["AccessKeyMetadata"]:
        iam.delete_access_key(UserName="jdoe", AccessKeyId=key["AccessKeyId"])
    iam.delete_login_profile(UserName="jdoe")
    for group in iam.list_groups_for_user(UserName="jdoe")["Groups"]:
        iam.remove_user_from_group(UserName="jdoe", GroupName=group["GroupName"])
    iam.delete_user(UserName="jdoe")
    new_uid = iam.create_user(UserName="jdoe")["User"]["UserId"]
    iam.create_login_profile(UserName="jdoe", Password="New-Hire-Password-1!")
    key_id = iam.create_access_key(UserName="jdoe")["AccessKey"]["AccessKeyId"]
    iam.add_user_to_group(UserName="jdoe", GroupName="developers")
    return new_uid, key_id


def test_apply_and_undo_are_target_changed_without_any_change_call_when_the_name_was_reused(
    session: boto3.session.Session,
) -> None:
    backend = seed_users([SeedUser("jdoe", has_password=True, groups=("developers",))])
    old_uid = str(backend.users["jdoe"].id)
    iam = session.client("iam")
    new_uid, new_key = reuse_the_name(iam)
    rv = make_revoker(session)
    calls = record_calls(session)
    targets = {
        # The new hire's key id is what a plan made after some later audit could name: it is
        # still refused, because the identity is the old one.
        DEACTIVATE_ACCESS_KEY: jdoe_target(new_key, CredentialKind.ACCESS_KEY, old_uid),
        DELETE_LOGIN_PROFILE: jdoe_target("login-profile", CredentialKind.PASSWORD, old_uid),
        REMOVE_GROUP_MEMBERSHIP: jdoe_target(
            "group/developers", CredentialKind.GROUP_MEMBERSHIP, old_uid, "developers"
        ),
    }
    for action, t in targets.items():
        applied = apply_step(rv, action, t)
        assert applied.status == "target-changed" and new_uid in (applied.error or ""), applied
        prior = read_state(rv, action, jdoe_target(t.credential_id, t.credential_kind, new_uid, t.detail))
        undone = undo_step(rv, action, t, prior)
        assert undone.status == "target-changed" or "irreversible" in (undone.error or ""), undone
        # The spec's own re-check right before a write refuses too (IAM has no conditional writes).
        with pytest.raises(TargetChanged, match=new_uid):
            rv.specs[action].change(t, ResourceState(exists=True, active=True, identity=t.account_uid))
    assert calls and set(calls) <= READS, calls
    # The new hire still has everything.
    assert iam.get_login_profile(UserName="jdoe")["LoginProfile"]["UserName"] == "jdoe"
    assert [
        (k["AccessKeyId"], k["Status"]) for k in iam.list_access_keys(UserName="jdoe")["AccessKeyMetadata"]
    ] == [(new_key, "Active")]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="jdoe")["Groups"]] == ["developers"]


def test_undo_of_a_group_removal_refuses_when_the_user_was_recreated_without_the_group(
    session: boto3.session.Session,
) -> None:
    backend = seed_users([SeedUser("jdoe", has_password=True, groups=("developers",))])
    t = jdoe_target(
        "group/developers", CredentialKind.GROUP_MEMBERSHIP, str(backend.users["jdoe"].id), "developers"
    )
    rv = make_revoker(session)
    done = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert done.status == "applied" and done.before
    iam = session.client("iam")
    iam.delete_login_profile(UserName="jdoe")
    iam.delete_user(UserName="jdoe")
    iam.create_user(UserName="jdoe")
    assert undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, done.before).status == "target-changed"
    with pytest.raises(TargetChanged):
        restore = rv.specs[REMOVE_GROUP_MEMBERSHIP].restore
        assert restore is not None
        restore(t, ResourceState(exists=False, active=False, identity=t.account_uid), done.before)
    assert iam.list_groups_for_user(UserName="jdoe")["Groups"] == []


def test_read_state_carries_the_user_id_and_none_once_the_user_is_gone(
    session: boto3.session.Session,
) -> None:
    backend = seed_users([SeedUser("jdoe", has_password=True)])
    uid = str(backend.users["jdoe"].id)
    rv = make_revoker(session)
    calls = record_calls(session)
    t = jdoe_target("login-profile", CredentialKind.PASSWORD, uid)
    state = read_state(rv, DELETE_LOGIN_PROFILE, t)
    assert state.exists and state.identity == uid
    # One GetUser per read, then the object itself.
    assert calls == ["GetUser", "GetLoginProfile"]
    iam = session.client("iam")
    iam.delete_login_profile(UserName="jdoe")
    iam.delete_user(UserName="jdoe")
    calls.clear()
    gone = read_state(rv, DELETE_LOGIN_PROFILE, t)
    assert (gone.exists, gone.active, gone.identity) == (False, False, None)
    assert calls == ["GetUser"]
    step = apply_step(rv, DELETE_LOGIN_PROFILE, t)
    assert step.status == "target-changed" and "no longer exists" in (step.error or "")


def test_an_applied_action_reads_the_key_once_before_and_once_after_and_the_user_before_the_write(
    session: boto3.session.Session,
) -> None:
    backend = seed_users([SeedUser("jdoe", keys=[(NOW - timedelta(days=3), None)])])
    user = backend.users["jdoe"]
    rv = make_revoker(session)
    calls = record_calls(session)
    t = jdoe_target(user.access_keys[0].access_key_id, CredentialKind.ACCESS_KEY, str(user.id))
    result = apply_step(rv, DEACTIVATE_ACCESS_KEY, t)
    assert result.status == "applied" and result.before and result.after
    assert result.before.identity == result.after.identity == str(user.id)
    # The engine's read, the identity re-check right before the write, the write, the re-read
    # (the revoker used to read the key twice more itself: 4 GetUser + 4 ListAccessKeys).
    assert calls == ["GetUser", "ListAccessKeys", "GetUser", "UpdateAccessKey", "GetUser", "ListAccessKeys"]
    calls.clear()
    # Already revoked: one read, no write, no second read.
    assert apply_step(rv, DEACTIVATE_ACCESS_KEY, t).status == "noop"
    assert calls == ["GetUser", "ListAccessKeys"]


def test_every_action_declares_the_get_user_permission_it_needs_to_check_identity() -> None:
    assert all("iam:GetUser" in a.permissions for a in AwsIamRevoker.actions.values())


def test_bulk_detail_and_targeted_reads_carry_the_user_id_as_account_uid(
    session: boto3.session.Session,
) -> None:
    backend = seed_users(
        [
            SeedUser("jdoe", keys=[(NOW - timedelta(days=3), None)], has_password=True),
            SeedUser("alice", tags={"email": "alice@example.com"}),
        ]
    )
    uids = {name: str(u.id) for name, u in backend.users.items()}
    source = make_source(session)
    bulk = source.collect()
    assert {a.username: a.uid for a in bulk.accounts} == uids
    jdoe = next(a for a in bulk.accounts if a.username == "jdoe")
    detail = source.detail([jdoe])
    assert [(a.username, a.uid) for a in detail.accounts] == [("jdoe", uids["jdoe"])]
    person = Person("E1", "jdoe@example.com", "J Doe", PersonStatus.TERMINATED, NOW, aliases=("jdoe",))
    targeted = make_source(session).collect_for(person)
    assert [(a.username, a.uid) for a in targeted.accounts] == [("jdoe", uids["jdoe"])]
    # A user the bulk pass did not see (fetched with GetUser) carries its UserId too.
    iam_backend().create_user(region_name="us-east-1", user_name="late", path="/", tags=[])
    late = make_source(session).detail(
        [
            Account(
                source="aws-id",
                system="aws_iam",
                account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:user/late",
                username="late",
                enabled=True,
                scope=MOTO_ACCOUNT,
            )
        ]
    )
    assert [(a.username, a.uid) for a in late.accounts] == [("late", str(iam_backend().users["late"].id))]
