"""Pure translation: the file audit device's JSON lines to exposure events. No I/O, no clock.

:func:`entry_events` gives the exposure events of one entry. Request and response values are
HMAC'd in the log: nothing here needs them, and nothing here prints them (the event carries the
path, the operation, the identity and, for an export, which key versions left, never a value).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.vault.translate import HMAC_PREFIX, parse_time
from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef
from offboard_audit.core.records import CredentialKind, ExposureHow

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

# A KV event's ObjectRef.fingerprint: "kv2:" + the secret its path names on a KV v2 mount ("kv2:"
# alone: none). Events stored before it carry "" (their object_id is already the v2 reading).
KV2_READING = "kv2:"
_WRITES = frozenset({"create", "update", "patch"})
# Mount types whose calls can be exposure events.
_ENGINES = frozenset({"kv", "generic", "transit", "approle", "pki"})


class MalformedEntry(ValueError):
    """An audit-log line that is not a Vault audit entry, or a relevant one missing a field."""


def _required_time(value: Any, what: str) -> datetime:
    try:
        t = parse_time(value)
    except (TypeError, ValueError) as exc:
        raise MalformedEntry(f"{what} is not a time: {value!r}") from exc
    if t is None:
        raise MalformedEntry(f"{what} is missing")
    return t


def _clear(value: Any) -> str:
    """A plain string value; "" for anything HMAC'd or not a string."""
    if isinstance(value, str) and value and not value.startswith(HMAC_PREFIX):
        return value.strip()
    return ""


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


def _http_error(status: object) -> bool:
    try:
        return int(str(status)) >= 400
    except ValueError:
        return False


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
    if isinstance(data, dict) and _http_error(data.get("http_status_code")):
        return ()  # answered with an HTTP error (e.g. 404, logged without ``error``): nothing handed over
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
            # The entry does not say the mount's KV version: the target keeps the path as
            # requested (the secret on a v1 mount) with its v2 reading; the inventory, which
            # reads the version, decides (kv_secret_path).
            target = ObjectRef(
                mount,
                CredentialKind.KV_SECRET,
                f"{mount}/{rest}",
                fingerprint=KV2_READING + _kv2_secret(rest),
            )
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


def _expiry_fingerprint(value: str, expires: datetime | None, made: datetime | None = None) -> str:
    """``<accessor or serial>|<expiry, unix seconds; 0: never>[|<made, ISO time>]``: which object
    the event made, until when it works and (secret-ids) when it was made, as far as the log
    tells: the entry's time, just after Vault made it (the inventory needs all three)."""
    tail = f"|{made.isoformat()}" if made is not None else ""
    return f"{value}|{int(expires.timestamp()) if expires else 0}{tail}"


def split_fingerprint(fingerprint: str) -> tuple[str, datetime | None]:
    """(value, expiry) of a fingerprint; neither value nor time holds a ``|``."""
    value, _, rest = fingerprint.partition("|")
    expires = rest.partition("|")[0]
    seconds = int(expires) if expires.isdigit() else 0
    return value, (datetime.fromtimestamp(seconds, UTC) if seconds else None)


def made_at(fingerprint: str) -> datetime | None:
    """When the object of a fingerprint was logged as made; None for events stored before it was
    kept (and for certificates)."""
    made = fingerprint.split("|")[2:]
    return datetime.fromisoformat(made[0]) if made and made[0] else None


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
        fingerprint=_expiry_fingerprint(accessor, expires, created),
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


def _kv2_secret(rest: str) -> str:
    """The secret ``<mount>/<rest>`` names on a KV v2 mount: ``data/<path>`` is ``<path>``;
    metadata, deletes, subkeys and config hand over no value, and any other path is no v2
    endpoint (Vault answers 404): "" for both."""
    head, _, tail = rest.partition("/")
    return tail if head == "data" else ""


def kv_secret_path(ref: ObjectRef, version: str) -> str | None:
    """The secret (path below its mount) an event's KV ``ref`` names on a mount of KV
    ``version`` ("1", "2"), or None when that call handed over no value there."""
    path = ref.object_id[len(ref.scope) + 1 :]
    if not ref.fingerprint.startswith(KV2_READING):
        return path  # stored before the raw path was kept: already read with the v2 layout
    if version != "2":
        return path  # KV v1: every path below the mount is a secret
    return ref.fingerprint[len(KV2_READING) :] or None


def _kv(rest: str, operation: Any, data: Any) -> tuple[str, ExposureHow, str] | None:
    """A read or write of a KV path, whatever the mount's version: on v2 only a ``data/`` path's
    hands a value over, on v1 every path's does (the inventory tells them apart)."""
    if operation == "read":
        # A read of a missing path answers 404 with no data: nothing was handed over.
        return (rest, ExposureHow.READ, "kv read") if isinstance(data, dict) else None
    if operation in _WRITES:
        return rest, ExposureHow.CREATED, f"kv {operation}"
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
