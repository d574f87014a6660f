"""What a leaver could carry away from Vault / OpenBao: the ``ExposureSource`` of a ``vault``
source with an ``audit_log``.

- **Events** (``auditlog.py``): KV v1/v2 reads and writes, transit exports and backups, transit
  key creations and config changes that make a key exportable or plaintext-backupable, key
  imports and restores; AppRole secret-ids and PKI certificates a person made (persistence), from
  the file audit device's log, incrementally.
- **Inventory**, for the secrets and keys the departed people's events name only (the engine
  passes them as ``wanted``), one scope per configured mount (a mount that cannot be read fails
  alone):

  - KV v2: ``GET <mount>/metadata/<path>`` (``current_version``, each version's
    ``created_time``, ``custom_metadata``); KV v1 keeps no versions: ``LIST`` of the secret's
    folder says whether it still exists. The engine's version is read first with
    ``GET sys/internal/ui/mounts/<mount>`` (a v2 metadata path on a v1 mount would be a value);
    it also decides which secret an event's KV path names (``kv_secret_path``).
  - transit: ``GET <mount>/keys/<name>`` (``latest_version``, each version's creation time,
    ``min_decryption_version``, ``exportable``, ``auto_rotate_period``).

  - AppRole secret-ids: ``LIST auth/<approle>/role/<role>/secret-id``; PKI certificates:
    ``LIST <pki>/certs/revoked`` (and the expiry the event logged). The log shows their accessor
    and serial HMAC'd: :class:`AuditHash` matches them with ``POST sys/audit-hash/<device>``.
    A secret-id none of whose role's listed accessors matches is gone only if none of them was
    made when it was (``POST .../secret-id-accessor/lookup``, their creation time): the hash is
    salted per device, and the log may be older than the device. Otherwise the mount fails.

  Never a value: no ``<kv>/data/*`` read, no v1 secret read, no transit export or backup. The
  ACL policy the tool needs (``offboard-audit-policy.hcl``): ``read`` on
  ``sys/internal/ui/mounts/<mount>``, ``<kv>/metadata/*`` and ``<transit>/keys/*``; ``list`` on
  the KV v1 mounts, ``auth/<approle>/role/+/secret-id`` and ``<pki>/certs/revoked``; ``read`` +
  ``sudo`` on ``sys/audit`` (unless ``audit_device`` is set), ``update`` on ``sys/audit-hash/*``
  and ``auth/<approle>/role/+/secret-id-accessor/lookup``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from connectors._shared.inventory import ScopeFound, inventory_by_scope
from connectors.vault.audit_entries import kv_secret_path, made_at, split_fingerprint
from connectors.vault.auditlog import AuditLogReader
from connectors.vault.clients import VaultApi, VaultCallError
from connectors.vault.settings import VaultSettings
from connectors.vault.translate import HMAC_PREFIX, SYSTEM, kv1_state, kv2_state, parse_time, transit_state
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import (
    Checkpoint,
    EventBatch,
    InventoryRead,
    ObjectRef,
    PersistenceState,
    SecretState,
)
from offboard_audit.core.records import CredentialKind, ScopeFailure

# A secret-id is made just before its creation is logged: a listed one made within this long
# before the entry's time may be the leaver's one, under another audit salt.
_MADE_WITHIN = timedelta(seconds=60)


class Unmatched(Exception):
    """Secret-ids leavers made that the inventory can neither find nor rule out."""


class AuditHash:
    """Matches values the audit log shows HMAC'd (``hmac-sha256:...``) to the plain values an
    API lists, with the audit device's own hash (``POST sys/audit-hash/<device>``): the tool
    never needs the log's key. Plain values (a mount tuned with ``audit_non_hmac_response_keys``)
    are compared as they are. The device is ``audit_device``, else the server's only file
    device (``GET sys/audit``)."""

    def __init__(self, api: VaultApi, device: str = "") -> None:
        self.api = api
        self.device = device
        self._hashes: dict[str, str] = {}

    def _device(self) -> str:
        if not self.device:
            listed = self.api.read("sys/audit") or {}
            files = sorted(p for p, d in listed.items() if isinstance(d, dict) and d.get("type") == "file")
            if len(files) != 1:
                raise VaultCallError(
                    "read", "sys/audit", ValueError(f"{len(files)} file audit devices: set audit_device")
                )
            self.device = files[0].strip("/")
        return self.device

    def find(self, value: str, candidates: Sequence[str]) -> str | None:
        """The candidate ``value`` stands for, or None."""
        if not value.startswith(HMAC_PREFIX):
            return value if value in candidates else None
        for candidate in candidates:
            if candidate not in self._hashes:
                path = f"sys/audit-hash/{self._device()}"
                self._hashes[candidate] = str((self.api.write(path, {"input": candidate}) or {})["hash"])
            if self._hashes[candidate] == value:
                return candidate
        return None


EXPOSURE_PERMISSIONS: tuple[str, ...] = (
    "read the audit_log files (the file audit device's log and its rotated copies)",
    "read on sys/internal/ui/mounts/<kv mount> (the KV version)",
    "read on <kv mount>/metadata/* (KV v2 versions and custom_metadata; never <kv>/data/*)",
    "list on <kv v1 mount>/* (whether a v1 secret still exists; its value is never read)",
    "read on <transit mount>/keys/* (versions, min_decryption_version, exportable; never export/*)",
    "list on auth/<approle mount>/role/*/secret-id (secret-ids leavers made), list on <pki mount>/certs/revoked",
    "update on auth/<approle mount>/role/*/secret-id-accessor/lookup (when a secret-id a leaver made matches no "
    "listed accessor: when the listed ones were made)",
    "read on sys/audit (sudo; unless audit_device is set), update on sys/audit-hash/<device> (to match the "
    "HMAC'd secret-id accessors and certificate serials of the log)",
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
        self.reader = AuditLogReader(
            settings.name,
            settings.audit_log,
            settings.mounts,
            settings.engines,
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
                    f"{ref.scope!r}, which is not in kv_mounts, transit_mounts, pki_mounts or "
                    "approle_mounts: it is not checked"
                )
        now = self._clock()
        hashes = AuditHash(self.api, s.audit_device)

        def one(mount: str) -> ScopeFound | ScopeFailure:
            refs = by_mount.get(mount, [])
            try:
                if mount in s.transit_mounts:
                    return ScopeFound(secrets=self._transit(mount, refs))
                if mount in s.kv_mounts:
                    return ScopeFound(secrets=self._kv(mount, refs, now))
                if mount in s.pki_mounts:
                    return ScopeFound(objects=self._certificates(mount, refs, hashes, now))
                return ScopeFound(objects=self._secret_ids(mount, refs, hashes, now))
            except (VaultCallError, Unmatched) as exc:
                return ScopeFailure(mount, f"inventory of mount {mount}: {exc}")

        # One mount after another: the mounts share one hvac client (and AuditHash's cache).
        return inventory_by_scope(s.mounts, one, warnings=warnings)

    def _secret_ids(
        self, mount: str, refs: Sequence[ObjectRef], hashes: AuditHash, now: datetime
    ) -> list[PersistenceState]:
        """Is each secret-id a leaver made still there? ``LIST <mount>/role/<role>/secret-id``
        (accessors), matched to the event's HMAC'd accessor through the audit device's hash.

        No listed accessor matching is no proof it is gone: the device's hash is salted per
        device, and a device disabled and enabled again (or ``audit_device`` naming another one)
        hashes otherwise than the log was written. It is gone when the role lists none, when the
        log shows the accessor plain, or when none of those listed was made when the log says the
        leaver's was (``secret-id-accessor/lookup``); otherwise it is unknown and the mount fails
        (:class:`Unmatched`): findings kept, stale, nothing resolved."""
        out: list[PersistenceState] = []
        listed: dict[str, list[str]] = {}
        made: dict[str, list[datetime | None]] = {}
        unknown: list[str] = []
        for ref in refs:
            if ref.kind is not CredentialKind.SERVICE_ACCOUNT_KEY:
                continue
            role = ref.object_id[len(mount) + len("/role/") :].partition("/secret-id/")[0]
            value, expires = split_fingerprint(ref.fingerprint)
            if expires is not None and expires <= now:
                out.append(PersistenceState(self.name, ref, False, f"expired at {expires.isoformat()}"))
                continue
            if role not in listed:
                listed[role] = self.api.list(f"{mount}/role/{role}/secret-id")
            accessor = hashes.find(value, listed[role])
            if accessor is not None:
                until = f"expires {expires.isoformat()}" if expires else "never expires"
                detail = f"secret-id accessor {accessor} of AppRole role {role}, {until}"
                out.append(PersistenceState(self.name, ref, True, detail))
                continue
            logged = made_at(ref.fingerprint)
            if value.startswith(HMAC_PREFIX) and listed[role]:
                if logged is not None and role not in made:
                    made[role] = self._made(mount, role, listed[role])
                if logged is None or any(
                    t is None or logged - _MADE_WITHIN <= t <= logged for t in made[role]
                ):
                    unknown.append(self._unmatched(ref, role, len(listed[role]), logged, hashes.device))
                    continue
            gone = "no longer listed (destroyed, used up or tidied)"
            out.append(PersistenceState(self.name, ref, False, gone))
        if unknown:
            raise Unmatched("; ".join(unknown))
        return out

    def _made(self, mount: str, role: str, accessors: Sequence[str]) -> list[datetime | None]:
        """When each secret-id the role lists was made (None: not said); one gone since the
        listing is left out."""
        out: list[datetime | None] = []
        for accessor in accessors:
            path = f"{mount}/role/{role}/secret-id-accessor/lookup"
            try:
                info = self.api.write(path, {"secret_id_accessor": accessor})
            except VaultCallError as exc:
                if exc.status == 404:
                    continue  # destroyed, used up or tidied since the listing
                raise
            out.append(parse_time((info or {}).get("creation_time")))
        return out

    @staticmethod
    def _unmatched(ref: ObjectRef, role: str, count: int, logged: datetime | None, device: str) -> str:
        when = (
            f"one of them made in the minute before {logged.isoformat()}, when the log says it was made"
            if logged is not None
            else "its creation time is not stored (an event read by an earlier version)"
        )
        return (
            f"secret-id {ref.object_id} made by a departed person cannot be told present or gone: "
            f"AppRole role {role} lists {count} secret-id(s), {when}, and none hashes to the log's "
            f"value under audit device {device or '?'} (the log may have been written under another "
            "salt: the device was disabled and enabled again, or audit_device names another "
            "device); not resolved"
        )

    def _certificates(
        self, mount: str, refs: Sequence[ObjectRef], hashes: AuditHash, now: datetime
    ) -> list[PersistenceState]:
        """Is each certificate a leaver had issued still valid? Its expiry is in the event;
        revocation from ``LIST <mount>/certs/revoked``, matched through the audit hash."""
        out: list[PersistenceState] = []
        revoked: list[str] | None = None
        for ref in refs:
            if ref.kind is not CredentialKind.SIGNING_CERTIFICATE:
                continue
            value, expires = split_fingerprint(ref.fingerprint)
            if expires is not None and expires <= now:
                out.append(PersistenceState(self.name, ref, False, f"expired at {expires.isoformat()}"))
                continue
            if revoked is None:
                revoked = self.api.list(f"{mount}/certs/revoked")
            serial = hashes.find(value, revoked)
            if serial is not None:
                out.append(PersistenceState(self.name, ref, False, f"revoked (serial {serial})"))
            else:
                until = expires.isoformat() if expires else "no expiry recorded"
                out.append(PersistenceState(self.name, ref, True, f"valid until {until}, not revoked"))
        return out

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
        # Each secret with every id events named it by: on v2, "secret/data/app" and (events
        # stored before the raw path was kept) "secret/app" are both the secret "app".
        named: dict[str, list[str]] = defaultdict(list)
        for ref in refs:
            path = kv_secret_path(ref, version)
            if path is not None:
                named[path].append(ref.object_id)
        out: list[SecretState] = []
        for path, ids in named.items():
            state: SecretState | None = None
            if version == "2":
                meta = self.api.read(f"{mount}/metadata/{path}")
                if meta is not None:
                    state = kv2_state(
                        self.name,
                        mount,
                        path,
                        meta,
                        now,
                        self.settings.owner_metadata_keys,
                        self.settings.signing_metadata,
                    )
            else:
                folder, _, leaf = path.rpartition("/")
                keys = self.api.list(f"{mount}/{folder}/" if folder else f"{mount}/")
                if leaf in keys:
                    state = kv1_state(self.name, mount, path)
            if state is not None:
                aliases = tuple(i for i in dict.fromkeys(ids) if i != state.secret_id)
                out.append(replace(state, aliases=aliases))
        return out
