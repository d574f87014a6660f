"""The vault revoker against a real OpenBao server, through the revocation engine: every change
is made for real and verified by reading the server again, never by trusting a call's answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import hvac
import pytest

from tests.connectors.vault.conftest import VaultWorld


def _token_alive(w: VaultWorld, accessor: str) -> bool:
    try:
        w.root.write_data("auth/token/lookup-accessor", data={"accessor": accessor})
    except hvac.exceptions.InvalidRequest:
        return False
    return True


def _outcomes(report: Any) -> list[tuple[str, str]]:
    return [(o.action, o.status) for o in report.outcomes]


@pytest.fixture
def alice_logged_in(vault_world: VaultWorld) -> tuple[VaultWorld, Any, str]:
    alice = vault_world.login("alice")
    accessor = str(alice.lookup_token()["data"]["accessor"])
    vault_world.run()
    return vault_world, alice, accessor


def test_the_plan_says_which_actions_cannot_be_undone(alice_logged_in: tuple[VaultWorld, Any, str]) -> None:
    w, _alice, accessor = alice_logged_in
    dry = w.engine().revoke(datetime.now(UTC), apply=False, person="E1")
    assert dry.plan is not None
    planned = {(a.action, a.credential_id, a.reversible) for a in dry.plan.actions}
    assert planned == {
        ("disable_entity", f"entity/{w.entities['alice']}", True),
        ("delete_userpass_login", "auth/userpass/users/alice", False),
        ("revoke_token", f"token/{accessor}", False),
    }
    token = next(a for a in dry.plan.actions if a.action == "revoke_token")
    assert "IRREVERSIBLE" in token.description and "undoing disable_entity" in token.description
    assert _outcomes(dry) == [
        (a, "dry-run") for a in ("disable_entity", "delete_userpass_login", "revoke_token")
    ]
    # A dry run changes nothing.
    assert not w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"]
    assert _token_alive(w, accessor)


def test_revoke_disables_the_entity_deletes_the_userpass_login_and_revokes_the_token_for_real(
    alice_logged_in: tuple[VaultWorld, Any, str],
) -> None:
    w, alice, accessor = alice_logged_in
    now = datetime.now(UTC)
    applied = w.engine().revoke(now, apply=True, person="E1")
    assert applied.refused is None
    assert _outcomes(applied) == [
        ("disable_entity", "applied"),
        ("delete_userpass_login", "applied"),
        ("revoke_token", "applied"),
    ]
    # Read back from the server, as an operator would.
    assert w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"] is True
    assert w.root.read("auth/userpass/users/alice") is None
    assert not _token_alive(w, accessor)
    with pytest.raises(hvac.exceptions.Forbidden):
        alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        w.login("alice")
    # Bob is untouched.
    assert not w.root.secrets.identity.read_entity(w.entities["bob"])["data"]["disabled"]
    assert w.root.read("auth/userpass/users/bob") is not None
    # Idempotent: nothing is planned or written the second time.
    again = w.engine().revoke(now, apply=True, person="E1")
    assert again.outcomes == ()


def test_undo_re_enables_the_entity_and_cannot_bring_back_the_token_or_password(
    alice_logged_in: tuple[VaultWorld, Any, str],
) -> None:
    w, _alice, accessor = alice_logged_in
    engine = w.engine()
    engine.revoke(datetime.now(UTC), apply=True, person="E1")
    undone = engine.undo_person("E1", datetime.now(UTC), apply=True)
    statuses = dict(_outcomes(undone))
    assert statuses["disable_entity"] == "restored"
    assert w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"] is False
    # Irreversible by design: said so in the plan, and still so after the undo.
    assert not _token_alive(w, accessor)
    assert w.root.read("auth/userpass/users/alice") is None


def test_an_entity_deleted_and_recreated_with_the_same_name_is_target_changed_and_left_alone(
    alice_logged_in: tuple[VaultWorld, Any, str],
) -> None:
    w, _alice, accessor = alice_logged_in
    old = w.entities["alice"]
    w.root.secrets.identity.delete_entity(old)
    new = w.person("alice", "alice@example.com", "E1")  # the same name, alias and login
    assert new != old
    report = w.engine().revoke(datetime.now(UTC), apply=True, person="E1")
    assert _outcomes(report) == [
        ("disable_entity", "target-changed"),
        ("delete_userpass_login", "target-changed"),
        ("revoke_token", "target-changed"),
    ]
    errors = {o.action: o.error or "" for o in report.outcomes}
    assert old in errors["disable_entity"] and "no longer exists" in errors["disable_entity"]
    assert f"now has identity {new}" in errors["delete_userpass_login"]
    # Nothing of the new entity was touched.
    assert w.root.secrets.identity.read_entity(new)["data"]["disabled"] is False
    assert w.root.read("auth/userpass/users/alice") is not None
    assert _token_alive(w, accessor)


def test_a_protected_entity_is_refused_before_any_change(
    alice_logged_in: tuple[VaultWorld, Any, str],
) -> None:
    w, _alice, accessor = alice_logged_in
    report = w.engine(protected_entities=["Alice"]).revoke(datetime.now(UTC), apply=True, person="E1")
    assert {status for _a, status in _outcomes(report)} == {"failed"}
    assert all("protected_entities" in (o.error or "") for o in report.outcomes)
    assert w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"] is False
    assert w.root.read("auth/userpass/users/alice") is not None
    assert _token_alive(w, accessor)


def test_a_login_of_an_entity_protected_by_its_name_is_refused_like_the_entity(
    vault_world: VaultWorld,
) -> None:
    # The break-glass entity is protected by its entity name; its userpass login is "alice"
    # (the name the audit matches the leaver by), so only the entity's name says it is protected.
    w = vault_world
    w.root.write_data(f"identity/entity/id/{w.entities['alice']}", data={"name": "break-glass"})
    accessor = str(w.login("alice").lookup_token()["data"]["accessor"])
    w.run()
    report = w.engine(protected_entities=["Break-Glass"]).revoke(datetime.now(UTC), apply=True, person="E1")
    assert dict(_outcomes(report)) == {
        "disable_entity": "failed",
        "delete_userpass_login": "failed",
        "revoke_token": "failed",
    }
    refusal = "refusing to touch protected Vault entity 'break-glass' (protected_entities)"
    assert all(refusal in (o.error or "") for o in report.outcomes), report.outcomes
    assert w.root.read("auth/userpass/users/alice") is not None
    assert w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"] is False
    assert _token_alive(w, accessor)
