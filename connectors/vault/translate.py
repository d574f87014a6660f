"""Pure translation: Vault/OpenBao payloads to the core's records. No I/O, no clock.

- Identity (``identity/entity/id/<id>``, ``LIST identity/entity/id``): one :class:`Account` per
  entity (``Account.uid`` and ``account_id`` are the entity id: immutable, what audit-log entries
  carry as ``auth.entity_id``), its login itself (``account``), and a ``password`` per userpass
  alias whose user exists. A userpass user no entity knows yet (it never logged in) is an
  account of its own, identified by its mount accessor and name.
- Tokens (``auth/token/lookup-accessor``): ``access_key`` credentials of the entity they belong to.
- Inventory (``<kv>/metadata/<path>``, ``<transit>/keys/<name>``): :class:`SecretState`.
- Audit-log entries: :mod:`connectors.vault.audit_entries`.

Required fields are read as ``raw["key"]`` (a missing one is an error: the payload is not what
the API documents); optional ones with ``.get``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors._shared.marks import is_signing
from offboard_audit.core.exposure import SecretState
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

SYSTEM = "vault"

HMAC_PREFIX = "hmac-sha256:"
# Vault writes "0001-01-01T00:00:00Z" for "no such time" (a token that never expires).
_ZERO_YEAR = 1


# --- times ---------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (nanoseconds and ``Z`` allowed) or unix seconds, tz-aware; None for
    empty values and Vault's zero time."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return None if t.year == _ZERO_YEAR else t


# --- identity: entities, aliases, userpass, tokens --------------------------------------------


def alias_key(alias: Mapping[str, Any]) -> tuple[str, str]:
    """(mount path, alias name) of an entity alias, e.g. ("auth/userpass/", "alice")."""
    return (str(alias["mount_path"]), str(alias["name"]))


def entity_username(aliases: Sequence[Mapping[str, Any]], name: str, human_types: Sequence[str]) -> str:
    """The name an entity is matched by: its first alias name on a human auth method that is not
    an email (in ``human_types`` order, then mount path), else its first email alias, else the
    entity's own name."""
    order = {t: i for i, t in enumerate(human_types)}
    human = sorted(
        (a for a in aliases if str(a.get("mount_type", "")).casefold() in order),
        key=lambda a: (order[str(a.get("mount_type", "")).casefold()], str(a.get("mount_path", ""))),
    )
    plain = [str(a["name"]) for a in human if "@" not in str(a["name"])]
    if plain:
        return plain[0]
    emails = [str(a["name"]) for a in human if "@" in str(a["name"])]
    return emails[0] if emails else name


def entity_account(source: str, scope: str, entity: Mapping[str, Any], human_types: Sequence[str]) -> Account:
    """One identity entity as an account (see the module docstring)."""
    entity_id = str(entity["id"])
    name = str(entity["name"])
    aliases = list(entity.get("aliases") or ())
    metadata = {str(k): str(v) for k, v in (entity.get("metadata") or {}).items() if v is not None}
    types = {str(a.get("mount_type", "")).casefold() for a in aliases}
    human = set(human_types)
    kind = AccountKind.SERVICE if aliases and not types & human else AccountKind.HUMAN
    emails = [metadata["email"]] if metadata.get("email") else []
    emails += [str(a["name"]) for a in aliases if "@" in str(a["name"])]
    attributes: list[tuple[str, str]] = [("entity_name", name)]
    for key in sorted(metadata):
        attributes.append((key, metadata[key]))
    for a in aliases:
        mount, alias = alias_key(a)
        attributes.append(("alias", f"{mount}{alias}"))
    return Account(
        source=source,
        system=SYSTEM,
        account_id=entity_id,
        username=entity_username(aliases, name, human_types),
        enabled=not bool(entity.get("disabled")),
        kind=kind,
        emails=tuple(dict.fromkeys(emails)),
        display_name=name,
        attributes=tuple(attributes),
        scope=scope,
        uid=entity_id,
    )


def entity_credential(source: str, scope: str, entity: Mapping[str, Any]) -> Credential:
    """The entity itself: while it is enabled, every login mapped to it works."""
    entity_id = str(entity["id"])
    return Credential(
        source=source,
        account_id=entity_id,
        credential_id=f"entity/{entity_id}",
        kind=CredentialKind.ACCOUNT,
        active=not bool(entity.get("disabled")),
        created_at=parse_time(entity.get("creation_time")),
        detail=f"identity entity {entity['name']}",
        scope=scope,
    )


def userpass_credential_id(mount_path: str, user: str) -> str:
    """``auth/userpass/users/alice``: the API path of the userpass user (its stable id)."""
    return f"{mount_path}users/{user}"


def userpass_credential(
    source: str, scope: str, account_id: str, mount_path: str, user: str, created: Any = None
) -> Credential:
    return Credential(
        source=source,
        account_id=account_id,
        credential_id=userpass_credential_id(mount_path, user),
        kind=CredentialKind.PASSWORD,
        active=True,
        created_at=parse_time(created),
        detail=f"userpass login {user} on {mount_path}",
        scope=scope,
    )


def userpass_uid(mount_accessor: str, user: str) -> str:
    """The identity of a userpass user no entity knows (userpass keeps no id of its own)."""
    return f"{mount_accessor}/{user}"


def userpass_account(source: str, scope: str, mount_path: str, mount_accessor: str, user: str) -> Account:
    """A userpass user that never logged in (no entity, no alias yet): a login all the same."""
    return Account(
        source=source,
        system=SYSTEM,
        account_id=userpass_credential_id(mount_path, user),
        username=user,
        enabled=True,
        kind=AccountKind.HUMAN,
        attributes=(("alias", f"{mount_path}{user}"),),
        scope=scope,
        uid=userpass_uid(mount_accessor, user),
    )


def token_credential(
    source: str, scope: str, info: Mapping[str, Any], account_id: str | None = None
) -> Credential:
    """A token of an entity, from ``auth/token/lookup-accessor`` (its accessor is its id: the
    token itself is never read). ``account_id``: the entity it belongs to when that is not its
    ``entity_id`` (an entity merged into another keeps its tokens, which then act as the other)."""
    accessor = str(info["accessor"])
    expires = parse_time(info.get("expire_time"))
    via = info.get("path") or "?"
    return Credential(
        source=source,
        account_id=account_id or str(info["entity_id"]),
        credential_id=f"token/{accessor}",
        kind=CredentialKind.ACCESS_KEY,
        active=True,
        created_at=parse_time(info.get("creation_time")),
        detail=(
            f"token {info.get('display_name') or ''} from {via}; "
            f"expires {expires.isoformat() if expires else 'never'}"
        ),
        scope=scope,
    )


# --- inventory ------------------------------------------------------------------------------


def _secret(source: str, mount: str, kind: CredentialKind, path: str, what: str) -> SecretState:
    """A secret or key as its mount names it: id ``<mount>/<path>``, its name saying ``what`` its
    versions are. No dates: the callers add what their engine tells (``dataclasses.replace``)."""
    secret_id = f"{mount}/{path}"
    return SecretState(
        source=source, scope=mount, kind=kind, secret_id=secret_id, name=f"{secret_id} ({what})"
    )


def kv2_state(
    source: str,
    mount: str,
    path: str,
    meta: Mapping[str, Any],
    now: datetime,
    owner_keys: Sequence[str] = ("owner",),
    signing: Iterable[tuple[str, str]] = (),
) -> SecretState:
    """A KV v2 secret from ``<mount>/metadata/<path>`` (never its data).

    Its current version is what is in use: older versions stay readable by version number but
    hold values that were replaced, so only the current one counts. A current version deleted
    (its ``deletion_time`` passed) or destroyed leaves the secret disabled."""
    current = int(meta["current_version"])
    versions = meta["versions"] or {}
    version = versions.get(str(current)) or {}
    deleted = parse_time(version.get("deletion_time"))
    enabled = bool(version) and not version.get("destroyed") and (deleted is None or deleted > now)
    custom = meta.get("custom_metadata") or {}
    return replace(
        _secret(source, mount, CredentialKind.KV_SECRET, path, f"current_version={current}"),
        owner=next((str(custom[k]) for k in owner_keys if custom.get(k)), None),
        created_at=parse_time(meta.get("created_time")),
        current_version_created_at=parse_time(version.get("created_time")),
        enabled=enabled,
        rotation_configured=False,  # KV has no rotation of its own: a person writes a new version
        signing=is_signing(custom, signing),
    )


def kv1_state(source: str, mount: str, path: str) -> SecretState:
    """A KV v1 secret seen in a LIST of its folder: v1 keeps no versions and no dates, so
    nothing can prove it was rotated since a read (only deleting it ends the exposure)."""
    # Exportable (SecretState's default), as every KV secret: a read hands the value over.
    return _secret(source, mount, CredentialKind.KV_SECRET, path, "KV v1: no versions, no dates")


def _version_times(keys: Mapping[str, Any]) -> dict[int, datetime]:
    out: dict[int, datetime] = {}
    for version, value in keys.items():
        # Symmetric keys list unix seconds; asymmetric ones an object with creation_time.
        raw = value.get("creation_time") if isinstance(value, dict) else value
        t = parse_time(raw)
        if t is not None:
            out[int(version)] = t
    return out


def transit_state(source: str, mount: str, key: Mapping[str, Any]) -> SecretState:
    """A transit key from ``<mount>/keys/<name>`` (never its material).

    ``keys`` lists the versions still usable (``min_decryption_version`` and up): the latest is
    the current one, the lowest listed the oldest one still usable. Rotating makes a new latest
    version but leaves the older ones usable (to verify or decrypt) until
    ``min_decryption_version`` (and ``min_encryption_version``) are raised above them, so a key
    a leaver exported is clean only once both are. ``rotation_configured``: the key's own
    ``auto_rotate_period`` is set (only then may ``policy.auto_rotate_secrets`` rotate it).
    Every transit key counts as a signing key: its material, once out, signs, decrypts or makes
    HMACs outside Vault."""
    name = str(key["name"])
    latest = int(key["latest_version"])
    min_decrypt = int(key["min_decryption_version"])
    times = _version_times(key["keys"] or {})
    usable = [v for v in times if v >= max(min_decrypt, 1)]
    versions = f"min_decryption_version={min_decrypt}, latest_version={latest}"
    return replace(
        _secret(source, mount, CredentialKind.TRANSIT_KEY, name, versions),
        created_at=min(times.values()) if times else None,
        current_version_created_at=times.get(latest),
        oldest_enabled_version_created_at=times[min(usable)] if usable else None,
        enabled=not bool(key.get("soft_deleted")),
        rotation_configured=int(key.get("auto_rotate_period") or 0) > 0,
        # An imported key's material came from outside: whoever imported it had it.
        exportable=bool(key.get("exportable")) or bool(key.get("imported_key")),
        signing=True,
    )
