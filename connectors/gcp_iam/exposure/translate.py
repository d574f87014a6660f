"""Pure: Cloud Audit Log entries -> ExposureEvent (the inventory's payloads -> states are in
:mod:`connectors.gcp_iam.exposure.states`).

Entries are translated from their documented JSON shape (``gcloud logging read --format=json``:
``insertId``, ``logName``, ``timestamp``, ``resource``, ``protoPayload`` = an ``AuditLog`` with
``methodName``, ``serviceName``, ``resourceName``, ``authenticationInfo``, ``status``,
``request``, ``response``, ``serviceData``); :func:`entry_json` turns the client library's
``LogEntry`` (its ``proto_payload`` a ``google.protobuf.Any`` holding the ``AuditLog``) into
that shape, so fixtures and live reads go through the same code.

Only the methods in ``RELEVANT`` become events; a call whose ``status.code`` is not 0 failed and
is not an exposure. Required fields are read as ``raw["key"]`` (a relevant entry without one is
malformed and fails its page), optional ones with ``.get``. Object ids are full resource names
with the **project id** (Secret Manager names carry the project number: both are aliases).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.gcp_iam.times import parse_rfc3339
from connectors.gcp_iam.translate import condition_key
from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef
from offboard_audit.core.records import CredentialKind, ExposureHow

IAM = "iam.googleapis.com"
SECRETS = "secretmanager.googleapis.com"
KMS = "cloudkms.googleapis.com"
RESOURCE_MANAGER = "cloudresourcemanager.googleapis.com"

# (serviceName, last segment of methodName) -> how. Secret Manager's and IAM's method names are
# fully qualified (google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion); Cloud
# KMS logs short ones (AsymmetricSign): the last segment covers both.
RELEVANT: dict[tuple[str, str], ExposureHow] = {
    (IAM, "CreateServiceAccountKey"): ExposureHow.CREATED,
    (SECRETS, "AddSecretVersion"): ExposureHow.CREATED,
    (SECRETS, "AccessSecretVersion"): ExposureHow.READ,
    (KMS, "CreateCryptoKey"): ExposureHow.CREATED,
    (KMS, "AsymmetricSign"): ExposureHow.USED,
    # The call makes a version from material the caller holds (as a Vault transit import):
    # created, so the version it made, stamped a moment after the entry, is theirs.
    (KMS, "ImportCryptoKeyVersion"): ExposureHow.CREATED,
    # SetIamPolicy of the resources whose policy the inventory can re-read.
    (RESOURCE_MANAGER, "SetIamPolicy"): ExposureHow.CHANGED_ACCESS,
    (SECRETS, "SetIamPolicy"): ExposureHow.CHANGED_ACCESS,
    (KMS, "SetIamPolicy"): ExposureHow.CHANGED_ACCESS,
}

# The Logging filter's method clauses: exact names where the log writes one form, a substring
# (":") where it may write the short or the qualified one.
FILTER_EXACT = (
    "google.iam.admin.v1.CreateServiceAccountKey",
    "google.cloud.secretmanager.v1.SecretManagerService.AddSecretVersion",
    "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
)
FILTER_SUBSTRING = ("CreateCryptoKey", "AsymmetricSign", "ImportCryptoKeyVersion", "SetIamPolicy")
# Methods logged only when Data Access audit logs (DATA_READ) are on for their service.
DATA_READ_METHODS = {SECRETS: "AccessSecretVersion", KMS: "AsymmetricSign"}

_SERVICE_ACCOUNT = ".gserviceaccount.com"
SECRET_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)")
CRYPTO_KEY_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/keyRings/([^/]+)/cryptoKeys/([^/]+)")
_KEY_RING = re.compile(r"^projects/([^/]+)/locations/([^/]+)/keyRings/([^/]+)$")
_SA_KEY = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$")
_SA = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
TOP_NAME = re.compile(r"^(?:projects|organizations|folders)/[^/]+")
_HIERARCHY = re.compile(r"^(organizations|folders)/[^/]+$")
_LOG_PARENT = re.compile(r"^((?:projects|organizations|folders|billingAccounts)/[^/]+)/logs/")


class MalformedEntry(ValueError):
    """A relevant entry without a field Cloud Audit Logs always writes."""


# --- the library's LogEntry -> the documented JSON shape ---------------------------------------


def entry_json(entry: Any) -> dict[str, Any]:
    """A ``logging_v2.types.LogEntry`` (proto-plus) as the JSON the API documents.

    The ``AuditLog`` is unpacked from ``proto_payload`` (a ``google.protobuf.Any``); its
    deprecated ``serviceData`` Any is kept only when it is an IAM ``AuditData`` (the policy delta
    of a ``SetIamPolicy``): other services put their own types there, which this code need not
    (and cannot always) decode.
    """
    from google.cloud.audit import audit_log_pb2
    from google.iam.v1.logging import audit_data_pb2
    from google.protobuf import json_format

    pb = type(entry).pb(entry)
    out: dict[str, Any] = {
        "insertId": pb.insert_id,
        "logName": pb.log_name,
        "resource": {"type": pb.resource.type, "labels": dict(pb.resource.labels)},
    }
    if pb.HasField("timestamp"):
        out["timestamp"] = pb.timestamp.ToJsonString()
    if pb.HasField("proto_payload"):
        audit = audit_log_pb2.AuditLog()
        if not pb.proto_payload.Unpack(audit):
            out["protoPayload"] = {"@type": pb.proto_payload.type_url}
            return out
        service_data = None
        if audit.HasField("service_data"):
            data = audit_data_pb2.AuditData()
            if audit.service_data.Unpack(data):
                service_data = json_format.MessageToDict(data)
                service_data["@type"] = "type.googleapis.com/google.iam.v1.logging.AuditData"
            audit.ClearField("service_data")
        payload = json_format.MessageToDict(audit)
        payload["@type"] = "type.googleapis.com/google.cloud.audit.AuditLog"
        if service_data is not None:
            payload["serviceData"] = service_data
        out["protoPayload"] = payload
    return out


# --- entries -> events -------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the Logging filter and checkpoints take it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def method_of(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(serviceName, last segment of methodName)."""
    method = str(payload.get("methodName") or "")
    return str(payload.get("serviceName") or ""), method.rsplit(".", 1)[-1]


def actor_of(auth: Mapping[str, Any]) -> Actor | None:
    """The actor of an entry's ``authenticationInfo``, or None when nobody is named.

    A person (``principalEmail`` of a Google account) is matched by email. A service account
    acting for a person (``serviceAccountDelegationInfo``: impersonation) is the person, and only
    the person is named: the service account is not theirs, so a key or a role they give it is
    left for another identity (it outlives their Google account). A service account acting on its own is that account of the source (``account_id``),
    matched as the IAM source links it (its owner), like an AWS IAM user. Workforce identity
    federation names only a ``principalSubject``: its last segment is matched as a name.
    """
    email = str(auth.get("principalEmail") or "").strip().lower()
    if email.endswith(_SERVICE_ACCOUNT):
        humans = []
        for d in auth.get("serviceAccountDelegationInfo") or ():
            first = (d.get("firstPartyPrincipal") or {}).get("principalEmail") or ""
            if first and not str(first).lower().endswith(_SERVICE_ACCOUNT):
                humans.append(str(first).lower())
        if humans:
            return Actor(f"user:{humans[0]} as serviceAccount:{email}", "impersonation", names=(humans[0],))
        return Actor(f"serviceAccount:{email}", "service-account", account_id=email, names=(email,))
    if email:
        return Actor(f"user:{email}", "user", names=(email,))
    subject = str(auth.get("principalSubject") or "").strip()
    if subject:
        return Actor(subject, "principal", names=(subject.rstrip("/").rsplit("/", 1)[-1],))
    return None


def _project_name(name: str, scope: str) -> str:
    """``projects/<number or id>/rest`` with the project id of ``scope``."""
    parts = name.split("/", 2)
    if len(parts) == 3 and parts[0] == "projects" and not _HIERARCHY.match(scope):
        return f"projects/{scope}/{parts[2]}"
    return name


def secret_name(name: str, scope: str) -> str | None:
    """``projects/<id>/secrets/<s>`` of a secret or version name (with the scope's project id)."""
    m = SECRET_NAME.match(name)
    return _project_name(m.group(0), scope) if m else None


def key_name(name: str, scope: str) -> str | None:
    """``projects/<id>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`` of a key or key version name."""
    m = CRYPTO_KEY_NAME.match(name)
    return _project_name(m.group(0), scope) if m else None


def scope_of_log(log_name: str) -> str:
    """The project id (``organizations/N``, ``folders/F``) whose log holds an entry."""
    m = _LOG_PARENT.match(log_name)
    if not m:
        raise ValueError(f"not a log name: {log_name!r}")
    parent = m.group(1)
    return parent.split("/", 1)[1] if parent.startswith("projects/") else parent


def _policy_resource(name: str, scope: str) -> str | None:
    """The resource of a SetIamPolicy whose policy the inventory can re-read, normalised."""
    if _HIERARCHY.match(name):
        return name
    if re.match(r"^projects/[^/]+$", name):
        return f"projects/{scope}" if not _HIERARCHY.match(scope) else name
    secret = SECRET_NAME.match(name)
    if secret and secret.group(0) == name:
        return secret_name(name, scope)
    key = CRYPTO_KEY_NAME.match(name)
    if key and key.group(0) == name:
        return key_name(name, scope)
    return None


def binding_object_id(resource: str, role: str, member: str, condition_expression: str = "") -> str:
    """``<resource>/<role>/<member>[#condition=<hash>]``: for a project, organization or folder
    the same id the IAM source gives the binding's credential."""
    cid = f"{resource}/{role}/{member}"
    if condition_expression:
        cid += f"#condition={condition_key(condition_expression)}"
    return cid


def _targets(
    service: str,
    method: str,
    payload: Mapping[str, Any],
    scope: str,
    actor: Actor,
) -> list[ObjectRef]:
    resource = str(payload["resourceName"])
    request = payload.get("request") or {}
    response = payload.get("response") or {}
    if service == SECRETS and method in ("AddSecretVersion", "AccessSecretVersion"):
        found = secret_name(resource, scope) or secret_name(str(request.get("parent") or ""), scope)
        if found is None:
            raise ValueError(f"resourceName {resource!r} names no secret")
        return [ObjectRef(scope, CredentialKind.SECRET, found)]
    if service == KMS and method in ("CreateCryptoKey", "AsymmetricSign", "ImportCryptoKeyVersion"):
        found = key_name(str(response.get("name") or ""), scope) or key_name(resource, scope)
        if found is None and request.get("cryptoKeyId"):
            ring = str(request.get("parent") or resource)
            if _KEY_RING.match(ring):
                found = _project_name(f"{ring}/cryptoKeys/{request['cryptoKeyId']}", scope)
        if found is None:
            raise ValueError(f"resourceName {resource!r} names no crypto key")
        return [ObjectRef(scope, CredentialKind.KMS_KEY, found)]
    if service == IAM and method == "CreateServiceAccountKey":
        key = _SA_KEY.match(str(response.get("name") or ""))
        if key is None:
            return []  # no key name in the response: nothing the inventory could look up
        email = key.group(2).lower()
        own = {n.lower() for n in actor.names} | {actor.account_id.lower()}
        if email in own:
            return []  # a service account making a key for itself: not left for another identity
        project = key.group(1)
        if project == "-":
            project = email.split("@", 1)[1].split(".", 1)[0] if "@" in email else scope
        key_name_ = f"projects/{project}/serviceAccounts/{email}/keys/{key.group(3)}"
        return [ObjectRef(project, CredentialKind.SERVICE_ACCOUNT_KEY, key_name_, email)]
    if method == "SetIamPolicy":
        target = _policy_resource(resource, scope)
        if target is None:
            return []
        data = payload.get("serviceData") or {}
        deltas = (data.get("policyDelta") or {}).get("bindingDeltas") or ()
        mine = {f"{kind}:{n}".lower() for n in actor.names for kind in ("user", "serviceAccount")}
        out: list[ObjectRef] = []
        for d in deltas:
            if str(d.get("action") or "") != "ADD":
                continue
            member = str(d["member"])
            if member.lower() in mine:
                continue  # granting oneself is not a door left for somebody else
            condition = str((d.get("condition") or {}).get("expression") or "")
            object_id = binding_object_id(target, str(d["role"]), member, condition)
            out.append(ObjectRef(scope, CredentialKind.IAM_BINDING, object_id, member))
        return out
    return []


def entry_events(raw: Mapping[str, Any], source: str, stream: str = "") -> list[ExposureEvent]:
    """The exposure events of one log entry (none for an irrelevant or failed call).

    Raises :class:`MalformedEntry` for a relevant entry without ``insertId``, ``timestamp``,
    ``logName``, ``protoPayload.resourceName`` or (for a binding delta) its ``role`` / ``member``.
    """
    payload = raw.get("protoPayload")
    if not isinstance(payload, Mapping):
        return []
    service, method = method_of(payload)
    how = RELEVANT.get((service, method))
    if how is None:
        return []
    if int((payload.get("status") or {}).get("code") or 0) != 0:
        return []  # the call failed: nothing was read, made or granted
    try:
        actor = actor_of(payload.get("authenticationInfo") or {})
        if actor is None:
            return []
        event_id = str(raw["insertId"])
        at = parse_time(str(raw["timestamp"]))
        scope = scope_of_log(str(raw["logName"]))
        labels = (raw.get("resource") or {}).get("labels") or {}
        if labels.get("project_id") and not _HIERARCHY.match(scope):
            scope = str(labels["project_id"])
        targets = _targets(service, method, payload, scope, actor)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedEntry(
            f"{payload.get('methodName', '?')} entry {raw.get('insertId', '?')}: missing or bad field {exc}"
        ) from None
    action = str(payload["methodName"]).rsplit(".", 1)[-1]
    out: list[ExposureEvent] = []
    for i, target in enumerate(targets):
        eid = event_id if len(targets) == 1 else f"{event_id}#{i}"
        out.append(ExposureEvent(source, target.scope, eid, at, action, how, actor, target, stream))
    return out
