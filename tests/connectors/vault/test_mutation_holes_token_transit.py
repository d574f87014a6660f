"""The vault revoker's token and transit-key actions, one step at a time against a real OpenBao
server: the exact states ``revoke_token`` and ``rotate_transit_key`` read (they go into the audit
chain as a step's before/after), and the exact errors an operator sees when a target cannot be
acted on. Written for the mutation survivors of ``connectors/vault/actions.py`` (``_accessor``,
``RevokeToken._owner/read``, ``RotateTransitKey._split/read``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest

from connectors.vault.actions import REVOKE_TOKEN, ROTATE_TRANSIT_KEY, _accessor
from connectors.vault.clients import VaultApi
from connectors.vault.revoker import VaultRevoker
from connectors.vault.settings import VaultSettings
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.exposure import secret_detail
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, read_state
from tests.connectors.vault.conftest import VaultWorld

ENTITY_READER = 'path "identity/entity/id/*" { capabilities = ["read"] }\n'


def _revoker(w: VaultWorld, api: VaultApi | None = None) -> VaultRevoker:
    api = api or w.api
    assert api is not None
    return VaultRevoker(api.settings, api)


def _token_target(w: VaultWorld, accessor: str, person: str = "alice") -> ActionTarget:
    entity = w.entities[person]
    return ActionTarget(
        source="vault",
        system="vault",
        account_id=entity,
        username=person,
        credential_id=f"token/{accessor}",
        credential_kind=CredentialKind.ACCESS_KEY,
        account_uid=entity,
    )


def _token_alive(w: VaultWorld, accessor: str) -> bool:
    try:
        w.root.write_data("auth/token/lookup-accessor", data={"accessor": accessor})
    except hvac.exceptions.InvalidRequest:
        return False
    return True


def _key_target(credential_id: str, exposed_until: datetime | None) -> ActionTarget:
    detail = secret_detail(credential_id, exposed_until, True) if exposed_until else credential_id
    return ActionTarget(
        source="vault",
        system="vault",
        account_id=credential_id,
        username="alice",
        credential_id=credential_id,
        credential_kind=CredentialKind.TRANSIT_KEY,
        detail=detail,
        account_uid=credential_id,
    )


def _transit_key(w: VaultWorld, path: str, key_type: str, period: str | None = "720h") -> dict[str, Any]:
    """Create the key ``<mount>/keys/<name>`` (``path``), with its auto_rotate_period set unless
    ``period`` is None; the server's own read of it."""
    w.root.write_data(path, data={"type": key_type})
    if period is not None:
        w.root.write_data(f"{path}/config", data={"auto_rotate_period": period})
    return dict(w.root.read(path)["data"])


# --- _accessor -------------------------------------------------------------------------------


def test_accessor_takes_the_part_after_token_and_refuses_any_other_id_by_name() -> None:
    target = ActionTarget(
        source="vault",
        system="vault",
        account_id="e-1",
        username="alice",
        credential_id="token/abc123",
        credential_kind=CredentialKind.ACCESS_KEY,
        account_uid="e-1",
    )
    assert _accessor(target) == "abc123"
    with pytest.raises(RevokeError) as refused:
        _accessor(replace(target, credential_id="entity/e-1"))
    assert str(refused.value) == "'entity/e-1' is not a token accessor id (token/<accessor>)"


# --- revoke_token: read --------------------------------------------------------------------


def test_a_live_token_reads_as_active_with_its_accessor_and_its_entity_as_identity(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    accessor = str(w.login("alice").lookup_token()["data"]["accessor"])
    state = read_state(_revoker(w), REVOKE_TOKEN, _token_target(w, accessor))
    assert state == ResourceState(
        exists=True, active=True, data=(("accessor", accessor),), identity=w.entities["alice"]
    )


def test_a_revoked_token_of_an_existing_entity_reads_as_not_existing_with_the_entity_as_identity(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    accessor = str(w.login("alice").lookup_token()["data"]["accessor"])
    w.root.write_data("auth/token/revoke-accessor", data={"accessor": accessor})
    target = _token_target(w, accessor)
    gone = ResourceState(exists=False, active=False, identity=w.entities["alice"])
    assert read_state(_revoker(w), REVOKE_TOKEN, target) == gone
    # The engine's step: nothing to revoke, and it says why (not "already revoked").
    step = apply_step(_revoker(w), REVOKE_TOKEN, target)
    assert (step.status, step.before, step.after, step.message) == (
        ActionStatus.NOOP,
        gone,
        gone,
        "not found: nothing to revoke",
    )


def test_a_token_without_an_entity_reads_with_no_identity_and_is_left_alone_as_target_changed(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    # A token the root made: no entity behind it (Vault answers entity_id "").
    accessor = str(w.root.auth.token.create(policies=["default"])["auth"]["accessor"])
    target = _token_target(w, accessor)
    state = read_state(_revoker(w), REVOKE_TOKEN, target)
    assert state == ResourceState(exists=True, active=True, data=(("accessor", accessor),), identity=None)
    step = apply_step(_revoker(w), REVOKE_TOKEN, target)
    assert step.status is ActionStatus.TARGET_CHANGED
    assert step.error == f"vault account 'alice' (identity {w.entities['alice']}) no longer exists"
    assert _token_alive(w, accessor)


def test_a_token_lookup_the_tools_policy_does_not_allow_fails_with_the_servers_refusal(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    accessor = str(w.login("alice").lookup_token()["data"]["accessor"])
    # The tool's token may read entities but not look tokens up by accessor.
    w.root.sys.create_or_update_policy("entity-reader", ENTITY_READER)
    weak = w.root.auth.token.create(policies=["entity-reader"])["auth"]["client_token"]
    assert w.api is not None
    api = VaultApi(w.api.settings, hvac.Client(url=w.bao.address, token=weak))
    step = apply_step(_revoker(w, api), REVOKE_TOKEN, _token_target(w, accessor))
    assert step.status is ActionStatus.FAILED
    assert step.error == (
        "could not read the state before acting: vault write auth/token/lookup-accessor: "
        "permission denied (the tool's policy needs 'update' on auth/token/lookup-accessor)"
    )
    assert _token_alive(w, accessor)


# --- rotate_transit_key: the key's mount ---------------------------------------------------


def test_a_key_id_outside_the_transit_mounts_is_refused_listing_them_longest_first() -> None:
    settings = VaultSettings(name="vault", url="http://127.0.0.1:1", transit_mounts=("zz", "aaa"))
    revoker = VaultRevoker(settings, VaultApi(settings))  # refused before any call
    with pytest.raises(RevokeError) as refused:
        read_state(revoker, ROTATE_TRANSIT_KEY, _key_target("other/k", datetime.now(UTC)))
    assert str(refused.value) == "'other/k' is not a key of the transit_mounts ['aaa', 'zz']"


def test_a_key_in_a_transit_mount_below_another_listed_mount_is_read_from_the_longer_mount(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    assert w.api is not None
    # Transit mounted at enc/team; the config still lists enc as well (nothing is mounted there).
    w.root.sys.enable_secrets_engine("transit", path="enc/team")
    key = _transit_key(w, "enc/team/keys/k", "aes256-gcm96")
    settings = replace(w.api.settings, transit_mounts=("enc", "enc/team"))
    revoker = VaultRevoker(settings, VaultApi(settings, w.root))
    created = datetime.fromtimestamp(key["keys"]["1"], UTC)
    target = _key_target("enc/team/k", created + timedelta(minutes=1))
    state = read_state(revoker, ROTATE_TRANSIT_KEY, target)
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(
            ("latest_version", "1"),
            ("latest_created", created.isoformat()),
            ("min_decryption_version", "1"),
        ),
        identity="enc/team/k",
    )


# --- rotate_transit_key: read ----------------------------------------------------------------


def test_a_symmetric_key_reads_its_latest_version_its_creation_time_and_min_decryption_version(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    _transit_key(w, "transit/keys/sym", "aes256-gcm96")
    w.root.write_data("transit/keys/sym/rotate")
    w.root.write_data("transit/keys/sym/rotate")
    w.root.write_data("transit/keys/sym/config", data={"min_decryption_version": 2})
    # Exposed after its latest version was made: not rotated since, so still active.
    key = w.root.read("transit/keys/sym")["data"]
    # A symmetric key's versions are unix times, not {"creation_time": ...} documents.
    assert isinstance(key["keys"]["3"], int)
    created = datetime.fromtimestamp(key["keys"]["3"], UTC)
    state = read_state(
        _revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/sym", created + timedelta(hours=1))
    )
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(
            ("latest_version", "3"),
            ("latest_created", created.isoformat()),
            ("min_decryption_version", "2"),
        ),
        identity="transit/sym",
    )


def test_a_key_whose_latest_version_was_made_at_the_exposure_time_itself_is_still_active(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    key = _transit_key(w, "transit/keys/sym", "aes256-gcm96")
    created = datetime.fromtimestamp(key["keys"]["1"], UTC)
    # Only a version made strictly after the last exposure counts as rotated.
    state = read_state(_revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/sym", created))
    assert (state.exists, state.active) == (True, True)
    exposed_before = read_state(
        _revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/sym", created - timedelta(seconds=1))
    )
    assert (exposed_before.exists, exposed_before.active) == (True, False)


def test_the_latest_creation_time_is_recorded_in_utc_whatever_the_local_time_zone(
    vault_world: VaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = vault_world
    key = _transit_key(w, "transit/keys/signing", "ecdsa-p256")
    # Vault writes an asymmetric version's creation time as RFC 3339 UTC, with nanoseconds.
    stamp = str(key["keys"]["1"]["creation_time"])
    assert stamp.endswith("Z")
    monkeypatch.setenv("TZ", "JST-9")  # nine hours east of UTC
    time.tzset()
    try:
        state = read_state(
            _revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/signing", datetime(2000, 1, 1, tzinfo=UTC))
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    recorded = state.value("latest_created")
    assert recorded is not None and recorded.endswith("+00:00")
    assert recorded.startswith(stamp[:19])  # the same wall-clock second as the server's, in UTC


class _NoCreationTimes(VaultApi):
    """The server's own answer for a transit key, less its versions (and so their creation
    times): what a server that does not report them would send."""

    def read(self, path: str) -> dict[str, Any] | None:
        data = super().read(path)
        if data is not None and "/keys/" in path:
            data = {**data, "keys": {}}
        return data


def test_a_key_whose_latest_creation_time_is_unknown_reads_as_not_rotated_with_an_empty_time(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    assert w.api is not None
    _transit_key(w, "transit/keys/sym", "aes256-gcm96")
    revoker = _revoker(w, _NoCreationTimes(w.api.settings, w.root))
    state = read_state(
        revoker, ROTATE_TRANSIT_KEY, _key_target("transit/sym", datetime(2000, 1, 1, tzinfo=UTC))
    )
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(("latest_version", "1"), ("latest_created", ""), ("min_decryption_version", "1")),
        identity="transit/sym",
    )


def test_a_key_without_auto_rotate_period_is_refused_as_a_rotate_task_for_a_person(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    key = _transit_key(w, "transit/keys/manual", "aes256-gcm96", period=None)
    assert key["auto_rotate_period"] == 0  # how the server says "not set"
    with pytest.raises(RevokeError) as refused:
        read_state(_revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/manual", datetime.now(UTC)))
    assert str(refused.value) == (
        "transit key transit/manual has no auto_rotate_period: rotate it by hand (rotate task)"
    )


def test_a_key_target_without_a_recorded_exposure_time_is_refused(vault_world: VaultWorld) -> None:
    w = vault_world
    _transit_key(w, "transit/keys/sym", "aes256-gcm96")
    with pytest.raises(RevokeError) as refused:
        read_state(_revoker(w), ROTATE_TRANSIT_KEY, _key_target("transit/sym", None))
    assert str(refused.value) == "no exposure time recorded for transit/sym: run the audit again"
