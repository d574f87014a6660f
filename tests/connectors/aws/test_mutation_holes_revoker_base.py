"""What every aws_iam action goes through (``AwsIamRevoker`` and ``IamAction``): the refusals
before any call and their exact wording, the account whose client is used, the IAM call a
failure is blamed on (read, change, restore, GetUser), the refusal to undo a vanished object and
the revoker's default clock. Moto in process; failures injected with botocore ``before-call``
hooks raising the ``ClientError`` IAM would send. Written for the mutation survivors of
``connectors/aws_iam/revoker.py`` and ``actions.py`` (see docs/mutation-survivors.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from connectors.aws_iam import PLUGIN, AwsClients
from connectors.aws_iam.revoker import (
    DEACTIVATE_ACCESS_KEY,
    DELETE_LOGIN_PROFILE,
    DENY_ISSUED_SESSIONS,
    REMOVE_GROUP_MEMBERSHIP,
    AwsIamRevoker,
)
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step
from tests.support.aws import MOTO_ACCOUNT, action_target

SOURCE = "aws-mg"
OTHER_ACCOUNT = "210987654321"


@pytest.fixture
def session() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def make_revoker(clients: Any, **options: Any) -> AwsIamRevoker:
    table = {"name": SOURCE, "type": "aws_iam", **options}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={SOURCE: clients}))
    assert isinstance(made, AwsIamRevoker)
    return made


def target(
    user: str,
    credential_id: str,
    kind: CredentialKind,
    uid: str,
    *,
    detail: str = "",
    scope: str = MOTO_ACCOUNT,
) -> ActionTarget:
    return action_target(user, credential_id, kind, uid, detail=detail, scope=scope, source=SOURCE)


def record_calls(events: Any) -> list[str]:
    calls: list[str] = []
    events.register("before-call.iam.*", lambda model, **_: calls.append(model.name))
    return calls


def deny(events: Any, operation: str) -> None:
    """Make every ``operation`` call fail with the AccessDenied IAM would answer."""

    response: Any = {
        "Error": {"Code": "AccessDenied", "Message": "not authorized"},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }

    def refuse(model: Any, **_: Any) -> None:
        if model.name == operation:
            raise ClientError(response, operation)

    events.register("before-call.iam.*", refuse)


def failure(api: str, user: str) -> str:
    """The RevokeError message of an IAM call that was denied (written out independently)."""
    return f"iam:{api} for IAM user {user!r} in account {MOTO_ACCOUNT} failed: AccessDenied: not authorized, HTTP 403"


def bob_with_a_key(iam: Any) -> tuple[str, str]:
    uid = iam.create_user(UserName="bob")["User"]["UserId"]
    key = iam.create_access_key(UserName="bob")["AccessKey"]["AccessKeyId"]
    return uid, key


def carol_in_developers(iam: Any) -> str:
    uid = iam.create_user(UserName="carol")["User"]["UserId"]
    iam.create_group(GroupName="developers")
    iam.add_user_to_group(UserName="carol", GroupName="developers")
    return str(uid)


def carol_group_target(uid: str) -> ActionTarget:
    return target("carol", "group/developers", CredentialKind.GROUP_MEMBERSHIP, uid, detail="developers")


# --- refusals before any call: which targets, and their exact wording ----------------------------


def test_a_credential_id_that_is_a_root_arn_in_any_case_is_refused_as_root_before_any_call(
    session: boto3.session.Session,
) -> None:
    rv = make_revoker(session)
    calls = record_calls(session.events)
    for credential_id in (f"arn:aws:iam::{MOTO_ACCOUNT}:root", f"arn:aws:iam::{MOTO_ACCOUNT}:Root"):
        # Only the credential id says root: the user name and the account ARN look ordinary.
        t = target("someone", credential_id, CredentialKind.PASSWORD, "AIDASOMEONE")
        with pytest.raises(RevokeError) as refused:
            rv.specs[DELETE_LOGIN_PROFILE].read(t)
        assert str(refused.value) == "refusing to touch the AWS root user"
    assert calls == []


def test_the_root_refusal_the_operator_sees_is_worded_exactly(session: boto3.session.Session) -> None:
    rv = make_revoker(session)
    root = ActionTarget(
        source=SOURCE,
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:root",
        username="<root_account>",
        credential_id="login-profile",
        credential_kind=CredentialKind.PASSWORD,
        scope=MOTO_ACCOUNT,
        account_uid="AIDAROOT",
    )
    step = apply_step(rv, DELETE_LOGIN_PROFILE, root)
    assert step.status == "failed"
    assert step.error == "could not read the state before acting: refusing to touch the AWS root user"


def test_a_credential_report_slot_is_refused_with_the_exact_explanation(
    session: boto3.session.Session,
) -> None:
    rv = make_revoker(session)
    calls = record_calls(session.events)
    t = target("bob", "report/access_key_1", CredentialKind.ACCESS_KEY, "AIDABOB")
    with pytest.raises(RevokeError) as refused:
        rv.specs[DEACTIVATE_ACCESS_KEY].change(t, ResourceState(exists=True, active=True, identity="AIDABOB"))
    assert str(refused.value) == (
        "report/access_key_1 is a credential-report slot, not an id: the detail pass must "
        "read the real id before it can be revoked"
    )
    assert calls == []


# --- the account whose IAM client is used --------------------------------------------------------


def test_a_scoped_target_uses_its_accounts_client_and_an_unscoped_one_the_home_accounts(
    session: boto3.session.Session,
) -> None:
    iam = session.client("iam")
    uid, key = bob_with_a_key(iam)
    # A second client (same moto backend) standing for the other account's assumed-role client.
    other = session.client("iam")
    other_calls = record_calls(other.meta.events)
    rv = make_revoker(AwsClients(session=session, iam_by_account={OTHER_ACCOUNT: other}))

    scoped = rv.specs[DEACTIVATE_ACCESS_KEY].read(
        target("bob", key, CredentialKind.ACCESS_KEY, uid, scope=OTHER_ACCOUNT)
    )
    assert (scoped.exists, scoped.active, scoped.identity) == (True, True, uid)
    assert other_calls == ["GetUser", "ListAccessKeys"]

    other_calls.clear()
    # No scope: the home account (sts:GetCallerIdentity), whose client is the session's.
    unscoped = rv.specs[DEACTIVATE_ACCESS_KEY].read(
        target("bob", key, CredentialKind.ACCESS_KEY, uid, scope="")
    )
    assert (unscoped.exists, unscoped.active, unscoped.identity) == (True, True, uid)
    assert other_calls == []


# --- the IAM call a failure is blamed on ---------------------------------------------------------


def test_a_failed_get_user_is_reported_as_iam_get_user_for_the_user_and_account(
    session: boto3.session.Session,
) -> None:
    iam = session.client("iam")
    uid, key = bob_with_a_key(iam)
    rv = make_revoker(session)
    deny(session.events, "GetUser")
    t = target("bob", key, CredentialKind.ACCESS_KEY, uid)
    with pytest.raises(RevokeError) as read_failed:
        rv.specs[DEACTIVATE_ACCESS_KEY].read(t)
    assert str(read_failed.value) == failure("GetUser", "bob")
    # The identity re-check right before a write is the same call, blamed the same way.
    with pytest.raises(RevokeError) as check_failed:
        rv.specs[DEACTIVATE_ACCESS_KEY].change(t, ResourceState(exists=True, active=True, identity=uid))
    assert str(check_failed.value) == failure("GetUser", "bob")
    assert iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["Status"] == "Active"


def test_a_failed_object_read_is_blamed_on_the_actions_read_call(session: boto3.session.Session) -> None:
    iam = session.client("iam")
    uid, key = bob_with_a_key(iam)
    carol = carol_in_developers(iam)
    rv = make_revoker(session)
    deny(session.events, "ListAccessKeys")
    deny(session.events, "ListGroupsForUser")
    with pytest.raises(RevokeError) as key_read:
        rv.specs[DEACTIVATE_ACCESS_KEY].read(target("bob", key, CredentialKind.ACCESS_KEY, uid))
    assert str(key_read.value) == failure("ListAccessKeys", "bob")
    with pytest.raises(RevokeError) as group_read:
        rv.specs[REMOVE_GROUP_MEMBERSHIP].read(carol_group_target(carol))
    assert str(group_read.value) == failure("ListGroupsForUser", "carol")


def test_a_failed_change_is_blamed_on_the_actions_write_call_not_its_restore_call(
    session: boto3.session.Session,
) -> None:
    iam = session.client("iam")
    uid, key = bob_with_a_key(iam)
    carol = carol_in_developers(iam)
    rv = make_revoker(session)
    deny(session.events, "RemoveUserFromGroup")
    deny(session.events, "UpdateAccessKey")
    t = carol_group_target(carol)
    with pytest.raises(RevokeError) as group_change:
        rv.specs[REMOVE_GROUP_MEMBERSHIP].change(t, ResourceState(exists=True, active=True, identity=carol))
    assert str(group_change.value) == failure("RemoveUserFromGroup", "carol")
    with pytest.raises(RevokeError) as key_change:
        rv.specs[DEACTIVATE_ACCESS_KEY].change(
            target("bob", key, CredentialKind.ACCESS_KEY, uid),
            ResourceState(exists=True, active=True, identity=uid),
        )
    assert str(key_change.value) == failure("UpdateAccessKey", "bob")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="carol")["Groups"]] == ["developers"]


def test_a_failed_restore_is_blamed_on_the_actions_restore_call_not_its_write_call(
    session: boto3.session.Session,
) -> None:
    iam = session.client("iam")
    carol = carol_in_developers(iam)
    # Hooks on the session reach the clients made after them: deny before the revoker's first
    # call (the apply makes neither of the restore calls).
    deny(session.events, "AddUserToGroup")
    deny(session.events, "DeleteUserPolicy")
    rv = make_revoker(session)
    t = carol_group_target(carol)
    removed = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert removed.status == "applied" and removed.before
    policy = apply_step(rv, DENY_ISSUED_SESSIONS, target("carol", "sessions", CredentialKind.ACCOUNT, carol))
    assert policy.status == "applied" and policy.before

    group_restore = rv.specs[REMOVE_GROUP_MEMBERSHIP].restore
    assert group_restore is not None
    with pytest.raises(RevokeError) as group_failed:
        group_restore(t, ResourceState(exists=False, active=False, identity=carol), removed.before)
    assert str(group_failed.value) == failure("AddUserToGroup", "carol")

    policy_restore = rv.specs[DENY_ISSUED_SESSIONS].restore
    assert policy_restore is not None
    with pytest.raises(RevokeError) as policy_failed:
        policy_restore(
            target("carol", "sessions", CredentialKind.ACCOUNT, carol),
            ResourceState(exists=True, active=False, identity=carol),
            policy.before,
        )
    assert str(policy_failed.value) == failure("DeleteUserPolicy", "carol")
    # The undo the operator runs shows the same blame.
    undone = undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, removed.before)
    assert undone.status == "failed" and failure("AddUserToGroup", "carol") in (undone.error or ""), undone


# --- undo of an object that is gone --------------------------------------------------------------


def test_undo_of_a_deactivated_key_that_was_deleted_since_says_it_cannot_and_calls_nothing(
    session: boto3.session.Session,
) -> None:
    iam = session.client("iam")
    uid, key = bob_with_a_key(iam)
    rv = make_revoker(session)
    t = target("bob", key, CredentialKind.ACCESS_KEY, uid)
    calls = record_calls(session.events)
    done = apply_step(rv, DEACTIVATE_ACCESS_KEY, t)
    assert done.status == "applied" and done.before
    iam.delete_access_key(UserName="bob", AccessKeyId=key)
    calls.clear()
    restore = rv.specs[DEACTIVATE_ACCESS_KEY].restore
    assert restore is not None
    with pytest.raises(RevokeError) as refused:
        restore(t, ResourceState(exists=False, active=False, identity=uid), done.before)
    assert str(refused.value) == f"cannot undo deactivate_access_key: {key} no longer exists"
    assert calls == []
    undone = undo_step(rv, DEACTIVATE_ACCESS_KEY, t, done.before)
    assert undone.status == "failed"
    assert f"cannot undo deactivate_access_key: {key} no longer exists" in (undone.error or ""), undone


# --- the default clock -----------------------------------------------------------------------------


def test_the_revokers_default_clock_is_timezone_aware_utc(session: boto3.session.Session) -> None:
    # A naive local time would be converted back to UTC through the local zone: ambiguous in a
    # DST fall-back hour, so the deny policy's TokenIssueTime could be an hour early.
    rv = make_revoker(session)
    before = datetime.now(UTC)
    now = rv.now()
    after = datetime.now(UTC)
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert before <= now <= after


@pytest.mark.parametrize("name", ["delete_login_profile", "deactivate_mfa_device"])
def test_an_irreversible_action_asked_to_restore_all_the_same_refuses_naming_itself(
    session: boto3.session.Session, name: str
) -> None:
    # The engine never asks (their `restore` is None); called anyway, they must refuse loudly.
    spec = make_revoker(AwsClients(session=session)).specs[name]
    assert spec.restore is None
    prior = ResourceState(exists=True, active=True)
    with pytest.raises(RevokeError) as caught:
        spec.unrevoke(session.client("iam"), target("bob", "x", CredentialKind.PASSWORD, "AIDAX"), prior)  # type: ignore[attr-defined]
    assert str(caught.value) == f"{name} is irreversible"
