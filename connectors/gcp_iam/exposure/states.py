"""Pure: Secret Manager and Cloud KMS payloads -> SecretState; service-account keys and IAM
policies -> PersistenceState; which Data Access audit logs are on (IAM policies' audit configs).

The payloads are the client libraries' messages, read field by field (``name``, ``labels``,
``create_time``, ``state``, ...); object ids are the ones :mod:`connectors.gcp_iam.exposure.translate`
gives the events (full resource names with the **project id**).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from connectors._shared.marks import is_signing, owner_from
from connectors.gcp_iam.exposure.translate import (
    CRYPTO_KEY_NAME,
    SECRET_NAME,
    TOP_NAME,
    binding_object_id,
    key_name,
)
from connectors.gcp_iam.times import ts_to_datetime
from offboard_audit.core.exposure import ObjectRef, PersistenceState, SecretState
from offboard_audit.core.records import CredentialKind


def _state_name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _span(times: Iterable[datetime | None]) -> tuple[datetime | None, datetime | None]:
    known = sorted(t for t in times if t is not None)
    return (known[0], known[-1]) if known else (None, None)


def secret_state(
    source: str,
    scope: str,
    secret: Any,
    versions: Sequence[Any] | None,
    owner_keys: Sequence[str],
    signing_labels: Sequence[tuple[str, str]],
) -> SecretState:
    """A Secret Manager ``Secret`` (``ListSecrets``) and, when read, its ``SecretVersion``-s
    (``ListSecretVersions``: ``create_time``, ``state``).

    Every ENABLED version can be accessed (``versions/N`` as well as ``latest``), so the secret
    counts as rotated only when its oldest enabled version is newer than the exposure; with no
    enabled version left it is disabled. ``rotation_configured``: a rotation schedule is set
    (Secret Manager only notifies a topic; whoever listens makes the new version).
    """
    listed = str(secret.name)
    m = SECRET_NAME.match(listed)
    if m is None:
        raise ValueError(f"not a secret name: {listed!r}")
    secret_id = f"projects/{scope}/secrets/{m.group(2)}"
    labels = dict(secret.labels)
    annotations = dict(secret.annotations)
    oldest = newest = None
    enabled = True
    if versions is not None:
        live = [ts_to_datetime(v.create_time) for v in versions if _state_name(v.state) == "ENABLED"]
        oldest, newest = _span(live)
        enabled = bool(live)
    rotation = secret.rotation
    return SecretState(
        source=source,
        scope=scope,
        kind=CredentialKind.SECRET,
        secret_id=secret_id,
        name=m.group(2),
        owner=owner_from(annotations, owner_keys) or owner_from(labels, owner_keys),
        created_at=ts_to_datetime(secret.create_time),
        current_version_created_at=newest,
        oldest_enabled_version_created_at=oldest,
        enabled=enabled,
        rotation_configured=bool(rotation.rotation_period or rotation.next_rotation_time),
        exportable=True,
        signing=is_signing(labels, signing_labels),
        aliases=tuple(dict.fromkeys((listed, secret_id))),
    )


_SIGNING_PURPOSES = frozenset({"ASYMMETRIC_SIGN", "MAC"})


def kms_state(
    source: str,
    scope: str,
    key: Any,
    versions: Sequence[Any],
    owner_keys: Sequence[str],
) -> SecretState:
    """A Cloud KMS ``CryptoKey`` (``GetCryptoKey``) and its ``CryptoKeyVersion``-s
    (``ListCryptoKeyVersions``: ``state``, ``create_time``, ``import_job``).

    The current version is the primary (symmetric keys) or, for keys without one (asymmetric,
    MAC), the newest ENABLED version; every ENABLED version still signs or decrypts, so the
    oldest of them counts too. Key material generated in Cloud KMS never leaves it
    (``exportable`` False): only an import (someone had the material) or the key's use counts.
    """
    listed = str(key.name)
    m = CRYPTO_KEY_NAME.match(listed)
    if m is None:
        raise ValueError(f"not a crypto key name: {listed!r}")
    secret_id = key_name(listed, scope) or listed
    live = [v for v in versions if _state_name(v.state) == "ENABLED"]
    oldest, newest = _span(ts_to_datetime(v.create_time) for v in live)
    primary = key.primary if key.primary and key.primary.name else None
    current = newest
    if primary is not None and _state_name(primary.state) == "ENABLED":
        current = ts_to_datetime(primary.create_time) or newest
    purpose = _state_name(key.purpose)
    return SecretState(
        source=source,
        scope=scope,
        kind=CredentialKind.KMS_KEY,
        secret_id=secret_id,
        name=m.group(4),
        owner=owner_from(dict(key.labels), owner_keys),
        created_at=ts_to_datetime(key.create_time),
        current_version_created_at=current,
        oldest_enabled_version_created_at=oldest,
        enabled=bool(live),
        rotation_configured=bool(key.rotation_period),
        exportable=any(bool(v.import_job) for v in versions),
        signing=purpose in _SIGNING_PURPOSES,
        aliases=tuple(dict.fromkeys((listed, secret_id))),
    )


def service_account_key_state(
    source: str, ref: ObjectRef, key: Any | None, now: datetime
) -> PersistenceState:
    """Whether a service-account key a leaver made (``GetServiceAccountKey``) can still be used:
    it exists, is not disabled and not past its ``valid_before_time``."""
    if key is None:
        return PersistenceState(source, ref, False, "deleted")
    if key.disabled:
        return PersistenceState(source, ref, False, "disabled")
    expires = ts_to_datetime(key.valid_before_time)
    if expires is not None and expires.year < 9999 and expires <= now:
        return PersistenceState(source, ref, False, f"expired {expires.isoformat()}")
    return PersistenceState(source, ref, True, "enabled")


def policy_binding_ids(resource: str, policy: Any) -> set[str]:
    """The :func:`binding_object_id`-s of every (role, member[, condition]) of an IAM policy."""
    out: set[str] = set()
    for b in policy.bindings:
        expression = b.condition.expression if b.HasField("condition") else ""
        for member in b.members:
            out.add(binding_object_id(resource, b.role, member, expression))
    return out


def binding_resource(object_id: str) -> str:
    """The resource part of a :func:`binding_object_id` (a crypto key, a secret, or a project,
    organization or folder; a custom role's own ``projects/P/roles/R`` follows it)."""
    for pattern in (CRYPTO_KEY_NAME, SECRET_NAME, TOP_NAME):
        m = pattern.match(object_id)
        if m:
            return m.group(0)
    raise ValueError(f"not a binding id: {object_id!r}")


# --- Data Access audit logs --------------------------------------------------------------------


def _log_type(value: Any) -> str:
    """``AuditLogConfig.log_type``: an int in ``google.iam.v1`` protobufs, an enum elsewhere."""
    if isinstance(value, int) and not hasattr(value, "name"):
        from google.iam.v1 import policy_pb2

        return str(policy_pb2.AuditLogConfig.LogType.Name(value))
    return _state_name(value)


def data_read_logging(policies: Sequence[tuple[str, Any]], service: str) -> tuple[bool, tuple[str, ...]]:
    """Whether DATA_READ audit logs are on for ``service`` in any of ``policies`` (a project's and
    its ancestors' IAM policies, ``(resource, policy)``: audit configs are inherited), and the
    members exempted from them (their reads are not logged)."""
    enabled = False
    exempted: list[str] = []
    for _resource, policy in policies:
        for config in policy.audit_configs:
            if config.service not in (service, "allServices"):
                continue
            for log in config.audit_log_configs:
                if _log_type(log.log_type) == "DATA_READ":
                    enabled = True
                    exempted.extend(log.exempted_members)
    return enabled, tuple(dict.fromkeys(exempted))
