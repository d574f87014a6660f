"""Pure translation: Vault/OpenBao payloads to the core's records. No I/O, no clock.

- Identity (``identity/entity/id/<id>``, ``LIST identity/entity/id``): one :class:`Account` per
  entity (``Account.uid`` and ``account_id`` are the entity id: immutable, what audit-log entries
  carry as ``auth.entity_id``), its login itself (``account``), and a ``password`` per userpass
  alias whose user exists. A userpass user no entity knows yet (it never logged in) is an
  account of its own, identified by its mount accessor and name.
- Tokens (``auth/token/lookup-accessor``): ``access_key`` credentials of the entity they belong to.
- Audit-log entries (the file audit device's JSON lines): :func:`entry_events` gives the
  exposure events of one entry. Request and response values are HMAC'd in the log: nothing here
  needs them, and nothing here prints them (the event carries the path, the operation, the
  identity and, for an export, which key versions left, never a value).
- Inventory (``<kv>/metadata/<path>``, ``<transit>/keys/<name>``): :class:`SecretState`.

Required fields are read as ``raw["key"]`` (a missing one is an error: the payload is not what
the API documents); optional ones with ``.get``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef, SecretState
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    ExposureHow,
)

SYSTEM = "vault"

HMAC_PREFIX = "hmac-sha256:"
# Vault writes "0001-01-01T00:00:00Z" for "no such time" (a token that never expires).
_ZERO_YEAR = 1

# Auth method types prefixed to a token's display name ("userpass-alice", "oidc-a@example.com").
_DISPLAY_PREFIXES = (
    "userpass",
    "ldap",
    "oidc",
    "jwt",
    "okta",
    "github",
    "radius",
    "kerberos",
    "saml",
    "cert",
    "approle",
    "kubernetes",
    "aws",
    "azure",
    "gcp",
)

# KV v2 paths below the mount that are not the secret's data (no value in them).
_KV2_HOUSEKEEPING = frozenset({"metadata", "delete", "undelete", "destroy", "subkeys", "config"})
_WRITES = frozenset({"create", "update", "patch"})
# Mount types whose calls can be exposure events.
_ENGINES = frozenset({"kv", "generic", "transit", "approle", "pki"})


class MalformedEntry(ValueError):
    """An audit-log line that is not a Vault audit entry, or a relevant one missing a field."""


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


def _required_time(value: Any, what: str) -> datetime:
    try:
        t = parse_time(value)
    except (TypeError, ValueError) as exc:
        raise MalformedEntry(f"{what} is not a time: {value!r}") from exc
    if t is None:
        raise MalformedEntry(f"{what} is missing")
    return t


# --- identity: entities, aliases, userpass, tokens --------------------------------------------


def _clear(value: Any) -> str:
    """A plain string value; "" for anything HMAC'd or not a string."""
    if isinstance(value, str) and value and not value.startswith(HMAC_PREFIX):
        return value.strip()
    return ""


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


def token_credential(source: str, scope: str, info: Mapping[str, Any]) -> Credential:
    """A token of an entity, from ``auth/token/lookup-accessor`` (its accessor is its id: the
    token itself is never read)."""
    accessor = str(info["accessor"])
    expires = parse_time(info.get("expire_time"))
    via = info.get("path") or "?"
    return Credential(
        source=source,
        account_id=str(info["entity_id"]),
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


# --- audit log ------------------------------------------------------------------------------


def _stripped(display: str) -> str:
    for prefix in _DISPLAY_PREFIXES:
        if display.startswith(f"{prefix}-") and len(display) > len(prefix) + 1:
            return display[len(prefix) + 1 :]
    return ""


def actor_of(auth: Mapping[str, Any]) -> Actor:
    """The identity behind an entry: the entity (matched like its account) with the names the
    token carries, strongest first: the auth method's ``username`` metadata, the display name
    without its auth-method prefix (``userpass-alice`` -> ``alice``, ``oidc-a@x`` -> ``a@x``),
    the display name itself. A token without an entity (the root token, an orphan token) is no
    person: it carries no names."""
    entity = _clear(auth.get("entity_id"))
    display = _clear(auth.get("display_name"))
    if not entity:
        return Actor(identity=f"token:{display or 'unknown'}", kind="token")
    metadata = auth.get("metadata") or {}
    names = [
        _clear(metadata.get("username")) if isinstance(metadata, Mapping) else "",
        _stripped(display),
        display,
    ]
    return Actor(
        identity=entity, kind="entity", account_id=entity, names=tuple(dict.fromkeys(n for n in names if n))
    )


def _mount_of(request: Mapping[str, Any], path: str, mounts: Mapping[str, str]) -> tuple[str, str] | None:
    """(mount path without slash, engine type) of the request: the entry's own ``mount_point`` /
    ``mount_type`` (Vault 1.13+, OpenBao), else the longest configured mount the path is under."""
    point = request.get("mount_point")
    kind = request.get("mount_type")
    if isinstance(point, str) and point and isinstance(kind, str):
        return point.rstrip("/"), kind
    best = ""
    for mount in mounts:
        if (path == mount or path.startswith(f"{mount}/")) and len(mount) > len(best):
            best = mount
    return (best, mounts[best]) if best else None


def _flag(data: Mapping[str, Any], key: str) -> str | None:
    """How a boolean option was sent: "true"/"false", "?" when HMAC'd (sent as a string), None
    when absent."""
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "?"


def entry_events(
    entry: Any,
    source: str,
    stream: str,
    mounts: Mapping[str, str] | None = None,
    namespace: str = "",
) -> tuple[ExposureEvent, ...]:
    """The exposure events of one audit-log entry (a parsed line); none for most entries.

    Only ``response`` entries count (the ``request`` entry of the same call says nothing more,
    and a call refused or failed has ``error`` set or no response data). Raises
    :class:`MalformedEntry` for a line that is no audit entry, or a relevant one missing a field.
    ``mounts`` maps configured mount paths to their engine (``kv``/``transit``) for entries of
    servers that do not log ``mount_point``; ``namespace`` keeps the entries of one namespace.
    """
    if not isinstance(entry, dict):
        raise MalformedEntry("not a JSON object")
    if "type" not in entry or "time" not in entry:
        raise MalformedEntry("no 'type' or 'time': not a Vault audit entry")
    if entry["type"] != "response" or entry.get("error"):
        return ()
    request = entry.get("request")
    if not isinstance(request, dict):
        raise MalformedEntry("response entry without a request object")
    path = request.get("path")
    if not isinstance(path, str):
        raise MalformedEntry("request without a path")
    ns = request.get("namespace") or {}
    ns_path = str(ns.get("path") or "").strip("/") if isinstance(ns, dict) else ""
    if ns_path != namespace:
        return ()
    found = _mount_of(request, path, mounts or {})
    if found is None or found[1] not in _ENGINES:
        return ()
    mount, engine = found
    rest = path[len(mount) + 1 :] if path.startswith(f"{mount}/") else ""
    if not rest:
        return ()
    operation = request.get("operation")
    response = entry.get("response")
    data = response.get("data") if isinstance(response, dict) else None
    target: ObjectRef | None = None
    hit: tuple[str, ExposureHow, str] | None = None
    if engine == "transit":
        hit = _transit(rest, operation, request, data)
        if hit is not None:
            target = ObjectRef(mount, CredentialKind.TRANSIT_KEY, f"{mount}/{hit[0]}")
    elif engine == "approle":
        target = _secret_id(mount, rest, operation, data, entry["time"])
        hit = ("", ExposureHow.CREATED, "approle secret-id") if target is not None else None
    elif engine == "pki":
        target = _certificate(mount, rest, operation, data)
        if target is not None:
            hit = ("", ExposureHow.CREATED, f"pki {rest.split('/')[-2] if '/' in rest else rest}")
    else:
        hit = _kv(rest, operation, data)
        if hit is not None:
            target = ObjectRef(mount, CredentialKind.KV_SECRET, f"{mount}/{hit[0]}")
    if hit is None or target is None:
        return ()
    _name, how, action = hit
    event_id = request.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEntry(f"{path}: request without an id")
    auth = entry.get("auth")
    return (
        ExposureEvent(
            source=source,
            scope=mount,
            event_id=event_id,
            at=_required_time(entry["time"], "time"),
            action=action,
            how=how,
            actor=actor_of(auth if isinstance(auth, dict) else {}),
            target=target,
            stream=stream,
        ),
    )


def _expiry_fingerprint(value: str, expires: datetime | None) -> str:
    """``<accessor or serial>|<expiry, unix seconds; 0: never>``: which object the event made,
    and until when it works (the event carries both; the inventory needs both)."""
    return f"{value}|{int(expires.timestamp()) if expires else 0}"


def split_fingerprint(fingerprint: str) -> tuple[str, datetime | None]:
    value, _, expires = fingerprint.rpartition("|")
    seconds = int(expires) if expires.isdigit() else 0
    return value, (datetime.fromtimestamp(seconds, UTC) if seconds else None)


def _secret_id(mount: str, rest: str, operation: Any, data: Any, at: Any) -> ObjectRef | None:
    """``auth/<approle>/role/<role>/secret-id`` (or ``custom-secret-id``): a login for the AppRole,
    made by whoever called it. Its accessor is HMAC'd in the log unless the mount is tuned
    otherwise; the inventory matches it through the audit device's own hash."""
    parts = rest.split("/")
    if len(parts) != 3 or parts[0] != "role" or parts[2] not in ("secret-id", "custom-secret-id"):
        return None
    if operation not in _WRITES or not isinstance(data, dict):
        return None
    accessor = data.get("secret_id_accessor")
    if not isinstance(accessor, str) or not accessor:
        return None
    ttl = data.get("secret_id_ttl")
    created = _required_time(at, "time")
    expires = created + timedelta(seconds=ttl) if isinstance(ttl, int) and ttl > 0 else None
    return ObjectRef(
        mount,
        CredentialKind.SERVICE_ACCOUNT_KEY,
        f"{mount}/role/{parts[1]}/secret-id/{accessor}",
        owner=f"approle role {parts[1]}",
        fingerprint=_expiry_fingerprint(accessor, expires),
    )


def _certificate(mount: str, rest: str, operation: Any, data: Any) -> ObjectRef | None:
    """``<pki>/issue/<role>`` (a certificate with its private key handed over) and
    ``<pki>/sign/<role>``, ``sign-verbatim``, ``issuer/<ref>/issue|sign/<role>`` (a certificate
    for a key the caller holds): valid until it expires or is revoked. Its serial number is
    HMAC'd in the log; ``expiration`` (unix seconds) is not."""
    parts = rest.split("/")
    if parts[0] == "issuer" and len(parts) >= 3:
        parts = parts[2:]
    if parts[0] not in ("issue", "sign", "sign-verbatim") or operation not in _WRITES:
        return None
    if not isinstance(data, dict):
        return None
    serial = data.get("serial_number")
    expiration = data.get("expiration")
    if not isinstance(serial, str) or not serial:
        return None
    expires = parse_time(expiration) if isinstance(expiration, int) and expiration > 0 else None
    role = parts[1] if len(parts) > 1 else "(verbatim)"
    return ObjectRef(
        mount,
        CredentialKind.SIGNING_CERTIFICATE,
        f"{mount}/cert/{serial}",
        owner=f"pki role {role}",
        fingerprint=_expiry_fingerprint(serial, expires),
    )


def _kv(rest: str, operation: Any, data: Any) -> tuple[str, ExposureHow, str] | None:
    head, _, tail = rest.partition("/")
    if head == "data" and tail:
        name, version = tail, "v2"
    elif head in _KV2_HOUSEKEEPING:
        return None  # metadata, deletes, subkeys: no value changes hands
    else:
        name, version = rest, "v1"
    if operation == "read":
        # A read of a missing path answers 404 with no data: nothing was handed over.
        return (name, ExposureHow.READ, f"kv {version} read") if isinstance(data, dict) else None
    if operation in _WRITES:
        return name, ExposureHow.CREATED, f"kv {version} {operation}"
    return None


def _versions(data: Any) -> str:
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not keys:
        return ""
    return ",".join(sorted(keys, key=lambda k: (len(k), k)))


def _transit(
    rest: str, operation: Any, request: Mapping[str, Any], data: Any
) -> tuple[str, ExposureHow, str] | None:
    parts = rest.split("/")
    head = parts[0]
    if head == "export" and operation == "read" and len(parts) >= 3:
        versions = _versions(data)
        if not versions:
            return None  # nothing exported (unknown key, not exportable)
        return parts[2], ExposureHow.EXPORTED, f"transit export {parts[1]} (versions {versions})"
    if head == "backup" and operation == "read" and len(parts) == 2:
        if not isinstance(data, dict) or "backup" not in data:
            return None
        return parts[1], ExposureHow.EXPORTED, "transit backup (all versions)"
    if head == "restore" and operation in _WRITES and len(parts) == 2:
        return parts[1], ExposureHow.CREATED, "transit restore from a backup"
    if head != "keys" or len(parts) < 2 or operation not in _WRITES:
        return None
    sent = request.get("data")
    sent = sent if isinstance(sent, dict) else {}
    flags = [
        f"{k}={v}" for k in ("exportable", "allow_plaintext_backup") if (v := _flag(sent, k)) is not None
    ]
    if len(parts) == 2:
        return (
            parts[1],
            ExposureHow.CHANGED_ACCESS,
            "transit create key" + (f" ({', '.join(flags)})" if flags else ""),
        )
    if len(parts) == 3 and parts[2] in ("import", "import_version"):
        return parts[1], ExposureHow.CREATED, f"transit {parts[2].replace('_', ' ')} (key material supplied)"
    if len(parts) == 3 and parts[2] == "config" and flags:
        return parts[1], ExposureHow.CHANGED_ACCESS, f"transit config ({', '.join(flags)})"
    return None


# --- inventory ------------------------------------------------------------------------------


def _metadata_hits(custom: Mapping[str, Any], pairs: Iterable[tuple[str, str]]) -> bool:
    lowered = {str(k).casefold(): str(v).casefold() for k, v in custom.items() if v is not None}
    return any(lowered.get(k) == v for k, v in pairs)


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
    owner = next((str(custom[k]) for k in owner_keys if custom.get(k)), None)
    secret_id = f"{mount}/{path}"
    return SecretState(
        source=source,
        scope=mount,
        kind=CredentialKind.KV_SECRET,
        secret_id=secret_id,
        name=f"{secret_id} (current_version={current})",
        owner=owner,
        created_at=parse_time(meta.get("created_time")),
        current_version_created_at=parse_time(version.get("created_time")),
        enabled=enabled,
        rotation_configured=False,  # KV has no rotation of its own: a person writes a new version
        exportable=True,  # a read hands the value over
        signing=_metadata_hits(custom, signing),
    )


def kv1_state(source: str, mount: str, path: str) -> SecretState:
    """A KV v1 secret seen in a LIST of its folder: v1 keeps no versions and no dates, so
    nothing can prove it was rotated since a read (only deleting it ends the exposure)."""
    secret_id = f"{mount}/{path}"
    return SecretState(
        source=source,
        scope=mount,
        kind=CredentialKind.KV_SECRET,
        secret_id=secret_id,
        name=f"{secret_id} (KV v1: no versions, no dates)",
        exportable=True,
    )


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
    secret_id = f"{mount}/{name}"
    return SecretState(
        source=source,
        scope=mount,
        kind=CredentialKind.TRANSIT_KEY,
        secret_id=secret_id,
        name=f"{secret_id} (min_decryption_version={min_decrypt}, latest_version={latest})",
        created_at=min(times.values()) if times else None,
        current_version_created_at=times.get(latest),
        oldest_enabled_version_created_at=times[min(usable)] if usable else None,
        enabled=not bool(key.get("soft_deleted")),
        rotation_configured=int(key.get("auto_rotate_period") or 0) > 0,
        # An imported key's material came from outside: whoever imported it had it.
        exportable=bool(key.get("exportable")) or bool(key.get("imported_key")),
        signing=True,
    )
