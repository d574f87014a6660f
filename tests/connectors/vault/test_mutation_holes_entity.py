"""``disable_entity`` and the revoker's own checks against a real OpenBao server, one action at a time.

Closes the holes the mutation run over ``connectors/vault/actions.py`` and ``revoker.py`` found in
``DisableEntity`` (the state ``read`` gives, the identity re-check right before the write, the
undo of a gone entity), ``_entity`` (the refusal by the entity's name as Vault reports it now),
``VaultRevoker.refuse`` (every name it compares, and the name its error shows),
``VaultRevoker.entity`` (ids that name no entity are never sent to the server) and the
irreversible actions' ``restored``. States are compared whole: they are the ``before``/``after``
that go into the audit chain; refusal texts are the ones an operator reads in the step's error.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from connectors._shared.actions import GONE
from connectors.vault.actions import (
    DELETE_USERPASS_LOGIN,
    DISABLE_ENTITY,
    REVOKE_TOKEN,
    ROTATE_TRANSIT_KEY,
)
from connectors.vault.clients import VaultApi
from connectors.vault.revoker import VaultRevoker
from connectors.vault.settings import parse_settings
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import Step, apply_step, read_state, undo_step
from tests.connectors.vault.conftest import VaultWorld


def _revoker(w: VaultWorld, *protected: str) -> VaultRevoker:
    assert w.api is not None
    return VaultRevoker(replace(w.api.settings, protected_entities=protected), w.api)


def _offline_revoker(*protected: str) -> VaultRevoker:
    """A revoker whose client is never built (``refuse`` and ``restored`` make no call)."""
    options = {"name": "bao", "type": "vault", "url": "https://bao.example.org:8200", "token_env": "T"}
    settings = parse_settings(SourceOptions({**options, "protected_entities": list(protected)}, "sources[1]"))
    return VaultRevoker(settings, VaultApi(settings))


def _entity_target(w: VaultWorld, user: str = "alice") -> ActionTarget:
    entity = w.entities[user]
    return ActionTarget(
        source="vault",
        system="vault",
        account_id=entity,
        username=user,
        credential_id=f"entity/{entity}",
        credential_kind=CredentialKind.ACCOUNT,
        account_uid=entity,
    )


def _target(account_id: str, username: str, account_uid: str) -> ActionTarget:
    return ActionTarget(
        source="vault",
        system="vault",
        account_id=account_id,
        username=username,
        credential_id=f"entity/{account_id}",
        credential_kind=CredentialKind.ACCOUNT,
        account_uid=account_uid,
    )


def _disabled(w: VaultWorld, user: str) -> bool:
    return bool(w.root.secrets.identity.read_entity(w.entities[user])["data"]["disabled"])


# --- DisableEntity.read: the states that go into the audit chain --------------------------------


def test_disable_entity_records_the_entity_name_and_a_lowercase_disabled_flag_before_and_after(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    revoker = _revoker(w)
    target = _entity_target(w)
    entity = w.entities["alice"]
    active = ResourceState(
        exists=True, active=True, data=(("entity", "alice"), ("disabled", "false")), identity=entity
    )
    disabled = ResourceState(
        exists=True, active=False, data=(("entity", "alice"), ("disabled", "true")), identity=entity
    )
    assert read_state(revoker, DISABLE_ENTITY, target) == active

    step = apply_step(revoker, DISABLE_ENTITY, target)

    assert step == Step(ActionStatus.APPLIED, before=active, after=disabled, started=True)
    assert _disabled(w, "alice") is True
    assert _disabled(w, "bob") is False
    undone = undo_step(revoker, DISABLE_ENTITY, target, prior=active)
    assert undone == Step(ActionStatus.RESTORED, before=disabled, after=active, started=True)
    assert _disabled(w, "alice") is False


# --- _entity: the entity's name as Vault reports it now is compared too -------------------------


def test_an_entity_renamed_to_a_protected_name_after_the_audit_is_refused_by_that_name(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    entity = w.entities["alice"]
    # The finding still says "alice"; the entity is now the break-glass identity.
    w.root.write_data(f"identity/entity/id/{entity}", data={"name": "break-glass"})
    revoker = _revoker(w, "Break-Glass")
    target = _entity_target(w)
    refusal = "refusing to touch protected Vault entity 'break-glass' (protected_entities)"

    with pytest.raises(RevokeError) as caught:
        read_state(revoker, DISABLE_ENTITY, target)
    assert str(caught.value) == refusal

    step = apply_step(revoker, DISABLE_ENTITY, target)
    assert step == Step(ActionStatus.FAILED, error=f"could not read the state before acting: {refusal}")
    assert _disabled(w, "alice") is False
    # Without the protection the same entity reads under its new name.
    assert read_state(_revoker(w), DISABLE_ENTITY, target).data == (
        ("entity", "break-glass"),
        ("disabled", "false"),
    )


# --- DisableEntity._set / _check: the identity re-read right before the write -----------------


def test_an_entity_deleted_between_the_read_and_the_write_is_target_changed_and_never_written(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    api = w.api
    assert api is not None
    revoker = _revoker(w)
    target = _entity_target(w)
    entity = w.entities["alice"]
    before = ResourceState(
        exists=True, active=True, data=(("entity", "alice"), ("disabled", "false")), identity=entity
    )

    def delete_it(_state: ResourceState) -> None:
        # Someone deletes the entity in the instant after the engine's first read.
        w.root.secrets.identity.delete_entity(entity)
        api.calls.clear()

    step = apply_step(revoker, DISABLE_ENTITY, target, on_intent=delete_it)

    assert step == Step(
        ActionStatus.TARGET_CHANGED,
        before=before,
        error=f"vault account 'alice' (identity {entity}) no longer exists",
        started=True,
    )
    # The re-check read it; nothing was written to the id of the entity that went away.
    assert api.calls == [("read", f"identity/entity/id/{entity}")]
    assert w.root.read(f"identity/entity/id/{entity}") is None


# --- DisableEntity._restore: an entity that is gone cannot be enabled again ---------------------


def test_undoing_disable_entity_for_an_entity_that_no_longer_exists_is_refused_naming_it(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    assert w.api is not None
    revoker = _revoker(w)
    target = _entity_target(w)
    entity = w.entities["alice"]
    prior = read_state(revoker, DISABLE_ENTITY, target)
    w.root.secrets.identity.delete_entity(entity)
    current = read_state(revoker, DISABLE_ENTITY, target)
    assert current == GONE
    restore = revoker.specs[DISABLE_ENTITY].restore
    assert restore is not None
    w.api.calls.clear()

    with pytest.raises(RevokeError) as caught:
        restore(target, current, prior)

    assert str(caught.value) == f"cannot undo disable_entity: entity {entity} no longer exists"
    assert w.api.calls == []


# --- VaultRevoker.refuse: every name is compared, and the error names the first one present -----


def test_refuse_matches_the_entity_id_of_a_finding_stored_without_an_identity() -> None:
    revoker = _offline_revoker("0B7C9E4A-1111-2222-3333-444455556666")
    target = _target("0b7c9e4a-1111-2222-3333-444455556666", "alice", "")

    with pytest.raises(RevokeError) as caught:
        revoker.refuse(target)

    assert str(caught.value) == "refusing to touch protected Vault entity 'alice' (protected_entities)"


def test_refuse_matches_the_identity_of_a_login_only_account() -> None:
    revoker = _offline_revoker("auth_userpass_1a2b3c/carol")
    target = _target("auth/userpass/users/carol", "carol", "auth_userpass_1a2b3c/carol")

    with pytest.raises(RevokeError) as caught:
        revoker.refuse(target)

    assert str(caught.value) == "refusing to touch protected Vault entity 'carol' (protected_entities)"
    _offline_revoker("someone-else").refuse(target)  # not protected: no error


def test_refuse_names_the_entity_name_it_was_given_before_the_login_name() -> None:
    revoker = _offline_revoker("root-ops")
    target = _target("e-1", "alice", "e-1")
    revoker.refuse(target)  # neither the login name nor the id is protected

    with pytest.raises(RevokeError) as caught:
        revoker.refuse(target, "", "Root-Ops")

    assert str(caught.value) == "refusing to touch protected Vault entity 'Root-Ops' (protected_entities)"


def test_refuse_says_question_mark_when_only_the_recorded_identity_matched() -> None:
    revoker = _offline_revoker("e-1")
    target = _target("", "", "e-1")

    with pytest.raises(RevokeError) as caught:
        revoker.refuse(target)

    assert str(caught.value) == "refusing to touch protected Vault entity '?' (protected_entities)"


# --- VaultRevoker.entity: ids that name no entity are not sent to the server --------------------


def test_entity_of_an_empty_id_is_none_without_asking_the_server(vault_world: VaultWorld) -> None:
    w = vault_world
    assert w.api is not None
    revoker = _revoker(w)
    w.api.calls.clear()

    # GET identity/entity/id/ is an unsupported operation on the server: it must not be sent.
    assert revoker.entity("") is None
    assert w.api.calls == []


def test_entity_of_a_login_only_account_id_is_none_without_asking_the_server(vault_world: VaultWorld) -> None:
    w = vault_world
    assert w.api is not None
    revoker = _revoker(w)
    w.api.calls.clear()

    assert revoker.entity("auth/userpass/users/carol") is None
    assert revoker.entity("auth_userpass_1a2b3c/carol") is None
    assert w.api.calls == []
    entity = revoker.entity(w.entities["alice"])
    assert entity is not None and entity["name"] == "alice"
    assert w.api.calls == [("read", f"identity/entity/id/{w.entities['alice']}")]


# --- NoUndo.restored (the vault irreversible actions) --------------------------------------------


@pytest.mark.parametrize("action", [REVOKE_TOKEN, DELETE_USERPASS_LOGIN, ROTATE_TRANSIT_KEY])
def test_an_irreversible_vault_action_never_reports_a_state_as_restored(action: str) -> None:
    spec = _offline_revoker().specs[action]
    state = ResourceState(exists=True, active=True, data=(("accessor", "a1"),), identity="e-1")

    assert spec.restore is None
    assert spec.restored(state, state) is False
