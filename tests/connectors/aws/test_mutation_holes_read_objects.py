"""What the aws_iam actions read before and after a change (``read_object``), exactly: the state the
engine decides on and the audit chain records (``exists``, ``active`` and the ``data`` an undo
needs), and the group an undo re-adds. Written for survivors of the mutation run at 00fab4a
(docs/mutation-survivors.md): moto in process, through the engine's steps where they show it."""

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
    DEACTIVATE_MFA_DEVICE,
    DELETE_LOGIN_PROFILE,
    REMOVE_GROUP_MEMBERSHIP,
    AwsIamRevoker,
)
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import state_from_json, state_to_json
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.aws import SeedUser, action_target, iam_backend, seed_users


@pytest.fixture
def iam() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client(
            "iam", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def revoker(iam: Any) -> AwsIamRevoker:
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(
        SourceOptions({"name": "aws-rv", "type": "aws_iam"}),
        SourceContext(Path("."), clients={"aws-rv": iam}),
    )
    assert isinstance(made, AwsIamRevoker)
    return made


def uid(user: str) -> str:
    return str(iam_backend().users[user].id)


def target(user: str, credential_id: str, kind: CredentialKind, detail: str = "") -> ActionTarget:
    return action_target(user, credential_id, kind, uid(user), detail=detail)


def groups_of(iam: Any, user: str) -> set[str]:
    return {g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]}


# --- StatusAction.read_object (access keys, SSH keys, certificates, service credentials) -------


def test_access_key_read_records_the_user_and_the_iam_status_before_and_after(iam: Any) -> None:
    backend = seed_users([SeedUser("bob", keys=[(datetime.now(UTC) - timedelta(days=3), None)])])
    key_id = backend.users["bob"].access_keys[0].access_key_id
    done = apply_step(revoker(iam), DEACTIVATE_ACCESS_KEY, target("bob", key_id, CredentialKind.ACCESS_KEY))
    assert done.status == "applied"
    assert done.before == ResourceState(
        exists=True, active=True, data=(("user", "bob"), ("status", "Active")), identity=uid("bob")
    )
    assert done.after == ResourceState(
        exists=True, active=False, data=(("user", "bob"), ("status", "Inactive")), identity=uid("bob")
    )
    # What the audit log keeps of the state read before, and reads back for an undo.
    assert state_from_json(state_to_json(done.before)) == done.before


# --- RemoveGroupMembership.read_object, unrevoke and group_name --------------------------------


def test_group_membership_read_records_the_user_the_group_and_its_group_id(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    group_id = iam.get_group(GroupName="admins")["Group"]["GroupId"]
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="admins")
    assert read_state(revoker(iam), REMOVE_GROUP_MEMBERSHIP, t) == ResourceState(
        exists=True,
        active=True,
        data=(("user", "grace"), ("group", "admins"), ("group_id", group_id)),
        identity=uid("grace"),
    )


def test_group_is_taken_from_the_credential_id_even_without_a_detail(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="")
    state = read_state(revoker(iam), REMOVE_GROUP_MEMBERSHIP, t)
    assert state.active and state.value("group") == "admins"


def test_group_id_prefix_wins_over_a_detail_naming_another_group(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins", "developers"))])
    rv = revoker(iam)
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="developers")
    assert apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t).status == "applied"
    assert groups_of(iam, "grace") == {"developers"}


def test_group_that_cannot_be_told_fails_the_apply_naming_the_credential_id(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    t = target("grace", "legacy-7", CredentialKind.GROUP_MEMBERSHIP, detail="")
    with pytest.raises(RevokeError, match=r"^cannot tell the group from credential id 'legacy-7'$"):
        read_state(revoker(iam), REMOVE_GROUP_MEMBERSHIP, t)
    step = apply_step(revoker(iam), REMOVE_GROUP_MEMBERSHIP, t)
    assert step.status == "failed"
    assert (
        step.error
        == "could not read the state before acting: cannot tell the group from credential id 'legacy-7'"
    )
    assert groups_of(iam, "grace") == {"admins"}


def test_undo_re_adds_the_group_remembered_in_the_prior_state_not_the_one_the_target_names(
    iam: Any,
) -> None:
    seed_users([SeedUser("grace", groups=("admins", "ops"))])
    iam.remove_user_from_group(UserName="grace", GroupName="admins")
    iam.remove_user_from_group(UserName="grace", GroupName="ops")
    spec = revoker(iam).specs[REMOVE_GROUP_MEMBERSHIP]
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="admins")
    ops_id = iam.get_group(GroupName="ops")["Group"]["GroupId"]
    prior = ResourceState(
        exists=True,
        active=True,
        data=(("user", "grace"), ("group", "ops"), ("group_id", ops_id)),
        identity=uid("grace"),
    )
    current = spec.read(t)
    assert spec.restore is not None
    spec.restore(t, current, prior)
    assert groups_of(iam, "grace") == {"ops"}


def test_undo_with_a_prior_state_without_group_falls_back_to_the_targets_group(iam: Any) -> None:
    # A prior state without the group's name still restores the membership of the target's group
    # (checked against the recorded GroupId; without one the undo refuses: test_group_identity.py).
    seed_users([SeedUser("grace", groups=("admins", "ops"))])
    admins_id = iam.get_group(GroupName="admins")["Group"]["GroupId"]
    iam.remove_user_from_group(UserName="grace", GroupName="admins")
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="admins")
    prior = ResourceState(exists=True, active=True, data=(("group_id", admins_id),), identity=uid("grace"))
    undone = undo_step(revoker(iam), REMOVE_GROUP_MEMBERSHIP, t, prior)
    assert undone.status == "restored", undone.error
    assert groups_of(iam, "grace") == {"admins", "ops"}


# --- DeleteLoginProfile.read_object -----------------------------------------------------------


def test_login_profile_read_records_the_user_and_when_the_password_was_created(iam: Any) -> None:
    # moto reports a login profile's CreateDate as its user's creation date.
    seed_users([SeedUser("dave", has_password=True, created=datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC))])
    done = apply_step(
        revoker(iam), DELETE_LOGIN_PROFILE, target("dave", "login-profile", CredentialKind.PASSWORD)
    )
    assert done.status == "applied"
    assert done.before == ResourceState(
        exists=True,
        active=True,
        data=(("user", "dave"), ("created_at", "2021-03-04T05:06:07+00:00")),
        identity=uid("dave"),
    )
    assert done.after == ResourceState(exists=False, active=False, identity=uid("dave"))


# --- DeactivateMfaDevice.read_object ----------------------------------------------------------


def test_mfa_device_read_says_it_exists_and_records_the_user_and_serial(iam: Any) -> None:
    seed_users([SeedUser("erin")])
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="erin")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="erin", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )
    done = apply_step(revoker(iam), DEACTIVATE_MFA_DEVICE, target("erin", serial, CredentialKind.MFA_DEVICE))
    assert done.status == "applied"
    data = (("user", "erin"), ("serial", serial))
    assert done.before == ResourceState(exists=True, active=True, data=data, identity=uid("erin"))
    assert done.before.exists is True
    assert done.after == ResourceState(exists=False, active=False, data=data, identity=uid("erin"))
