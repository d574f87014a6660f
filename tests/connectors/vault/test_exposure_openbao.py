"""What a leaver could carry away from a real OpenBao server: full audits through the pipeline
(HR file + ``vault`` source with the server's audit log), findings read back from the store.

Alice (E1) has left; Bob (E2) is active. They act through real userpass logins; each call a test
relies on is waited for in the audit log by its request id.
"""

from __future__ import annotations

import gzip
import json
import shutil
from typing import Any

from offboard_audit.core.records import FindingStatus
from tests.connectors.vault.conftest import VaultWorld

SECRET = "secret/app/db"
KEY = "transit/signing-key"


def _leaver_reads_and_exports(w: VaultWorld) -> dict[str, str]:
    """Root stores a secret; Alice reads it, creates an exportable signing key and exports it."""
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    alice = w.login("alice")
    ids = {"read": w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))}
    alice.write_data(
        f"{KEY.replace('transit/', 'transit/keys/')}", data={"type": "ecdsa-p256", "exportable": True}
    )
    ids["export"] = w.seen(alice.read("transit/export/signing-key/signing-key"))
    return ids


def _open(w: VaultWorld) -> set[tuple[str, str, str, str]]:
    return {
        (rule, person, secret, f.severity.value)
        for (rule, person, secret), f in w.exposure().items()
        if f.status is FindingStatus.OPEN
    }


def test_leaver_who_read_a_secret_and_exported_a_signing_key_gets_exact_findings_critical_for_the_export(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    ids = _leaver_reads_and_exports(w)
    result = w.run()
    assert result.status.value == "done", result.sources
    assert _open(w) == {
        ("secret-exposed-to-leaver", "E1", SECRET, "high"),
        ("secret-exposed-to-leaver", "E1", KEY, "critical"),
    }
    found = w.exposure()
    read = found[("secret-exposed-to-leaver", "E1", SECRET)]
    assert [(a.how.value, a.event_id, a.action) for a in read.exposure] == [("read", ids["read"], "kv read")]
    assert read.account.account_id == w.entities["alice"] and read.account.uid == w.entities["alice"]
    assert read.account.scope == "exposure:secret"
    assert (read.owner.via.value, read.owner.email) == ("manager", "boss@example.com")  # type: ignore[union-attr]
    export = found[("secret-exposed-to-leaver", "E1", KEY)]
    assert [(a.how.value, a.action) for a in export.exposure] == [
        ("changed-access", "transit create key (exportable=true)"),
        ("exported", "transit export signing-key (versions 1)"),
    ]
    assert export.exposure[-1].event_id == ids["export"]
    assert export.credential.kind.value == "transit_key"  # type: ignore[union-attr]
    # Her own Vault credentials: the entity, the userpass login, the token of her logins.
    accounts = {
        (f.rule.value, f.credential.kind.value)
        for f in result.findings
        if f.rule.value not in ("secret-exposed-to-leaver", "persistence-left-by-leaver") and f.credential
    }
    assert accounts == {
        ("credential-after-termination", "account"),
        ("credential-after-termination", "password"),
        ("credential-after-termination", "access_key"),
    }
    run = next(s for s in result.sources if s.name == "vault/exposure")
    assert dict(run.counts)["departed_actors"] == 1 and run.failed_scopes == ()


def test_rotation_alone_leaves_the_export_open_raising_min_decryption_version_resolves_it(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    _leaver_reads_and_exports(w)
    w.run()
    key = ("secret-exposed-to-leaver", "E1", KEY)
    w.root.write_data("transit/keys/signing-key/rotate")
    w.seen(w.root.read("transit/keys/signing-key"))
    w.run()
    still = w.exposure()[key]
    # A new version is the latest, but version 1 (exported) still verifies signatures.
    assert still.status is FindingStatus.OPEN and still.severity.value == "critical"
    assert "min_decryption_version=1, latest_version=2" in still.credential.detail  # type: ignore[union-attr]
    w.root.write_data("transit/keys/signing-key/config", data={"min_decryption_version": 2})
    w.run()
    assert w.exposure()[key].status is FindingStatus.RESOLVED
    # The KV secret was not touched: still open until someone writes a new version.
    assert w.exposure()[("secret-exposed-to-leaver", "E1", SECRET)].status is FindingStatus.OPEN
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "n3w"})
    w.run()
    assert w.exposure()[("secret-exposed-to-leaver", "E1", SECRET)].status is FindingStatus.RESOLVED


def test_an_active_persons_reads_and_exports_give_nothing(vault_world: VaultWorld) -> None:
    w = vault_world
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    bob = w.login("bob")
    w.seen(bob.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    bob.write_data("transit/keys/bobs-key", data={"type": "ecdsa-p256", "exportable": True})
    w.seen(bob.read("transit/export/signing-key/bobs-key"))
    result = w.run()
    run = next(s for s in result.sources if s.name == "vault/exposure")
    assert dict(run.counts)["events_new"] == 4  # root's write, Bob's read, creation and export
    assert w.exposure() == {}


def test_the_tool_never_reads_a_secret_value_or_key_material(vault_world: VaultWorld) -> None:
    w = vault_world
    _leaver_reads_and_exports(w)
    w.root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    alice = w.login("alice")
    alice.write_data("kv1/legacy", data={"value": "v"})
    w.seen(alice.read("kv1/legacy"))
    result = w.run(kv_mounts=["secret", "kv1"])
    assert ("secret-exposed-to-leaver", "E1", "kv1/legacy", "high") in _open(w), result.sources
    assert w.api is not None
    paths = [p for _op, p in w.api.calls]
    assert not [p for p in paths if p.startswith(("secret/data/", "transit/export/", "transit/backup/"))]
    assert ("read", "kv1/legacy") not in w.api.calls
    assert ("list", "kv1/") in w.api.calls  # a v1 secret's existence comes from its folder's listing
    assert ("read", "secret/metadata/app/db") in w.api.calls and (
        "read",
        "transit/keys/signing-key",
    ) in w.api.calls


def test_on_a_kv_v1_mount_every_path_read_is_a_secret_on_a_kv_v2_mount_only_data_paths_are(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    w.root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    v1 = ("kv1/config", "kv1/metadata/db", "kv1/data/app", "kv1/subkeys", "kv1/plain")
    for path in v1:
        w.root.write_data(path, data={"value": "v"})
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    alice = w.login("alice")
    for path in v1:
        w.seen(alice.read(path))
    # The v2 mount's metadata, subkeys and config: no value handed over.
    for path in ("secret/metadata/app/db", "secret/subkeys/app/db", "secret/config"):
        w.seen(alice.read(path))
    result = w.run(kv_mounts=["secret", "kv1"])
    assert result.status.value == "done", result.sources
    assert _open(w) == {("secret-exposed-to-leaver", "E1", path, "high") for path in v1}


def test_incremental_reruns_read_only_new_lines(vault_world: VaultWorld) -> None:
    w = vault_world
    _leaver_reads_and_exports(w)

    def lines_read(result: Any) -> int:
        return int(dict(next(s for s in result.sources if s.name == "vault/exposure").counts)["events_read"])

    def offset() -> int:
        (cp,) = w.store().exposure_checkpoints("vault").values()
        return int(json.loads(cp.position)["offset"])

    first = lines_read(w.run())
    after_first = offset()
    log = w.bao.audit_log.read_bytes()
    assert first == log[:after_first].count(b"\n") > 0
    bob = w.login("bob")
    w.seen(bob.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    second = lines_read(w.run())
    after_second = offset()
    log = w.bao.audit_log.read_bytes()
    # Exactly the lines after the first run's checkpoint (Bob's, and the tool's own calls), none
    # of the earlier ones: together the two runs read each line up to the checkpoint once.
    assert second == log[after_first:after_second].count(b"\n") > 0
    assert first + second == log[:after_second].count(b"\n")


def test_a_rotated_log_and_its_gzip_copy_are_read_once(vault_world: VaultWorld) -> None:
    w = vault_world
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    w.run()
    alice = w.login("alice")
    read_id = w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    # logrotate: rename + SIGHUP (the server reopens audit.log), then compress the rotated file.
    rotated = w.bao.rotate_audit_log("audit.log.1")
    with open(rotated, "rb") as src, gzip.open(rotated.with_name("audit.log.1.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copystat(rotated, rotated.with_name("audit.log.1.gz"))
    rotated.unlink()
    w.root.sys.enable_secrets_engine("kv", path="later")  # something in the new file
    result = w.run()
    run = next(s for s in result.sources if s.name == "vault/exposure")
    assert dict(run.counts)["events_new"] == 1 and run.failed_scopes == ()
    finding = w.exposure()[("secret-exposed-to-leaver", "E1", SECRET)]
    assert [a.event_id for a in finding.exposure] == [read_id]
    again = next(s for s in w.run().sources if s.name == "vault/exposure")
    # Only the tool's own read of secret/metadata/app/db in the run before is new (a KV path: the
    # inventory decides by the mount's version whether it handed a value over; on v2 it did not).
    assert dict(again.counts)["events_new"] == 1
    assert [a.event_id for a in w.exposure()[("secret-exposed-to-leaver", "E1", SECRET)].exposure] == [
        read_id
    ]


def test_a_malformed_line_is_a_failed_scope_and_resolves_nothing(vault_world: VaultWorld) -> None:
    w = vault_world
    _leaver_reads_and_exports(w)
    w.run()
    with open(w.bao.audit_log, "ab") as fh:
        fh.write(b'{"time":"2026-01-01T00:00:00Z","type":"response","request":{"path": 7}}\n')
    # Raising min_decryption_version after a rotation would resolve the export, were it read.
    w.root.write_data("transit/keys/signing-key/rotate")
    w.root.write_data("transit/keys/signing-key/config", data={"min_decryption_version": 2})
    w.seen(w.root.read("transit/keys/signing-key"))
    result = w.run()
    run = next(s for s in result.sources if s.name == "vault/exposure")
    # Every inventoried mount: the line could concern any of them.
    assert [f.scope for f in run.failed_scopes] == [
        "exposure:auth/approle",
        "exposure:pki",
        "exposure:secret",
        "exposure:transit",
    ]
    assert str(w.bao.audit_log) in run.failed_scopes[0].error
    assert result.status.value == "failed_sources"
    stored = w.exposure()[("secret-exposed-to-leaver", "E1", KEY)]
    assert stored.status is FindingStatus.OPEN and stored.stale


def test_a_leavers_access_on_a_mount_not_configured_is_a_warning_not_silence(vault_world: VaultWorld) -> None:
    w = vault_world
    w.root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    alice = w.login("alice")
    alice.write_data("kv1/legacy", data={"value": "v"})
    w.seen(alice.read("kv1/legacy"))
    result = w.run()
    run = next(s for s in result.sources if s.name == "vault/exposure")
    assert [x for x in run.warnings if "kv1/legacy" in x and "kv_mounts" in x]
    assert w.exposure() == {}


def test_a_leaver_whose_entity_was_deleted_at_offboarding_is_still_found_by_the_names_her_token_carried(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    alice = w.login("alice")
    read = w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    # IT offboarded her in Vault: entity and login gone. The secret she read is still valid.
    w.root.secrets.identity.delete_entity(w.entities["alice"])
    w.root.delete("auth/userpass/users/alice")
    w.run()
    found = w.exposure()[("secret-exposed-to-leaver", "E1", SECRET)]
    assert [a.event_id for a in found.exposure] == [read]
    # Matched through the token's userpass username ("alice" = her email's local part).
    assert found.account.account_id == w.entities["alice"]
    assert found.account.username == "userpass-alice"
