"""Mutation holes in the GCP revoker's key read (``KeyAction.read_object``) and the shared steps of
``GcpAction`` (``guard``, ``calling``, ``_restore``, the irreversible ``unrevoke``).

The key read decides "already disabled", "disabled and verified" and "gone" for a
service-account key, and its state is what the audit log records before and after: these tests
pin the exact ``ResourceState`` read, with the expected values written out. The refusal and
failure messages are what the operator sees in the revoke table: pinned exactly.

Everything runs the real google-cloud clients against the in-process fake GCP servers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from connectors.gcp_iam import GcpIamRevoker
from connectors.gcp_iam.demo_fake import FakeKey, FakeServiceAccount
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.engine.steps import apply_step, read_state
from tests.support import gcp as gcp_support
from tests.support.gcp import FakeGcp

CREATED = datetime(2025, 1, 1, tzinfo=UTC)
EMAIL = "ci-deployer@acme-prod.iam.gserviceaccount.com"
# The fake hands out ids in sequence: the service account gets ...02, its system-managed key
# ...03, the user-managed key under test ...04.
UID = "100000000000000000002"
KEY = f"projects/acme-prod/serviceAccounts/{EMAIL}/keys/0000000000000000000000000000000000000004"
DENIED = "PermissionDenied: 403 caller lacks iam.serviceAccountKeys.get"


def key_target(email: str = EMAIL, key_name: str = KEY, uid: str = UID) -> ActionTarget:
    return gcp_support.key_target(email, key_name, uid)


def sa_target(email: str = EMAIL, uid: str = UID) -> ActionTarget:
    return gcp_support.sa_target(email, uid)


def seed_key(gcp_fake: FakeGcp, disabled: bool = False) -> tuple[FakeServiceAccount, FakeKey]:
    state = gcp_fake.state
    state.add_project("acme-prod")
    sa = state.add_service_account("acme-prod", "ci-deployer")
    key = state.add_key(sa.email, created=CREATED, disabled=disabled)
    # The literals above are what the fake hands out; say so plainly if that ever changes.
    assert (sa.email, sa.unique_id, key.name) == (EMAIL, UID, KEY)
    return sa, key


def deny_iam_calls(gcp_fake: FakeGcp) -> None:
    gcp_fake.state.iam_failures["acme-prod"] = (
        "PERMISSION_DENIED",
        "caller lacks iam.serviceAccountKeys.get",
    )


# --- KeyAction.read_object: the exact state of a live key ----------------------------------------


def test_disable_key_records_the_key_enabled_before_and_disabled_after_with_exact_data(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    _sa, key = seed_key(gcp_fake)
    result = apply_step(gcp_revoker(projects=["acme-prod"]), "disable_key", key_target())
    assert result.status == "applied"
    assert result.before == ResourceState(
        exists=True,
        active=True,
        data=(("name", KEY), ("disabled", "false")),
        identity=UID,
    )
    assert result.after == ResourceState(
        exists=True,
        active=False,
        data=(("name", KEY), ("disabled", "true")),
        identity=UID,
    )
    assert key.disabled


def test_an_already_disabled_key_reads_inactive_with_disabled_true_and_is_a_noop(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_key(gcp_fake, disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    expected = ResourceState(
        exists=True,
        active=False,
        data=(("name", KEY), ("disabled", "true")),
        identity=UID,
    )
    assert read_state(revoker, "disable_key", key_target()) == expected
    result = apply_step(revoker, "disable_key", key_target())
    assert result.status == "noop"
    assert result.before == expected
    assert gcp_fake.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 0


def test_delete_key_reads_a_disabled_key_as_still_there_with_disabled_true(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_key(gcp_fake, disabled=True)
    state = read_state(gcp_revoker(projects=["acme-prod"]), "delete_key", key_target())
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(("name", KEY), ("disabled", "true")),
        identity=UID,
    )


def test_delete_key_reads_an_enabled_key_with_disabled_false(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_key(gcp_fake)
    state = read_state(gcp_revoker(projects=["acme-prod"]), "delete_key", key_target())
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(("name", KEY), ("disabled", "false")),
        identity=UID,
    )


# --- KeyAction.read_object: the service account is gone -----------------------------------------


@pytest.mark.parametrize("action", ["disable_key", "delete_key"])
def test_a_key_of_a_deleted_service_account_reads_gone_inactive_named_and_without_identity(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], action: str
) -> None:
    seed_key(gcp_fake)
    gcp_fake.state.delete_service_account(EMAIL)
    revoker = gcp_revoker(projects=["acme-prod"])
    gone = ResourceState(exists=False, active=False, data=(("name", KEY),), identity=None)
    state = revoker.specs[action].read(key_target())
    assert state == gone
    # Each field on its own, so that None is never taken for False.
    assert state.exists is False
    assert state.active is False
    assert state.data == (("name", KEY),)
    assert state.identity is None
    assert read_state(revoker, action, key_target()) == gone


# --- GcpAction.calling: failures name the action and the credential -----------------------------


def test_a_failed_key_read_names_the_action_the_key_and_the_api_error(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_key(gcp_fake)
    revoker = gcp_revoker(projects=["acme-prod"])
    deny_iam_calls(gcp_fake)
    with pytest.raises(RevokeError) as caught:
        revoker.specs["disable_key"].read(key_target())
    assert str(caught.value) == f"disable_key {KEY}: cannot read state: {DENIED}"
    result = apply_step(revoker, "disable_key", key_target())
    assert result.status == "failed"
    assert result.error == (
        f"could not read the state before acting: disable_key {KEY}: cannot read state: {DENIED}"
    )


def test_a_failed_key_disable_names_the_action_the_key_and_the_api_error(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    _sa, key = seed_key(gcp_fake)
    revoker = gcp_revoker(projects=["acme-prod"])
    before = read_state(revoker, "disable_key", key_target())
    deny_iam_calls(gcp_fake)
    with pytest.raises(RevokeError) as caught:
        revoker.specs["disable_key"].change(key_target(), before)
    assert str(caught.value) == f"disable_key {KEY}: {DENIED}"
    assert not key.disabled


# --- GcpAction._restore: a failed undo names itself ----------------------------------------------


def test_a_failed_key_undo_names_undo_the_action_the_key_and_the_api_error(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    _sa, key = seed_key(gcp_fake)
    revoker = gcp_revoker(projects=["acme-prod"])
    result = apply_step(revoker, "disable_key", key_target())
    assert result.status == "applied" and result.before and result.after
    deny_iam_calls(gcp_fake)
    restore = revoker.specs["disable_key"].restore
    assert restore is not None
    with pytest.raises(RevokeError) as caught:
        restore(key_target(), result.after, result.before)
    assert str(caught.value) == f"undo disable_key {KEY}: {DENIED}"
    assert key.disabled


# --- GcpAction.guard: the refusal names the action -----------------------------------------------


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("disable_key", key_target()),
        ("delete_key", key_target()),
        ("disable_service_account", sa_target()),
    ],
)
def test_a_protected_service_account_is_refused_with_a_message_naming_the_action(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], action: str, target: ActionTarget
) -> None:
    _sa, key = seed_key(gcp_fake)
    revoker = gcp_revoker(
        projects=["acme-prod"], protected_principals=["ci-*@acme-prod.iam.gserviceaccount.com"]
    )
    gcp_fake.state.reset_calls()
    expected = f"{EMAIL} is protected (matches 'ci-*@acme-prod.iam.gserviceaccount.com'): refusing {action}"
    with pytest.raises(RevokeError) as caught:
        revoker.specs[action].read(target)
    assert str(caught.value) == expected
    result = apply_step(revoker, action, target)
    assert result.status == "failed"
    assert result.error is not None and result.error.endswith(expected)
    assert sum(gcp_fake.state.calls.values()) == 0
    assert not key.disabled


# --- GcpAction.unrevoke: an irreversible action asked to restore refuses -------------------------


def test_delete_key_asked_to_restore_all_the_same_refuses_naming_itself_and_the_key(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    # The engine never asks (its `restore` is None); called anyway, it must refuse loudly.
    seed_key(gcp_fake)
    spec = gcp_revoker(projects=["acme-prod"]).specs["delete_key"]
    assert spec.restore is None
    prior = ResourceState(exists=True, active=True, data=(("name", KEY), ("disabled", "false")), identity=UID)
    with pytest.raises(RevokeError) as caught:
        spec.unrevoke(key_target(), prior)  # type: ignore[attr-defined]
    assert str(caught.value) == f"delete_key is irreversible: {KEY} cannot be restored"
