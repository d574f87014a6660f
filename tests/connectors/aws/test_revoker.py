"""The aws_iam revoker's actions against moto in process, run through the engine's steps: apply,
idempotence, verification, undo, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.exposure.actions import ROTATE_SECRET, RotateSecret
from connectors.aws_iam.revoker import (
    DEACTIVATE_ACCESS_KEY,
    DEACTIVATE_MFA_DEVICE,
    DEACTIVATE_SIGNING_CERTIFICATE,
    DEACTIVATE_SSH_KEY,
    DELETE_LOGIN_PROFILE,
    DENY_ISSUED_SESSIONS,
    REMOVE_GROUP_MEMBERSHIP,
    AwsIamRevoker,
)
from connectors.aws_iam.translate import DENY_POLICY_NAME
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.aws import MOTO_ACCOUNT, SeedUser, action_target, iam_backend, seed_users

NOW = datetime.now(UTC)


def self_signed_certificate() -> str:
    """A fresh self-signed certificate (moto parses what is uploaded)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offboard-audit-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def iam() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client(
            "iam", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def revoker(iam: Any, **options: Any) -> AwsIamRevoker:
    table = {"name": "aws-rv", "type": "aws_iam", **options}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-rv": iam}))
    assert isinstance(made, AwsIamRevoker)
    return made


def user_id(user: str) -> str:
    """The UserId moto gave ``user`` ("" when there is no such user)."""
    found = iam_backend().users.get(user)
    return str(found.id) if found is not None else ""


def target(
    user: str, credential_id: str, kind: CredentialKind, detail: str = "", uid: str | None = None
) -> ActionTarget:
    """An action target as the planner builds it: with the UserId read when the finding was made
    (by default the user's current one)."""
    return action_target(user, credential_id, kind, user_id(user) if uid is None else uid, detail=detail)


def test_every_action_declares_exact_iam_permissions_and_irreversible_ones_say_so() -> None:
    actions = AwsIamRevoker.actions
    # The plugin adds the exposure action (rotate_secret, issue 13) to the IAM ones.
    assert dict(PLUGIN.revoker_actions) == {**actions, ROTATE_SECRET: RotateSecret.definition}
    for name, action in actions.items():
        assert action.name == name and action.stage is Stage.DISABLE
        assert action.permissions and all(p.startswith("iam:") for p in action.permissions)
    assert "iam:UpdateAccessKey" in actions[DEACTIVATE_ACCESS_KEY].permissions
    assert not actions[DELETE_LOGIN_PROFILE].reversible
    assert "IRREVERSIBLE" in actions[DELETE_LOGIN_PROFILE].description
    assert {a.credential_kind for a in actions.values()} >= {
        CredentialKind.ACCESS_KEY,
        CredentialKind.SSH_KEY,
        CredentialKind.SIGNING_CERTIFICATE,
        CredentialKind.SERVICE_CREDENTIAL,
        CredentialKind.GROUP_MEMBERSHIP,
        CredentialKind.PASSWORD,
        CredentialKind.MFA_DEVICE,
        CredentialKind.ACCOUNT,
    }


def test_access_key_is_deactivated_once_verified_and_restored_by_undo(iam: Any) -> None:
    backend = seed_users([SeedUser("bob", keys=[(NOW - timedelta(days=3), None)])])
    key_id = backend.users["bob"].access_keys[0].access_key_id
    rv = revoker(iam)
    t = target("bob", key_id, CredentialKind.ACCESS_KEY)
    first = apply_step(rv, DEACTIVATE_ACCESS_KEY, t)
    assert first.status == "applied" and first.before and first.after
    assert first.before.active and not first.after.active
    assert backend.users["bob"].access_keys[0].status == "Inactive"
    second = apply_step(rv, DEACTIVATE_ACCESS_KEY, t)
    assert second.status == "noop" and second.message == "already revoked"
    undone = undo_step(rv, DEACTIVATE_ACCESS_KEY, t, first.before)
    assert undone.status == "restored"
    assert backend.users["bob"].access_keys[0].status == "Active"


def test_ssh_key_and_signing_certificate_are_deactivated_and_restored(iam: Any) -> None:
    seed_users([SeedUser("carol")])
    ssh_id = iam.upload_ssh_public_key(UserName="carol", SSHPublicKeyBody="ssh-rsa AAAAB3NzaC1yc2E carol@x")[
        "SSHPublicKey"
    ]["SSHPublicKeyId"]
    cert_id = iam.upload_signing_certificate(UserName="carol", CertificateBody=self_signed_certificate())[
        "Certificate"
    ]["CertificateId"]
    rv = revoker(iam)
    for action, cid, kind in (
        (DEACTIVATE_SSH_KEY, ssh_id, CredentialKind.SSH_KEY),
        (DEACTIVATE_SIGNING_CERTIFICATE, cid_cert := cert_id, CredentialKind.SIGNING_CERTIFICATE),
    ):
        t = target("carol", cid, kind)
        done = apply_step(rv, action, t)
        assert done.status == "applied" and done.before, action
        assert not read_state(rv, action, t).active
        assert apply_step(rv, action, t).status == "noop"
        assert undo_step(rv, action, t, done.before).status == "restored"
        assert read_state(rv, action, t).active
    assert iam.list_signing_certificates(UserName="carol")["Certificates"][0]["CertificateId"] == cid_cert


def test_group_membership_is_removed_and_the_remembered_group_restored(iam: Any) -> None:
    seed_users([SeedUser("grace", groups=("admins", "developers"))])
    rv = revoker(iam)
    t = target("grace", "group/admins", CredentialKind.GROUP_MEMBERSHIP, detail="admins")
    done = apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t)
    assert done.status == "applied" and done.before and done.before.value("group") == "admins"
    groups = {g["GroupName"] for g in iam.list_groups_for_user(UserName="grace")["Groups"]}
    assert groups == {"developers"}
    assert apply_step(rv, REMOVE_GROUP_MEMBERSHIP, t).status == "noop"
    # Re-adding a membership re-creates it: the object did not exist while revoked.
    assert undo_step(rv, REMOVE_GROUP_MEMBERSHIP, t, done.before).status == "restored"
    assert {g["GroupName"] for g in iam.list_groups_for_user(UserName="grace")["Groups"]} == {
        "admins",
        "developers",
    }


def test_login_profile_is_deleted_and_undo_refuses_because_it_is_irreversible(iam: Any) -> None:
    seed_users([SeedUser("dave", has_password=True)])
    rv = revoker(iam)
    t = target("dave", "login-profile", CredentialKind.PASSWORD)
    done = apply_step(rv, DELETE_LOGIN_PROFILE, t)
    assert done.status == "applied" and done.before and done.after and not done.after.exists
    assert iam_backend().users["dave"].password is None
    assert apply_step(rv, DELETE_LOGIN_PROFILE, t).status == "noop"
    assert rv.specs[DELETE_LOGIN_PROFILE].restore is None
    undone = undo_step(rv, DELETE_LOGIN_PROFILE, t, done.before)
    assert undone.status == "failed" and "irreversible" in (undone.error or "")


def test_mfa_device_is_deactivated(iam: Any) -> None:
    seed_users([SeedUser("erin")])
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="erin")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="erin", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )
    rv = revoker(iam)
    t = target("erin", serial, CredentialKind.MFA_DEVICE)
    assert apply_step(rv, DEACTIVATE_MFA_DEVICE, t).status == "applied"
    assert iam.list_mfa_devices(UserName="erin")["MFADevices"] == []
    assert apply_step(rv, DEACTIVATE_MFA_DEVICE, t).status == "noop"
    assert rv.specs[DEACTIVATE_MFA_DEVICE].restore is None


def test_deny_policy_blocks_sessions_issued_before_now_and_undo_deletes_it(iam: Any) -> None:
    seed_users([SeedUser("frank")])
    rv = revoker(iam, include_inline_deny=True)
    t = target("frank", f"arn:aws:iam::{MOTO_ACCOUNT}:user/frank", CredentialKind.ACCOUNT)
    done = apply_step(rv, DENY_ISSUED_SESSIONS, t)
    assert done.status == "applied" and done.before
    doc = iam.get_user_policy(UserName="frank", PolicyName=DENY_POLICY_NAME)["PolicyDocument"]
    policy = doc if isinstance(doc, dict) else json.loads(doc)
    statement = policy["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*"
    issued_before = datetime.fromisoformat(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"])
    assert abs(issued_before - datetime.now(UTC)) < timedelta(minutes=1)
    assert apply_step(rv, DENY_ISSUED_SESSIONS, t).status == "noop"
    assert undo_step(rv, DENY_ISSUED_SESSIONS, t, done.before).status == "restored"
    assert iam.list_user_policies(UserName="frank")["PolicyNames"] == []


def test_root_protected_users_and_report_slots_are_refused_without_any_call(iam: Any) -> None:
    seed_users([SeedUser("breakglass", has_password=True)])
    rv = revoker(iam, protected_users=["breakglass"])
    calls: list[str] = []
    iam.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    root = ActionTarget(
        source="aws-rv",
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:root",
        username="<root_account>",
        credential_id="login-profile",
        credential_kind=CredentialKind.PASSWORD,
        scope=MOTO_ACCOUNT,
    )
    refusals = {
        "root": (DELETE_LOGIN_PROFILE, root),
        "protected": (DELETE_LOGIN_PROFILE, target("breakglass", "login-profile", CredentialKind.PASSWORD)),
        "detail pass": (
            DEACTIVATE_ACCESS_KEY,
            target("someone", "report/access_key_1", CredentialKind.ACCESS_KEY),
        ),
    }
    for reason, (action, t) in refusals.items():
        spec = rv.specs[action]
        # Every method of the spec refuses by itself, before any call.
        with pytest.raises(RevokeError, match=reason):
            spec.read(t)
        with pytest.raises(RevokeError, match=reason):
            spec.change(t, ResourceState(exists=True, active=True, identity=t.account_uid))
        step = apply_step(rv, action, t)
        assert step.status == "failed" and reason in (step.error or "")
    # The engine's steps refuse an action on another credential kind.
    wrong_kind = apply_step(
        rv, DEACTIVATE_ACCESS_KEY, target("someone", "AKIA0000000000000000", CredentialKind.SSH_KEY)
    )
    assert wrong_kind.status == "failed" and "applies to" in (wrong_kind.error or "")
    assert calls == []
    assert iam_backend().users["breakglass"].password is not None


def test_vanished_key_is_reported_gone_not_changed(iam: Any) -> None:
    seed_users([SeedUser("gone")])
    result = apply_step(
        revoker(iam), DEACTIVATE_ACCESS_KEY, target("gone", "AKIA0000000000000000", CredentialKind.ACCESS_KEY)
    )
    assert result.status == "noop" and result.before and not result.before.exists
    assert "not found" in result.message


@pytest.mark.parametrize(
    ("protected", "name"),
    [(["breakglass"], "BreakGlass"), (["BreakGlass"], "breakglass"), (["BREAKGLASS"], "BreakGlass")],
)
def test_protected_users_are_refused_whatever_the_case_of_the_name(
    iam: Any, protected: list[str], name: str
) -> None:
    # IAM user names are unique regardless of case: BreakGlass and breakglass are one user.
    seed_users([SeedUser(name, has_password=True, groups=("admins",))])
    rv = revoker(iam, protected_users=protected)
    calls: list[str] = []
    iam.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    for action, t in (
        (DELETE_LOGIN_PROFILE, target(name, "login-profile", CredentialKind.PASSWORD)),
        (REMOVE_GROUP_MEMBERSHIP, target(name, "group/admins", CredentialKind.GROUP_MEMBERSHIP, "admins")),
    ):
        spec = rv.specs[action]
        with pytest.raises(RevokeError, match="protected"):
            spec.read(t)
        with pytest.raises(RevokeError, match="protected"):
            spec.change(t, ResourceState(exists=True, active=True, identity=t.account_uid))
        if spec.restore is not None:
            with pytest.raises(RevokeError, match="protected"):
                spec.restore(
                    t, ResourceState(exists=True, active=False), ResourceState(exists=True, active=True)
                )
    assert calls == []
    assert iam_backend().users[name].password is not None


def test_root_is_refused_whatever_the_case_of_its_row_or_arn(iam: Any) -> None:
    rv = revoker(iam)
    for username, account_id in (
        ("<ROOT_ACCOUNT>", f"arn:aws:iam::{MOTO_ACCOUNT}:user/x"),
        ("someone", f"arn:aws:iam::{MOTO_ACCOUNT}:ROOT"),
    ):
        root = ActionTarget(
            source="aws-rv",
            system="aws_iam",
            account_id=account_id,
            username=username,
            credential_id="login-profile",
            credential_kind=CredentialKind.PASSWORD,
            scope=MOTO_ACCOUNT,
            account_uid="AIDAROOT",
        )
        with pytest.raises(RevokeError, match="root"):
            rv.specs[DELETE_LOGIN_PROFILE].read(root)
        with pytest.raises(RevokeError, match="root"):
            rv.specs[DELETE_LOGIN_PROFILE].change(
                root, ResourceState(exists=True, active=True, identity="AIDAROOT")
            )
