"""IAM group memberships are tied to the group's immutable GroupId, not its name: a group deleted
and re-created under the same name (possibly with other policies) is another group, and neither
the removal nor its undo may touch it (moto in process, through the engine's steps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.revoker import REMOVE_GROUP_MEMBERSHIP, AwsIamRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step
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
    table = {"name": "aws-rv", "type": "aws_iam"}
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-rv": iam}))
    assert isinstance(made, AwsIamRevoker)
    return made


def membership(user: str, group: str, detail: str | None = None) -> ActionTarget:
    uid = str(iam_backend().users[user].id)
    return action_target(
        user,
        f"group/{group}",
        CredentialKind.GROUP_MEMBERSHIP,
        uid,
        detail=group if detail is None else detail,
    )


def groups_of(iam: Any, user: str) -> dict[str, str]:
    """The user's groups now: name -> GroupId (read independently of the revoker)."""
    return {g["GroupName"]: g["GroupId"] for g in iam.list_groups_for_user(UserName=user)["Groups"]}


def recreate(iam: Any, group: str) -> str:
    """Delete ``group`` and create a new one under the same name; its GroupId."""
    for member in iam.get_group(GroupName=group)["Users"]:
        iam.remove_user_from_group(GroupName=group, UserName=member["UserName"])
    iam.delete_group(GroupName=group)
    return str(iam.create_group(GroupName=group)["Group"]["GroupId"])


def test_undo_restores_the_membership_of_the_same_group_and_records_its_group_id(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins", "developers"))])
    admins_id = iam.get_group(GroupName="admins")["Group"]["GroupId"]
    rv = revoker(iam)
    t = membership("grace", "admins")
    done = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert done.status == "applied" and done.before is not None
    assert done.before.value("group_id") == admins_id
    assert "admins" not in groups_of(iam, "grace")
    undone = undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, done.before)
    assert undone.status == "restored", undone.error
    assert groups_of(iam, "grace") == {
        "admins": admins_id,
        "developers": iam.get_group(GroupName="developers")["Group"]["GroupId"],
    }


def test_undo_refuses_a_group_recreated_under_the_same_name_and_adds_nothing(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    rv = revoker(iam)
    t = membership("grace", "admins")
    done = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert done.status == "applied" and done.before is not None
    new_id = recreate(iam, "admins")
    undone = undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, done.before)
    assert undone.status == "target-changed"
    assert undone.error and new_id in undone.error and "admins" in undone.error
    assert groups_of(iam, "grace") == {}
    assert iam.get_group(GroupName="admins")["Users"] == []


def test_undo_does_not_take_a_membership_of_a_recreated_group_for_the_prior_state(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    rv = revoker(iam)
    t = membership("grace", "admins")
    done = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert done.before is not None
    new_id = recreate(iam, "admins")
    # Someone added the user to the new group: that is not the membership the action removed.
    iam.add_user_to_group(GroupName="admins", UserName="grace")
    undone = undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, done.before)
    assert undone.status == "target-changed"
    assert groups_of(iam, "grace") == {"admins": new_id}


def test_undo_of_an_action_recorded_without_a_group_id_refuses_instead_of_adding_by_name(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins",))])
    iam.remove_user_from_group(GroupName="admins", UserName="grace")
    rv = revoker(iam)
    # The prior state an earlier version recorded: the group's name only.
    legacy = ResourceState(exists=True, active=True, data=(("user", "grace"), ("group", "admins")))
    undone = undo_step(rv, REMOVE_GROUP_MEMBERSHIP, membership("grace", "admins"), legacy)
    assert undone.status == "target-changed"
    assert undone.error and "no GroupId was recorded" in undone.error
    assert groups_of(iam, "grace") == {}


def test_the_action_declares_get_group() -> None:
    assert "iam:GetGroup" in AwsIamRevoker.actions[REMOVE_GROUP_MEMBERSHIP].permissions
