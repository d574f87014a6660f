"""``delete_userpass_login`` against a real OpenBao server, one action at a time.

Closes the holes the mutation run over ``connectors/vault/actions.py`` found in
``DeleteUserpassLogin`` and ``_userpass``: the credential id's parsing (exact values and exact
refusal texts), the mount check, and the state ``read`` gives in each case of ``_identity``
(the login's alias names an entity; a login no alias names; a login gone with its alias; a
login gone with its entity; a userpass-only account whose login is gone). States are compared
whole: they are the ``before``/``after`` that go into the audit chain.
"""

from __future__ import annotations

import pytest

from connectors.vault.actions import DELETE_USERPASS_LOGIN, _userpass
from connectors.vault.revoker import VaultRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, read_state
from tests.connectors.vault.conftest import VaultWorld


def _target(
    credential_id: str, account_id: str = "", account_uid: str = "", username: str = ""
) -> ActionTarget:
    return ActionTarget(
        source="vault",
        system="vault",
        account_id=account_id,
        username=username,
        credential_id=credential_id,
        credential_kind=CredentialKind.PASSWORD,
        account_uid=account_uid,
    )


def _revoker(w: VaultWorld) -> VaultRevoker:
    assert w.api is not None
    return VaultRevoker(w.api.settings, w.api)


def _login_only(w: VaultWorld, user: str) -> None:
    """A userpass user no entity knows (it never logged in: no alias)."""
    w.root.auth.userpass.create_or_update_user(user, password=f"pw-{user}", policies=["staff"])


def _alias_id(w: VaultWorld, user: str) -> str:
    """The id of the userpass alias ``user`` of the entity of the same name."""
    aliases = w.root.secrets.identity.read_entity(w.entities[user])["data"]["aliases"]
    (alias,) = [a for a in aliases if a["name"] == user and a["mount_accessor"] == w.userpass_accessor]
    return str(alias["id"])


# --- _userpass: the credential id's parts, written out by hand ---------------------------------


def test_userpass_splits_the_mount_path_and_the_user_name() -> None:
    assert _userpass(_target("auth/userpass/users/alice")) == ("auth/userpass/", "alice")
    assert _userpass(_target("auth/corp/people/users/j.doe")) == ("auth/corp/people/", "j.doe")


def test_userpass_splits_at_the_last_users_segment_so_a_mount_named_users_works() -> None:
    assert _userpass(_target("auth/users/users/alice")) == ("auth/users/", "alice")


@pytest.mark.parametrize(
    "credential_id",
    [
        "auth/userpass/users/alice/extra",  # a user name never holds a slash
        "userpass/users/alice",  # not under auth/
        "secret/users/alice",
        "auth/userpass/users/",  # no user
        "auth/userpass/alice",  # no /users/
    ],
)
def test_userpass_refuses_an_id_that_is_not_auth_mount_users_name_with_the_exact_message(
    credential_id: str,
) -> None:
    with pytest.raises(RevokeError) as caught:
        _userpass(_target(credential_id))
    assert str(caught.value) == (f"{credential_id!r} is not a userpass login (auth/<mount>/users/<name>)")


def test_reading_a_login_under_a_path_outside_auth_is_refused_before_any_vault_call(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    assert w.api is not None
    w.api.calls.clear()
    with pytest.raises(RevokeError) as caught:
        read_state(_revoker(w), DELETE_USERPASS_LOGIN, _target("userpass/users/alice"))
    assert str(caught.value) == "'userpass/users/alice' is not a userpass login (auth/<mount>/users/<name>)"
    assert w.api.calls == []


# --- _mount_accessor: the mount must be a userpass mount, now ----------------------------------


def test_a_login_on_a_mount_that_is_not_userpass_is_refused_with_the_exact_message(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    w.root.sys.enable_auth_method("approle")  # auth/approle/ exists, but is no userpass mount
    with pytest.raises(RevokeError) as caught:
        read_state(_revoker(w), DELETE_USERPASS_LOGIN, _target("auth/approle/users/alice"))
    assert str(caught.value) == "auth/approle/ is not a userpass auth mount (any more)"


def test_a_login_on_a_mount_that_no_longer_exists_is_refused_with_the_exact_message(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    with pytest.raises(RevokeError) as caught:
        read_state(_revoker(w), DELETE_USERPASS_LOGIN, _target("auth/gone/users/alice"))
    assert str(caught.value) == "auth/gone/ is not a userpass auth mount (any more)"


# --- read: the state in each case of _identity ------------------------------------------------


def test_a_login_whose_alias_names_an_entity_reads_as_that_entity(vault_world: VaultWorld) -> None:
    w = vault_world
    alice = w.entities["alice"]
    state = read_state(
        _revoker(w), DELETE_USERPASS_LOGIN, _target("auth/userpass/users/alice", alice, alice, "alice")
    )
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(("mount", "auth/userpass/"), ("user", "alice")),
        identity=alice,
    )


def test_a_login_no_alias_names_reads_as_the_login_itself(vault_world: VaultWorld) -> None:
    w = vault_world
    _login_only(w, "carol")
    uid = f"{w.userpass_accessor}/carol"
    target = _target("auth/userpass/users/carol", "auth/userpass/users/carol", uid, "carol")
    revoker = _revoker(w)
    before = ResourceState(
        exists=True,
        active=True,
        data=(("mount", "auth/userpass/"), ("user", "carol")),
        identity=uid,
    )
    assert read_state(revoker, DELETE_USERPASS_LOGIN, target) == before
    # The change deletes it for real, and the re-read after it verifies that.
    step = apply_step(revoker, DELETE_USERPASS_LOGIN, target)
    assert (step.before, step.started) == (before, True)
    assert w.root.read("auth/userpass/users/carol") is None
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.after == ResourceState(
        exists=False,
        active=False,
        data=(("mount", "auth/userpass/"), ("user", "carol")),
        identity=uid,
    )


def test_deleting_a_login_no_alias_names_is_verified_as_applied(vault_world: VaultWorld) -> None:
    # It used to end as failed ("not verified: ... no longer exists") though the login was gone:
    # the re-read of a deleted login-only account had no identity.
    w = vault_world
    _login_only(w, "carol")
    uid = f"{w.userpass_accessor}/carol"
    target = _target("auth/userpass/users/carol", "auth/userpass/users/carol", uid, "carol")
    step = apply_step(_revoker(w), DELETE_USERPASS_LOGIN, target)
    assert step.status is ActionStatus.APPLIED, step.error


def test_a_userpass_only_login_already_gone_reads_as_gone_with_its_own_identity_and_is_a_noop(
    vault_world: VaultWorld,
) -> None:
    # A login no entity knows has no id of its own: mount and name are its identity, there or
    # gone. Gone before the change, it is the planned login with nothing left to delete.
    w = vault_world
    uid = f"{w.userpass_accessor}/carol"
    target = _target("auth/userpass/users/carol", "auth/userpass/users/carol", uid, "carol")
    revoker = _revoker(w)
    state = read_state(revoker, DELETE_USERPASS_LOGIN, target)
    assert state == ResourceState(
        exists=False,
        active=False,
        data=(("mount", "auth/userpass/"), ("user", "carol")),
        identity=uid,
    )
    step = apply_step(revoker, DELETE_USERPASS_LOGIN, target)
    assert (step.status, step.message) == (ActionStatus.NOOP, "not found: nothing to revoke"), step.error


def test_a_login_gone_with_its_alias_reads_as_gone_but_still_the_planned_entity(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    alice = w.entities["alice"]
    w.root.secrets.identity.delete_entity_alias(_alias_id(w, "alice"))
    w.root.delete("auth/userpass/users/alice")
    target = _target("auth/userpass/users/alice", alice, alice, "alice")
    revoker = _revoker(w)
    gone = ResourceState(
        exists=False,
        active=False,
        data=(("mount", "auth/userpass/"), ("user", "alice")),
        identity=alice,
    )
    assert read_state(revoker, DELETE_USERPASS_LOGIN, target) == gone
    # The entity is still the one planned: nothing to delete, not a target that changed hands.
    step = apply_step(revoker, DELETE_USERPASS_LOGIN, target)
    assert (step.status, step.before, step.message) == (
        ActionStatus.NOOP,
        gone,
        "not found: nothing to revoke",
    )


def test_a_login_gone_with_its_entity_reads_as_gone_with_no_identity(vault_world: VaultWorld) -> None:
    w = vault_world
    alice = w.entities["alice"]
    w.root.secrets.identity.delete_entity(alice)  # its alias goes with it
    w.root.delete("auth/userpass/users/alice")
    target = _target("auth/userpass/users/alice", alice, alice, "alice")
    state = read_state(_revoker(w), DELETE_USERPASS_LOGIN, target)
    assert state == ResourceState(
        exists=False,
        active=False,
        data=(("mount", "auth/userpass/"), ("user", "alice")),
        identity=None,
    )
