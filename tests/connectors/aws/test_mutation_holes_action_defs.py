"""The aws_iam action definitions: the IAM permissions an operator must grant, whether an action
can be undone, and the status-action classes built from a ``StatusCredential``.

``iam_action`` and ``status_action`` run when ``connectors.aws_iam.actions`` is imported, so a
test that only reads the real classes' ``definition`` never calls them again. The tests here call
both factories at test time and compare what they build with expectations written out
independently (the permission strings are exactly what ``offboard-audit`` tells the operator to
grant), and also pin the eight real definitions against an independent table.
"""

from __future__ import annotations

import pytest

from connectors.aws_iam.actions import (
    ACTIONS,
    DeactivateAccessKey,
    StatusAction,
    StatusCredential,
    iam_action,
    status_action,
)
from connectors.aws_iam.translate import DENY_POLICY_NAME
from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.records import CredentialKind


def test_iam_action_permissions_are_get_user_then_each_named_call_once_in_order() -> None:
    definition = iam_action(
        "frobnicate_widget",
        CredentialKind.SSH_KEY,
        ("ListWidgets", None, "UpdateWidget", "UpdateWidget"),
        "Frobnicate the widget.",
    )
    assert definition == ActionDef(
        name="frobnicate_widget",
        credential_kind=CredentialKind.SSH_KEY,
        stage=Stage.DISABLE,
        reversible=True,
        permissions=("iam:GetUser", "iam:ListWidgets", "iam:UpdateWidget"),
        description="Frobnicate the widget.",
    )


def test_iam_action_is_reversible_by_default() -> None:
    definition = iam_action("x_action", CredentialKind.ACCESS_KEY, ("ListThings",), "d")
    assert definition.reversible is True


def test_iam_action_marked_irreversible_stays_irreversible() -> None:
    definition = iam_action("x_action", CredentialKind.PASSWORD, ("DeleteThing",), "d", reversible=False)
    assert definition.reversible is False
    assert definition.stage is Stage.DISABLE
    assert definition.permissions == ("iam:GetUser", "iam:DeleteThing")


def test_iam_action_with_no_calls_still_needs_iam_get_user_for_the_identity_check() -> None:
    definition = iam_action("x_action", CredentialKind.ACCOUNT, (None,), "d")
    assert definition.permissions == ("iam:GetUser",)


@pytest.fixture
def gadget() -> StatusCredential:
    return StatusCredential(
        "deactivate_blue_gadget",
        CredentialKind.SIGNING_CERTIFICATE,
        "blue gadget",
        "BlueGadget",
        result_key="BlueGadgets",
        id_key="BlueGadgetId",
    )


def test_status_action_class_carries_its_credential_and_derived_calls(gadget: StatusCredential) -> None:
    action = status_action(gadget)
    assert issubclass(action, StatusAction)
    assert action.status is gadget
    assert action.calls == ("ListBlueGadgets", "UpdateBlueGadget", "UpdateBlueGadget")


def test_status_action_definition_names_permissions_and_undo(gadget: StatusCredential) -> None:
    action = status_action(gadget)
    assert action.definition == ActionDef(
        name="deactivate_blue_gadget",
        credential_kind=CredentialKind.SIGNING_CERTIFICATE,
        stage=Stage.DISABLE,
        reversible=True,
        permissions=("iam:GetUser", "iam:ListBlueGadgets", "iam:UpdateBlueGadget"),
        description="Set the blue gadget to Inactive (undo: Active).",
    )


def test_status_action_class_is_named_in_camel_case_from_the_action_name(gadget: StatusCredential) -> None:
    action = status_action(gadget)
    assert action.__name__ == "DeactivateBlueGadget"
    assert action.__qualname__ == "DeactivateBlueGadget"


def test_status_action_rebuilt_from_the_access_key_credential_equals_the_real_class() -> None:
    rebuilt = status_action(DeactivateAccessKey.status)
    assert rebuilt.__name__ == "DeactivateAccessKey"
    assert rebuilt.calls == DeactivateAccessKey.calls
    assert rebuilt.definition == DeactivateAccessKey.definition


# Independent expectation: (class name, kind, reversible, permissions, description).
EXPECTED = {
    "deactivate_access_key": (
        "DeactivateAccessKey",
        CredentialKind.ACCESS_KEY,
        True,
        ("iam:GetUser", "iam:ListAccessKeys", "iam:UpdateAccessKey"),
        "Set the access key to Inactive (undo: Active).",
    ),
    "deactivate_ssh_key": (
        "DeactivateSshKey",
        CredentialKind.SSH_KEY,
        True,
        ("iam:GetUser", "iam:ListSSHPublicKeys", "iam:UpdateSSHPublicKey"),
        "Set the SSH public key to Inactive (undo: Active).",
    ),
    "deactivate_signing_certificate": (
        "DeactivateSigningCertificate",
        CredentialKind.SIGNING_CERTIFICATE,
        True,
        ("iam:GetUser", "iam:ListSigningCertificates", "iam:UpdateSigningCertificate"),
        "Set the signing certificate to Inactive (undo: Active).",
    ),
    "deactivate_service_credential": (
        "DeactivateServiceCredential",
        CredentialKind.SERVICE_CREDENTIAL,
        True,
        ("iam:GetUser", "iam:ListServiceSpecificCredentials", "iam:UpdateServiceSpecificCredential"),
        "Set the service-specific credential to Inactive (undo: Active).",
    ),
    "remove_group_membership": (
        "RemoveGroupMembership",
        CredentialKind.GROUP_MEMBERSHIP,
        True,
        (
            "iam:GetUser",
            "iam:ListGroupsForUser",
            "iam:RemoveUserFromGroup",
            "iam:AddUserToGroup",
            "iam:GetGroup",
        ),
        "Remove the user from the group (undo: add it back, only to the same group: its GroupId "
        "is checked first).",
    ),
    "delete_login_profile": (
        "DeleteLoginProfile",
        CredentialKind.PASSWORD,
        False,
        ("iam:GetUser", "iam:GetLoginProfile", "iam:DeleteLoginProfile"),
        "Delete the console password (login profile). IRREVERSIBLE: IAM cannot disable a "
        "password, and undo cannot restore it (a new password would have to be issued).",
    ),
    "deactivate_mfa_device": (
        "DeactivateMfaDevice",
        CredentialKind.MFA_DEVICE,
        False,
        ("iam:GetUser", "iam:ListMFADevices", "iam:DeactivateMFADevice"),
        "Deactivate the MFA device. IRREVERSIBLE by this tool: re-enabling needs two "
        "codes from the physical or virtual device.",
    ),
    "deny_issued_sessions": (
        "DenyIssuedSessions",
        CredentialKind.ACCOUNT,
        True,
        ("iam:GetUser", "iam:GetUserPolicy", "iam:PutUserPolicy", "iam:DeleteUserPolicy"),
        f"Attach the inline policy {DENY_POLICY_NAME}: deny all to temporary credentials "
        "issued before now (aws:TokenIssueTime). Undo deletes it.",
    ),
}


def test_every_real_action_definition_matches_the_permissions_and_reversibility_operators_rely_on() -> None:
    assert [a.definition.name for a in ACTIONS] == list(EXPECTED)
    for action in ACTIONS:
        cls_name, kind, reversible, permissions, description = EXPECTED[action.definition.name]
        assert action.__name__ == cls_name
        assert action.definition == ActionDef(
            name=action.definition.name,
            credential_kind=kind,
            stage=Stage.DISABLE,
            reversible=reversible,
            permissions=permissions,
            description=description,
        ), action.definition.name
