"""What a leaver could carry away from Vault / OpenBao: the ``ExposureSource`` of a ``vault``
source with an ``audit_log``.

- **Events** (``auditlog.py``): KV v1/v2 reads and writes, transit exports and backups, transit
  key creations and config changes that make a key exportable or plaintext-backupable, key
  imports and restores, from the file audit device's log, incrementally.
- **Inventory**, for the secrets and keys the departed people's events name only (the engine
  passes them as ``wanted``), one scope per configured mount (a mount that cannot be read fails
  alone):

  - KV v2: ``GET <mount>/metadata/<path>`` (``current_version``, each version's
    ``created_time``, ``custom_metadata``); KV v1 keeps no versions: ``LIST`` of the secret's
    folder says whether it still exists. The engine's version is read first with
    ``GET sys/internal/ui/mounts/<mount>`` (a v2 metadata path on a v1 mount would be a value).
  - transit: ``GET <mount>/keys/<name>`` (``latest_version``, each version's creation time,
    ``min_decryption_version``, ``exportable``, ``auto_rotate_period``).

  Never a value: no ``<kv>/data/*`` read, no v1 secret read, no transit export or backup. The
  ACL policy the tool needs: ``read`` on ``sys/internal/ui/mounts/<mount>``,
  ``<kv>/metadata/*`` and ``<transit>/keys/*``; ``list`` on the KV v1 mounts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from connectors.vault.auditlog import AuditLogReader
from connectors.vault.clients import VaultApi, VaultCallError
from connectors.vault.settings import VaultSettings
from connectors.vault.translate import SYSTEM, kv1_state, kv2_state, transit_state
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import Checkpoint, EventBatch, InventoryRead, ObjectRef, SecretState
from offboard_audit.core.records import CredentialKind, ScopeFailure

EXPOSURE_PERMISSIONS: tuple[str, ...] = (
    "read the audit_log files (the file audit device's log and its rotated copies)",
    "read on sys/internal/ui/mounts/<kv mount> (the KV version)",
    "read on <kv mount>/metadata/* (KV v2 versions and custom_metadata; never <kv>/data/*)",
    "list on <kv v1 mount>/* (whether a v1 secret still exists; its value is never read)",
    "read on <transit mount>/keys/* (versions, min_decryption_version, exportable; never export/*)",
)


class VaultExposureSource:
    """The exposure reader of one ``vault`` source (see the module docstring)."""

    system = SYSTEM

    def __init__(
        self, settings: VaultSettings, api: VaultApi, clock: Callable[[], datetime] | None = None
    ) -> None:
        assert settings.audit_log is not None
        self.name = settings.name
        self.settings = settings
        self.api = api
        self._clock = clock or (lambda: datetime.now(UTC))
        engines = {m: "kv" for m in settings.kv_mounts} | {m: "transit" for m in settings.transit_mounts}
        self.reader = AuditLogReader(
            settings.name,
            settings.audit_log,
            settings.mounts,
            engines,
            settings.namespace,
            lambda now: now - settings.lookback,
        )

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        try:
            yield from self.reader.read(checkpoints, now)
        except SourceError:
            raise
        except OSError as exc:
            raise SourceError(
                f"{self.name}: cannot read the audit log {self.settings.audit_log}: {exc}"
            ) from exc

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        s = self.settings
        by_mount: dict[str, list[ObjectRef]] = defaultdict(list)
        warnings: list[str] = []
        for ref in dict.fromkeys(wanted):
            if ref.scope in s.mounts:
                by_mount[ref.scope].append(ref)
            else:
                warnings.append(
                    f"{ref.object_id} ({ref.kind.value}) was accessed by a departed person on mount "
                    f"{ref.scope!r}, which is not in kv_mounts or transit_mounts: it is not checked"
                )
        secrets: list[SecretState] = []
        failures: list[ScopeFailure] = []
        now = self._clock()
        for mount in s.mounts:
            refs = by_mount.get(mount, [])
            try:
                if mount in s.transit_mounts:
                    secrets.extend(self._transit(mount, refs))
                else:
                    secrets.extend(self._kv(mount, refs, now))
            except VaultCallError as exc:
                failures.append(ScopeFailure(mount, f"inventory of mount {mount}: {exc}"))
        return InventoryRead(tuple(secrets), (), s.mounts, tuple(failures), tuple(warnings))

    def _transit(self, mount: str, refs: Sequence[ObjectRef]) -> list[SecretState]:
        out: list[SecretState] = []
        for ref in refs:
            if ref.kind is not CredentialKind.TRANSIT_KEY:
                continue
            name = ref.object_id[len(mount) + 1 :]
            key = self.api.read(f"{mount}/keys/{name}")
            if key is not None:  # gone (deleted): nothing left to carry away
                out.append(transit_state(self.name, mount, key))
        return out

    def _kv(self, mount: str, refs: Sequence[ObjectRef], now: datetime) -> list[SecretState]:
        refs = [r for r in refs if r.kind is CredentialKind.KV_SECRET]
        if not refs:
            return []
        info = self.api.read(f"sys/internal/ui/mounts/{mount}")
        if info is None:
            return []  # the mount is gone, and every secret in it
        version = str((info.get("options") or {}).get("version") or "1")
        out: list[SecretState] = []
        for ref in refs:
            path = ref.object_id[len(mount) + 1 :]
            if version == "2":
                meta = self.api.read(f"{mount}/metadata/{path}")
                if meta is not None:
                    out.append(
                        kv2_state(
                            self.name,
                            mount,
                            path,
                            meta,
                            now,
                            self.settings.owner_metadata_keys,
                            self.settings.signing_metadata,
                        )
                    )
            else:
                folder, _, leaf = path.rpartition("/")
                keys = self.api.list(f"{mount}/{folder}/" if folder else f"{mount}/")
                if leaf in keys:
                    out.append(kv1_state(self.name, mount, path))
        return out
