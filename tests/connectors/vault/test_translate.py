"""Raw payloads to records, no server: audit-log lines as OpenBao 2.7 wrote them
(``fixtures/audit.jsonl``, captured verbatim: values HMAC'd), and API payloads
(``fixtures/payloads.json``: an entity, the entity list, KV v2 metadata, two transit keys, a
token lookup)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.vault.audit_entries import (
    MalformedEntry,
    actor_of,
    entry_events,
    kv_secret_path,
    made_at,
    split_fingerprint,
)
from connectors.vault.translate import (
    entity_account,
    entity_credential,
    kv1_state,
    kv2_state,
    token_credential,
    transit_state,
)
from offboard_audit.core.exposure import ObjectRef
from offboard_audit.core.records import AccountKind, CredentialKind, ExposureHow

FIXTURES = Path(__file__).parent / "fixtures"
LINES = (FIXTURES / "audit.jsonl").read_bytes().splitlines()
PAYLOADS = json.loads((FIXTURES / "payloads.json").read_text())
HUMAN = ("userpass", "ldap", "oidc")


def entry(kind: str, operation: str, path: str, nth: int = 0) -> dict[str, Any]:
    found = [
        e
        for e in map(json.loads, LINES)
        if e["type"] == kind and e["request"].get("operation") == operation and e["request"]["path"] == path
    ]
    return found[nth]  # type: ignore[no-any-return]


def events(e: dict[str, Any], **kw: Any) -> list[tuple[str, str, str, str, str]]:
    return [
        (x.target.kind.value, x.target.object_id, x.how.value, x.action, x.scope)
        for x in entry_events(e, "vault", "s", **kw)
    ]


def test_every_captured_line_translates_and_only_the_leavers_relevant_calls_become_events() -> None:
    found = [
        (
            x.actor.names[0] if x.actor.names else x.actor.identity,
            x.target.object_id,
            x.target.fingerprint,
            x.how.value,
            x.action,
        )
        for line in LINES
        for x in entry_events(json.loads(line), "vault", "s")
    ]
    # A KV target is the path as requested, with the secret it names on a KV v2 mount ("kv2:"
    # alone: none): the entry does not say the mount's version, the inventory reads it.
    assert found == [
        # The root token's write of the secret is an event too (its actor is no person).
        ("token:token", "secret/data/app/db", "kv2:app/db", "created", "kv create"),
        ("alice", "secret/data/app/db", "kv2:app/db", "read", "kv read"),
        ("alice", "secret/data/app/api", "kv2:app/api", "created", "kv create"),
        ("alice", "secret/metadata/app/db", "kv2:", "read", "kv read"),
        ("alice", "kv1/legacy", "kv2:", "created", "kv create"),
        ("alice", "kv1/legacy", "kv2:", "read", "kv read"),
        ("alice", "transit/signing-key", "", "changed-access", "transit create key (exportable=true)"),
        # Sent by the CLI as a string, the flag is HMAC'd: known to be set, value unknown.
        ("alice", "transit/cli-key", "", "changed-access", "transit create key (exportable=?)"),
        ("alice", "transit/signing-key", "", "exported", "transit export signing-key (versions 1)"),
        (
            "alice",
            "transit/signing-key",
            "",
            "changed-access",
            "transit config (allow_plaintext_backup=true)",
        ),
        ("alice", "transit/signing-key", "", "exported", "transit backup (all versions)"),
    ]


def test_a_kv_read_carries_the_request_id_time_scope_and_the_entity_with_its_names() -> None:
    e = entry("response", "read", "secret/data/app/db")
    (event,) = entry_events(e, "vault", "stream-1")
    assert event.event_id == e["request"]["id"]
    assert event.at == datetime.fromisoformat(e["time"])
    assert event.at.tzinfo is not None
    assert (event.scope, event.stream, event.target.scope) == ("secret", "stream-1", "secret")
    assert event.actor.identity == e["auth"]["entity_id"] == event.actor.account_id
    # Strongest first: the userpass username metadata, the display name without its prefix.
    assert event.actor.names == ("alice", "userpass-alice")


def test_the_request_entry_a_refused_call_and_an_export_of_nothing_are_no_events() -> None:
    assert events(entry("request", "read", "secret/data/app/db")) == []
    denied = entry("response", "read", "secret/data/app/db", nth=1)  # carol, permission denied
    assert denied["error"] and events(denied) == []
    missing = entry("response", "read", "transit/export/signing-key/nokey")
    assert "error" not in missing and events(missing) == []  # 404: no keys in the response
    assert events(entry("response", "update", "transit/sign/signing-key")) == []
    assert events(entry("response", "update", "transit/keys/signing-key/rotate")) == []


def test_a_kv_call_answered_with_an_http_error_status_is_no_read() -> None:
    # OpenBao logs a call that found nothing (a KV v1-style path on a v2 mount) with no
    # ``error``, only ``http_status_code`` in the response data: no value was handed over.
    e = entry("response", "read", "secret/data/app/db")
    response = {**e["response"], "data": {"http_status_code": 404, "http_raw_body": "{}"}}
    assert events({**e, "request": {**e["request"], "path": "secret/app"}, "response": response}) == []
    assert len(events({**e, "request": {**e["request"], "path": "secret/app"}})) == 1


@pytest.mark.parametrize(
    ("path", "on_v1", "on_v2"),
    [
        ("secret/data/app/db", "data/app/db", "app/db"),
        ("secret/metadata/app/db", "metadata/app/db", None),
        ("secret/subkeys/app/db", "subkeys/app/db", None),
        ("secret/config", "config", None),
        ("secret/legacy", "legacy", None),
    ],
)
def test_a_kv_read_names_the_path_requested_on_a_v1_mount_and_only_a_data_path_on_a_v2_mount(
    path: str, on_v1: str, on_v2: str | None
) -> None:
    e = entry("response", "read", "secret/data/app/db")
    (event,) = entry_events({**e, "request": {**e["request"], "path": path}}, "vault", "s")
    assert (event.target.object_id, event.how) == (path, ExposureHow.READ)
    assert (kv_secret_path(event.target, "1"), kv_secret_path(event.target, "2")) == (on_v1, on_v2)


def test_a_kv_event_stored_before_the_path_was_kept_names_the_secret_it_was_stored_as() -> None:
    # Its object_id is already the v2 reading: a read of secret/data/config was stored as this.
    stored = ObjectRef("secret", CredentialKind.KV_SECRET, "secret/config")
    assert (kv_secret_path(stored, "1"), kv_secret_path(stored, "2")) == ("config", "config")


def test_config_changes_without_exportable_or_plaintext_backup_are_no_events() -> None:
    second = entry("response", "update", "transit/keys/signing-key/config", nth=1)
    assert "min_decryption_version" in second["request"]["data"]
    assert events(second) == []


def test_export_names_the_versions_that_left_never_the_key_material() -> None:
    e = entry("response", "read", "transit/export/signing-key/signing-key")
    (event,) = entry_events(e, "vault", "s")
    assert event.how is ExposureHow.EXPORTED and event.action.endswith("(versions 1)")
    material = e["response"]["data"]["keys"]["1"]
    assert material.startswith("hmac-sha256:")
    assert material not in repr(event) and "hmac-sha256" not in repr(event)


def test_an_entity_less_token_is_no_person_and_carries_no_names() -> None:
    e = entry("response", "create", "secret/data/app/db")
    actor = actor_of(e["auth"])
    assert (actor.identity, actor.account_id, actor.names) == ("token:token", "", ())


def test_another_namespace_is_ignored_and_servers_without_mount_point_use_the_configured_mounts() -> None:
    e = entry("response", "read", "secret/data/app/db")
    other = {**e, "request": {**e["request"], "namespace": {"id": "x1", "path": "team-a/"}}}
    assert events(other) == []
    assert events(other, namespace="team-a") == [
        ("kv_secret", "secret/data/app/db", "read", "kv read", "secret")
    ]
    old = {**e, "request": {k: v for k, v in e["request"].items() if k not in ("mount_point", "mount_type")}}
    assert events(old) == []
    assert events(old, mounts={"secret": "kv"}) == [
        ("kv_secret", "secret/data/app/db", "read", "kv read", "secret")
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2]",
        '{"type": "response"}',
        '{"time": "2026-01-01T00:00:00Z", "type": "response", "request": "x"}',
        '{"time": "2026-01-01T00:00:00Z", "type": "response", "request": {"operation": "read"}}',
    ],
    ids=["not-an-object", "no-time", "request-not-an-object", "request-without-path"],
)
def test_lines_that_are_no_audit_entry_are_malformed(raw: str) -> None:
    with pytest.raises(MalformedEntry):
        entry_events(json.loads(raw), "vault", "s")


def test_a_relevant_entry_without_its_request_id_or_time_is_malformed() -> None:
    e = entry("response", "read", "secret/data/app/db")
    no_id = {**e, "request": {k: v for k, v in e["request"].items() if k != "id"}}
    with pytest.raises(MalformedEntry, match="request without an id"):
        entry_events(no_id, "vault", "s")
    with pytest.raises(MalformedEntry, match="time"):
        entry_events({**e, "time": "yesterday"}, "vault", "s")


# --- identity ---------------------------------------------------------------------------------


def test_an_entity_is_an_account_matched_by_metadata_and_its_alias_with_the_entity_id_as_identity() -> None:
    entity = PAYLOADS["entity"]
    account = entity_account("vault", "root", entity, HUMAN)
    assert (account.account_id, account.uid) == (entity["id"], entity["id"])
    assert account.username == "alice" and account.display_name == "alice"
    assert account.emails == ("alice@example.com",)
    assert ("employee_id", "E1") in account.attributes
    assert ("alias", "auth/userpass/alice") in account.attributes
    assert account.enabled and account.kind is AccountKind.HUMAN
    cred = entity_credential("vault", "root", entity)
    assert (cred.kind, cred.credential_id, cred.active) == (
        CredentialKind.ACCOUNT,
        f"entity/{entity['id']}",
        True,
    )
    disabled = entity_account("vault", "root", {**entity, "disabled": True}, HUMAN)
    assert not disabled.enabled


def test_an_entity_with_machine_aliases_only_is_a_service_and_email_aliases_are_emails() -> None:
    entity = PAYLOADS["entity"]
    machine = {**entity, "aliases": [{**entity["aliases"][0], "mount_type": "approle", "name": "ci-role"}]}
    assert entity_account("vault", "root", machine, HUMAN).kind is AccountKind.SERVICE
    oidc = {
        **entity,
        "metadata": None,
        "name": "entity_1234",
        "aliases": [
            {
                **entity["aliases"][0],
                "mount_type": "oidc",
                "mount_path": "auth/oidc/",
                "name": "al@example.com",
            },
            {**entity["aliases"][0], "mount_type": "ldap", "mount_path": "auth/ldap/", "name": "asmith"},
        ],
    }
    account = entity_account("vault", "root", oidc, HUMAN)
    # The ldap name comes before oidc in the human types order; the email alias is an email.
    assert account.username == "asmith" and account.emails == ("al@example.com",)


def test_a_token_is_an_access_key_of_its_entity_named_by_accessor() -> None:
    info = PAYLOADS["token_lookup"]
    cred = token_credential("vault", "root", info)
    assert (cred.account_id, cred.credential_id, cred.kind) == (
        info["entity_id"],
        f"token/{info['accessor']}",
        CredentialKind.ACCESS_KEY,
    )
    assert cred.created_at == datetime.fromtimestamp(info["creation_time"], UTC)
    assert "auth/userpass/login/alice" in cred.detail and "expires 20" in cred.detail


# --- inventory --------------------------------------------------------------------------------


def test_kv2_metadata_gives_the_current_versions_time_owner_and_signing_from_custom_metadata() -> None:
    meta = PAYLOADS["kv2_metadata"]
    now = datetime.now(UTC)
    state = kv2_state("vault", "secret", "app/db", meta, now)
    created = datetime.fromisoformat(meta["versions"]["1"]["created_time"])
    assert (state.secret_id, state.scope, state.kind) == ("secret/app/db", "secret", CredentialKind.KV_SECRET)
    assert state.current_version_created_at == created and state.enabled and not state.signing
    assert state.oldest_enabled_version_created_at is None  # older KV versions hold replaced values
    tagged = {**meta, "custom_metadata": {"Owner": "x", "owner": "sec@example.com", "purpose": "Signing"}}
    s2 = kv2_state("vault", "secret", "app/db", tagged, now, signing=[("purpose", "signing")])
    assert (s2.owner, s2.signing) == ("sec@example.com", True)
    deleted = {
        **meta,
        "versions": {
            "1": {**meta["versions"]["1"], "deletion_time": (now - timedelta(seconds=1)).isoformat()}
        },
    }
    assert not kv2_state("vault", "secret", "app/db", deleted, now).enabled
    destroyed = {**meta, "versions": {"1": {**meta["versions"]["1"], "destroyed": True}}}
    assert not kv2_state("vault", "secret", "app/db", destroyed, now).enabled


def test_kv1_has_no_dates_so_nothing_proves_a_rotation() -> None:
    state = kv1_state("vault", "kv1", "legacy")
    assert state.current_version_created_at is None and state.exportable


def test_transit_keys_give_latest_and_oldest_usable_versions_for_both_key_shapes() -> None:
    signing = PAYLOADS["transit_signing_key"]  # asymmetric: versions carry creation_time
    state = transit_state("vault", "transit", signing)
    times = {int(v): datetime.fromisoformat(k["creation_time"]) for v, k in signing["keys"].items()}
    assert signing["latest_version"] == 2 and signing["min_decryption_version"] == 1
    assert state.current_version_created_at == times[2]
    assert state.oldest_enabled_version_created_at == times[1]  # v1 still verifies
    assert state.signing and state.exportable and not state.rotation_configured
    assert "min_decryption_version=1" in state.name
    raised = transit_state(
        "vault",
        "transit",
        {**signing, "min_decryption_version": 2, "keys": {"2": signing["keys"]["2"]}},
    )
    assert raised.oldest_enabled_version_created_at == times[2]
    aes = PAYLOADS["transit_aes_key"]  # symmetric: versions are unix seconds
    a = transit_state("vault", "transit", {**aes, "auto_rotate_period": 86400})
    assert a.current_version_created_at == datetime.fromtimestamp(aes["keys"]["1"], UTC)
    assert a.rotation_configured


# --- what a leaver leaves behind: AppRole secret-ids, PKI certificates --------------------------

APPROLE_PKI = (FIXTURES / "audit-approle-pki.jsonl").read_bytes().splitlines()
PLAIN = json.loads((FIXTURES / "approle-pki-plain.json").read_text())


def test_a_secret_id_and_certificates_made_by_a_person_are_persistence_events_named_by_their_hmac() -> None:
    found = [x for line in APPROLE_PKI for x in entry_events(json.loads(line), "vault", "s")]
    assert [(x.target.kind, x.target.scope, x.action, x.how) for x in found] == [
        (CredentialKind.SERVICE_ACCOUNT_KEY, "auth/approle", "approle secret-id", ExposureHow.CREATED),
        (CredentialKind.SIGNING_CERTIFICATE, "pki", "pki issue", ExposureHow.CREATED),
        (CredentialKind.SIGNING_CERTIFICATE, "pki", "pki sign", ExposureHow.CREATED),
    ]
    secret_id, issued, signed = (x.target for x in found)
    assert secret_id.object_id == f"auth/approle/role/ci/secret-id/{PLAIN['secret_id_accessor_hash']}"
    assert secret_id.owner == "approle role ci"
    # The 24h secret_id_ttl of the response gives its expiry; the plain accessor is never in the log.
    value, expires = split_fingerprint(secret_id.fingerprint)
    assert value == PLAIN["secret_id_accessor_hash"]
    assert expires is not None and expires - found[0].at < timedelta(hours=24, seconds=1)
    # When it was made, as the log tells (the entry's time): the inventory rules out by it.
    assert made_at(secret_id.fingerprint) == found[0].at and made_at(issued.fingerprint) is None
    assert PLAIN["secret_id_accessor"] not in b"".join(APPROLE_PKI).decode()
    assert issued.object_id == f"pki/cert/{PLAIN['issued_serial_hash']}" and issued.owner == "pki role web"
    assert split_fingerprint(issued.fingerprint) == (
        PLAIN["issued_serial_hash"],
        datetime.fromtimestamp(PLAIN["issued_expiration"], UTC),
    )
    assert signed.object_id == f"pki/cert/{PLAIN['signed_serial_hash']}"


def test_display_names_of_other_auth_methods_give_the_name_without_the_method() -> None:
    oidc = actor_of({"entity_id": "e1", "display_name": "oidc-alice@example.com", "metadata": {"role": "r"}})
    assert oidc.names == ("alice@example.com", "oidc-alice@example.com")
    ldap = actor_of({"entity_id": "e2", "display_name": "ldap-asmith", "metadata": {"username": "asmith"}})
    assert ldap.names == ("asmith", "ldap-asmith")
    # An HMAC'd or missing value is never a name.
    hidden = actor_of({"entity_id": "e3", "display_name": "hmac-sha256:abc", "metadata": {"username": 5}})
    assert hidden.names == ()
