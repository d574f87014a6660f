"""The exposure inventory's decisions on what a fake Vault answers (a fake: no server). Vault's own
answers are in the OpenBao tests; these are the upgrade paths a server cannot show."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.vault.exposure import VaultExposureSource
from connectors.vault.settings import VaultSettings
from offboard_audit.core.exposure import ObjectRef
from offboard_audit.core.records import CredentialKind

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class KvApi:
    """A KV v2 mount ``secret`` holding the secret ``app/db``; records the paths read."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def read(self, path: str) -> Any:
        self.reads.append(path)
        if path == "sys/internal/ui/mounts/secret":
            return {"type": "kv", "options": {"version": "2"}}
        if path == "secret/metadata/app/db":
            return {"current_version": 1, "versions": {"1": {"created_time": "2026-01-01T00:00:00Z"}}}
        return None

    def list(self, path: str) -> list[str]:
        raise AssertionError(f"a v2 mount is never listed: {path}")


def _source(tmp_path: Path, api: Any) -> VaultExposureSource:
    settings = VaultSettings(
        name="vault", url="http://x", audit_log=tmp_path / "audit.log", kv_mounts=("secret",)
    )
    return VaultExposureSource(settings, api, clock=lambda: NOW)


def test_a_secret_named_by_events_stored_before_and_after_the_raw_path_was_kept_is_read_once_under_both_ids(
    tmp_path: Path,
) -> None:
    api = KvApi()
    stored_before = ObjectRef("secret", CredentialKind.KV_SECRET, "secret/app/db")
    stored_now = ObjectRef("secret", CredentialKind.KV_SECRET, "secret/data/app/db", fingerprint="kv2:app/db")
    metadata_read = ObjectRef(
        "secret", CredentialKind.KV_SECRET, "secret/metadata/app/db", fingerprint="kv2:"
    )
    read = _source(tmp_path, api).inventory([stored_before, stored_now, metadata_read])
    assert read.failed_scopes == ()
    assert [(s.secret_id, s.aliases) for s in read.secrets] == [("secret/app/db", ("secret/data/app/db",))]
    assert api.reads.count("secret/metadata/app/db") == 1


class AppRoleApi:
    """Role ``ci`` lists one secret-id, ``acc-1``; the audit device hashes it to a value the log
    does not show (the log was written under another salt, or the leaver's was destroyed)."""

    def list(self, path: str) -> list[str]:
        assert path == "auth/approle/role/ci/secret-id"
        return ["acc-1"]

    def read(self, path: str) -> Any:
        return {"file/": {"type": "file"}} if path == "sys/audit" else None

    def write(self, path: str, data: Any = None) -> Any:
        assert path == "sys/audit-hash/file", path
        return {"hash": "hmac-sha256:current-salt-" + data["input"]}


def test_a_secret_id_stored_without_its_creation_time_that_no_listed_accessor_matches_fails_its_mount(
    tmp_path: Path,
) -> None:
    # An event read by an earlier version: "<hmac>|<expiry>", no creation time to rule the
    # listed secret-id out with.
    logged = "hmac-sha256:older-salt-acc-1"
    ref = ObjectRef(
        "auth/approle",
        CredentialKind.SERVICE_ACCOUNT_KEY,
        f"auth/approle/role/ci/secret-id/{logged}",
        owner="approle role ci",
        fingerprint=f"{logged}|0",
    )
    read = _source(tmp_path, AppRoleApi()).inventory([ref])
    assert read.objects == ()
    [failure] = read.failed_scopes
    assert failure.scope == "auth/approle" and ref.object_id in failure.error
