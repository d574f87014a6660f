"""Pure: CloudTrail records -> ExposureEvent (the inventory's payloads: ``states.py``).

Only the event names that matter are translated (``RELEVANT``); a record with ``errorCode`` is a
failed call, not an exposure. Required fields are read as ``raw["Key"]`` (a record without one is
malformed and fails its log object), optional ones with ``.get``. Secret ids are kept as the caller
named them (an ARN, or ``<region>:<name>``); the inventory lists every such alias of a secret.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors.aws_iam.exposure.key_policy import outside_accounts, policy_grantee
from offboard_audit.core.exposure import SECRET_KINDS, Actor, ExposureEvent, ObjectRef
from offboard_audit.core.records import CredentialKind, ExposureHow

SECRETS = "secretsmanager.amazonaws.com"
SSM = "ssm.amazonaws.com"
KMS = "kms.amazonaws.com"
IAM = "iam.amazonaws.com"

# (eventSource, eventName) -> how. SSM reads count only with decryption (checked per record).
RELEVANT: dict[tuple[str, str], ExposureHow] = {
    (SECRETS, "GetSecretValue"): ExposureHow.READ,
    (SECRETS, "BatchGetSecretValue"): ExposureHow.READ,
    (SECRETS, "PutSecretValue"): ExposureHow.CREATED,
    (SECRETS, "CreateSecret"): ExposureHow.CREATED,
    (SECRETS, "UpdateSecret"): ExposureHow.CREATED,
    (SSM, "GetParameter"): ExposureHow.READ,
    (SSM, "GetParameters"): ExposureHow.READ,
    (SSM, "GetParametersByPath"): ExposureHow.READ,
    # With decryption it returns the values of the parameter's versions (up to the last 100).
    (SSM, "GetParameterHistory"): ExposureHow.READ,
    (SSM, "PutParameter"): ExposureHow.CREATED,
    (KMS, "CreateKey"): ExposureHow.CREATED,
    (KMS, "PutKeyPolicy"): ExposureHow.CHANGED_ACCESS,
    (KMS, "CreateGrant"): ExposureHow.CHANGED_ACCESS,
    (KMS, "GetParametersForImport"): ExposureHow.EXPORTED,
    (KMS, "ImportKeyMaterial"): ExposureHow.EXPORTED,
    (IAM, "CreateUser"): ExposureHow.CREATED,
    (IAM, "CreateAccessKey"): ExposureHow.CREATED,
    (IAM, "CreateLoginProfile"): ExposureHow.CREATED,
    # A new console password for an existing login profile: whoever set it knows it.
    (IAM, "UpdateLoginProfile"): ExposureHow.CHANGED_ACCESS,
    (IAM, "UpdateAssumeRolePolicy"): ExposureHow.CHANGED_ACCESS,
    (IAM, "CreateRole"): ExposureHow.CREATED,
    (IAM, "AttachUserPolicy"): ExposureHow.CHANGED_ACCESS,
}
RELEVANT_NAMES = frozenset(name for _src, name in RELEVANT)

# Actor types that stand for a person (or may): the rest (AWSService, AWSAccount) are skipped.
_PERSON_TYPES = frozenset({"IAMUser", "AssumedRole", "FederatedUser", "IdentityCenterUser", "Root"})


class MalformedRecord(ValueError):
    """A relevant record without a field CloudTrail always writes."""


def parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# CloudTrail writes the dates inside IAM *responses* the way the console shows them
# ("Aug 1, 2024 1:42:21 PM", UTC), not as ISO 8601 like the record's own eventTime.
_RESPONSE_DATE = "%b %d, %Y %I:%M:%S %p"


def response_time(value: str) -> datetime | None:
    """A date from a CloudTrail response element (ISO 8601 or the console form), None when it is
    neither: the caller then cannot tell a re-created object from the original and keeps it."""
    text = value.strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        return datetime.strptime(text, _RESPONSE_DATE).replace(tzinfo=UTC)
    except ValueError:
        return None


def actor_of(identity: Mapping[str, Any]) -> Actor | None:
    """The actor of a record's ``userIdentity``, or None for services and other accounts.

    An IAM user is its UserId (``principalId``): a user deleted and re-created under the same
    name has the same ARN but a new UserId, and the old user's events stay the old user's. A
    session is its ARN and, when the record names them, its ``sourceIdentity`` and
    ``onBehalfOf`` user: people who assume one role under one session name (a tool's fixed
    name) are different actors.
    """
    kind = str(identity.get("type") or "")
    if kind not in _PERSON_TYPES:
        return None
    arn = str(identity.get("arn") or "")
    names: list[str] = []
    context = identity.get("sessionContext") or {}
    source_identity = str(identity.get("sourceIdentity") or context.get("sourceIdentity") or "")
    if source_identity:
        names.append(source_identity)
    on_behalf = identity.get("onBehalfOf") or {}
    on_behalf_user = str(on_behalf.get("userId") or "")
    if on_behalf_user:
        names.append(on_behalf_user)
    if kind == "IAMUser":
        if identity.get("userName"):
            names.append(str(identity["userName"]))
        user_id = str(identity.get("principalId") or "")
        return Actor(user_id or arn, "iam-user", account_id=arn, names=tuple(names), uid=user_id)
    issuer = context.get("sessionIssuer") or {}
    issuer_id = str(issuer.get("principalId") or "") if issuer.get("type") == "IAMUser" else ""
    if kind == "FederatedUser" and issuer_id and issuer.get("userName"):
        # Before the session name, which the issuer chose: a broker's user (nobody's) falls to it.
        names.append(str(issuer["userName"]))
    if kind in ("AssumedRole", "FederatedUser") and "/" in arn:
        names.append(arn.rsplit("/", 1)[1])  # the session name (an email or user name for SSO)
    base = arn or on_behalf_user or str(identity.get("principalId") or "")
    if not base:
        return None
    who = [w for w in (source_identity, on_behalf_user) if w and w != base]
    if kind == "FederatedUser" and issuer_id:
        # A GetFederationToken session acts with the IAM user that made it (sessionIssuer), under
        # any name that user chose: it is linked as that user (its UserId), as the user's own
        # calls are, and sessions of one name made by two users are two actors.
        return Actor(
            "#".join((base, *who, issuer_id)),
            "federateduser",
            account_id=str(issuer.get("arn") or ""),
            names=tuple(dict.fromkeys(names)),
            uid=issuer_id,
        )
    return Actor("#".join((base, *who)), kind.lower(), names=tuple(dict.fromkeys(names)))


def _secret_id(region: str, value: str) -> str:
    return value if value.startswith("arn:") else f"{region}:{value}"


def _parameter_id(region: str, value: Any) -> str:
    """The parameter an SSM read or write names: ``region:name``, or its ARN (the inventory's id)
    when called by ARN, without a ``:version`` / ``:label`` selector (SSM takes ``name:3`` and
    ``name:prod`` for one version; a parameter name never holds a colon)."""
    text = str(value)
    if text.startswith("arn:"):
        parts = text.split(":", 5)
        if len(parts) == 6 and ":" in parts[5]:
            parts[5] = parts[5].partition(":")[0]
        return ":".join(parts)
    return f"{region}:{text.partition(':')[0]}"


_ACCOUNT_OF = re.compile(r"^(?:arn:aws[\w-]*:(?:iam|sts)::)?(\d{12})(?:$|:)")


def _account_of(principal: str) -> str | None:
    """The account of an IAM principal (ARN or bare account id); None for a service principal."""
    m = _ACCOUNT_OF.match(principal)
    return m.group(1) if m else None


def _opened_to(key: ObjectRef, policy: Any, scope: str) -> list[ObjectRef]:
    """The key once per other account the key policy set lets use it (as ``owner``)."""
    return [replace(key, owner=policy_grantee(a)) for a in outside_accounts(policy, scope)]


def _digest(document: Any) -> str:
    """A stable digest of a policy document (URL-encoded JSON text or a parsed object)."""
    if isinstance(document, str):
        text = urllib.parse.unquote(document)
        try:
            document = json.loads(text)
        except ValueError:
            return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def policy_digest(document: Any) -> str:
    return _digest(document)


# The fingerprint of a login profile whose password a call set (UpdateLoginProfile): when.
_PASSWORD_SET = "password-set:"


def password_set(at: datetime) -> str:
    return f"{_PASSWORD_SET}{at.isoformat()}"


def password_set_at(fingerprint: str) -> datetime | None:
    """When the call of a :func:`password_set` fingerprint set the password; None for another
    fingerprint (a CreateLoginProfile's creation date)."""
    if not fingerprint.startswith(_PASSWORD_SET):
        return None
    return parse_time(fingerprint[len(_PASSWORD_SET) :])


def _targets(
    source: str,
    name: str,
    region: str,
    scope: str,
    req: Mapping[str, Any],
    resp: Mapping[str, Any],
    actor: Actor,
    at: datetime,
) -> list[ObjectRef]:
    if source == SECRETS:
        if name == "BatchGetSecretValue":
            return [
                ObjectRef(scope, CredentialKind.SECRET, _secret_id(region, str(i)))
                for i in req.get("secretIdList") or ()
            ]
        if name == "CreateSecret":
            arn = resp.get("aRN") or resp.get("arn")
            ident = str(arn) if arn else _secret_id(region, str(req["name"]))
            return [ObjectRef(scope, CredentialKind.SECRET, ident)]
        return [ObjectRef(scope, CredentialKind.SECRET, _secret_id(region, str(req["secretId"])))]
    if source == SSM:
        if name == "PutParameter":
            return [ObjectRef(scope, CredentialKind.PARAMETER, _parameter_id(region, req["name"]))]
        if not req.get("withDecryption"):
            return []  # a SecureString read without decryption returns ciphertext only
        if name in ("GetParameter", "GetParameterHistory"):
            return [ObjectRef(scope, CredentialKind.PARAMETER, _parameter_id(region, req["name"]))]
        if name == "GetParameters":
            return [
                ObjectRef(scope, CredentialKind.PARAMETER, _parameter_id(region, n)) for n in req["names"]
            ]
        path = str(req["path"]).rstrip("/")
        wildcard = "*" if req.get("recursive") else "+"
        return [ObjectRef(scope, CredentialKind.PARAMETER, f"{region}:{path}/{wildcard}")]
    if source == KMS:
        if name == "CreateKey":
            meta = (resp or {}).get("keyMetadata") or {}
            arn = meta.get("arn") or meta.get("keyId")
            if not arn:
                return []
            made = ObjectRef(scope, CredentialKind.KMS_KEY, _secret_id(region, str(arn)))
            policy = req.get("policy")  # optional: without one, AWS sets the account-only default
            return [made, *_opened_to(made, policy, scope)] if policy else [made]
        named = _secret_id(region, str(req["keyId"]))
        if name == "PutKeyPolicy":
            changed = ObjectRef(scope, CredentialKind.KMS_KEY, named)
            return _opened_to(changed, req["policy"], scope) or [changed]
        grantee = str(req.get("granteePrincipal") or "") if name == "CreateGrant" else ""
        if _account_of(grantee) not in (None, scope):
            # A grant to another account: its holder uses the key from there while it is live.
            return [ObjectRef(scope, CredentialKind.KMS_KEY, named, owner=grantee)]
        return [ObjectRef(scope, CredentialKind.KMS_KEY, named)]
    # IAM: objects made for an identity (persistence)
    if name == "CreateUser":
        user = (resp or {}).get("user") or {}
        return [
            ObjectRef(
                scope,
                CredentialKind.ACCOUNT,
                str(req["userName"]),
                str(req["userName"]),
                str(user.get("userId") or ""),
            )
        ]
    if name == "CreateAccessKey":
        key = (resp or {}).get("accessKey") or {}
        owner = str(req.get("userName") or key.get("userName") or (actor.names[-1] if actor.names else ""))
        key_id = key.get("accessKeyId")
        return [ObjectRef(scope, CredentialKind.ACCESS_KEY, str(key_id), owner)] if key_id else []
    if name == "CreateLoginProfile":
        user = str(req["userName"])
        profile = (resp or {}).get("loginProfile") or {}
        return [
            ObjectRef(
                scope,
                CredentialKind.PASSWORD,
                f"{user}/login-profile",
                user,
                _iso(response_time(str(profile.get("createDate") or ""))),
            )
        ]
    if name == "UpdateLoginProfile":
        # No response: the fingerprint is when the password was set, which the inventory compares
        # with the profile's creation and the password's last change.
        user = str(req["userName"])
        return [ObjectRef(scope, CredentialKind.PASSWORD, f"{user}/login-profile", user, password_set(at))]
    if name in ("UpdateAssumeRolePolicy", "CreateRole"):
        role = str(req["roleName"])
        doc = req["policyDocument"] if name == "UpdateAssumeRolePolicy" else req["assumeRolePolicyDocument"]
        return [ObjectRef(scope, CredentialKind.TRUST_POLICY, role, role, policy_digest(doc))]
    if name == "AttachUserPolicy":
        user = str(req["userName"])
        return [ObjectRef(scope, CredentialKind.IAM_BINDING, f"{user}/{req['policyArn']}", user)]
    return []


def record_events(raw: Mapping[str, Any], source: str, stream: str = "") -> list[ExposureEvent]:
    """The exposure events of one CloudTrail record (none for an irrelevant or failed call).

    Raises :class:`MalformedRecord` for a relevant record that lacks a field CloudTrail always
    writes (``eventTime``, ``eventID``, ``userIdentity``, the request parameter naming the object).
    """
    name = raw.get("eventName")
    if name not in RELEVANT_NAMES:
        return []
    how = RELEVANT.get((str(raw.get("eventSource")), str(name)))
    if how is None or raw.get("errorCode"):
        return []
    try:
        actor = actor_of(raw["userIdentity"])
        if actor is None:
            return []
        at = parse_time(str(raw["eventTime"]))
        event_id = str(raw["eventID"])
        region = str(raw["awsRegion"])
        scope = str(raw.get("recipientAccountId") or raw["userIdentity"].get("accountId") or "")
        req = raw.get("requestParameters") or {}
        resp = raw.get("responseElements") or {}
        targets = _targets(str(raw["eventSource"]), str(name), region, scope, req, resp, actor, at)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedRecord(
            f"{name} record {raw.get('eventID', '?')}: missing or bad field {exc}"
        ) from None
    out: list[ExposureEvent] = []
    for i, target in enumerate(targets):
        eid = event_id if len(targets) == 1 else f"{event_id}#{i}"
        # A key handed to another account (its owner) is a change of access, whatever the call
        # (a CreateKey with a policy also made the key).
        target_how = ExposureHow.CHANGED_ACCESS if target.owner and target.kind in SECRET_KINDS else how
        out.append(ExposureEvent(source, scope, eid, at, str(name), target_how, actor, target, stream))
    return out


def records(document: Any) -> Iterator[Mapping[str, Any]]:
    """The records of one log file's JSON (``{"Records": [...]}``); raises MalformedRecord."""
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise MalformedRecord('not a CloudTrail log file (no "Records" list)')
    for rec in document["Records"]:
        if not isinstance(rec, dict):
            raise MalformedRecord("a record is not an object")
        yield rec


def _iso(t: datetime | None) -> str:
    return t.isoformat() if t is not None else ""
