"""A leaver's entity merged into another one (``identity/entity/merge``, duplicates of one person
joined) against a real OpenBao server: the tokens issued to the merged entity still carry its old
id and keep working as the surviving entity. They are that entity's tokens: the audit must list
them and the revoker revoke them, not leave them out because their ``entity_id`` is the old one."""

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


@pytest.fixture
def merged(vault_world: VaultWorld) -> tuple[VaultWorld, Any, str, str]:
    """Alice logged in (a token of her entity), then her entity merged into ``alice-main``."""
    w = vault_world
    alice = w.login("alice")
    accessor = str(alice.lookup_token()["data"]["accessor"])
    old = w.entities["alice"]
    main = w.root.write_data(
        "identity/entity", data={"name": "alice-main", "metadata": {"email": "alice@example.com"}}
    )["data"]["id"]
    w.root.write_data(
        "identity/entity/merge", data={"from_entity_ids": [old], "to_entity_id": main, "force": True}
    )
    # As Vault shows it: the token still names the merged entity, which resolves to the survivor.
    token = w.root.write_data("auth/token/lookup-accessor", data={"accessor": accessor})["data"]
    assert token["entity_id"] == old
    assert old in w.root.read(f"identity/entity/id/{main}")["data"]["merged_entity_ids"]
    w.root.write_data("secret/data/app/db", data={"data": {"password": "x"}})
    alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True)  # still works
    w.run()
    return w, alice, accessor, str(main)


def test_a_token_of_an_entity_merged_into_the_leavers_entity_is_planned_for_revocation(
    merged: tuple[VaultWorld, Any, str, str],
) -> None:
    w, _alice, accessor, main = merged
    dry = w.engine().revoke(datetime.now(UTC), apply=False, person="E1")
    assert dry.plan is not None
    planned = {(a.action, a.credential_id) for a in dry.plan.actions}
    assert ("disable_entity", f"entity/{main}") in planned
    assert ("revoke_token", f"token/{accessor}") in planned


def test_the_token_of_a_merged_entity_is_revoked_for_real(merged: tuple[VaultWorld, Any, str, str]) -> None:
    w, alice, accessor, main = merged
    report = w.engine().revoke(datetime.now(UTC), apply=True, person="E1")
    statuses = {(o.action, o.credential_id): o.status for o in report.outcomes}
    assert statuses[("revoke_token", f"token/{accessor}")] == "applied", report.outcomes
    assert not _token_alive(w, accessor)
    # Undoing the entity's disabling does not bring the token back.
    w.engine().undo_person("E1", datetime.now(UTC), apply=True)
    assert w.root.read(f"identity/entity/id/{main}")["data"]["disabled"] is False
    with pytest.raises(hvac.exceptions.Forbidden):
        alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True)
