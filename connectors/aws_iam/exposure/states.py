"""Pure: the exposure inventory's payloads (Secrets Manager, SSM, KMS, IAM) -> SecretState /
PersistenceState, the current state the rules compare a leaver's accesses with.

Required fields are read as ``raw["Key"]``, optional ones with ``.get``. A secret is listed under
every alias a caller may name it by (``<region>:<name>``, its ARN with and without the random
suffix), so that an event names it whichever way the caller did.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors._shared.marks import is_signing, owner_from
from connectors.aws_iam.exposure.key_policy import outside_accounts, policy_grantee
from connectors.aws_iam.exposure.translate import parse_time
from offboard_audit.core.exposure import MADE_BY_THE_CALL, ObjectRef, PersistenceState, SecretState
from offboard_audit.core.records import CredentialKind

_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")


def tags_of(raw: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in raw or ():
        key = t.get("Key", t.get("TagKey"))
        value = t.get("Value", t.get("TagValue"))
        if key is not None:
            out[str(key).casefold()] = str(value or "")
    return out


def aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Listing:
    """Where the inventory lists a secret or key (source, account, region) and how it reads their
    tags (``owner_tag_keys``, ``signing_tags``): what each ``*_state`` below needs besides the payload."""

    source: str
    scope: str
    region: str
    owner_keys: Sequence[str]
    signing_tags: Sequence[tuple[str, str]]

    def owner(self, tags: Mapping[str, str]) -> str | None:
        return owner_from(tags, self.owner_keys)

    def signing(self, tags: Mapping[str, str]) -> bool:
        return is_signing(tags, self.signing_tags)


def secret_state(
    at: Listing, raw: Mapping[str, Any], versions: Sequence[Mapping[str, Any]] | None
) -> SecretState:
    """A Secrets Manager secret from ``ListSecrets`` (and ``ListSecretVersionIds`` when read)."""
    arn = str(raw["ARN"])
    name = str(raw["Name"])
    tags = tags_of(raw.get("Tags"))
    current = None
    for v in versions or ():
        if "AWSCURRENT" in (v.get("VersionStages") or ()):
            current = aware(v.get("CreatedDate"))
    partial = _SECRET_SUFFIX.sub("", arn)
    return SecretState(
        source=at.source,
        scope=at.scope,
        kind=CredentialKind.SECRET,
        secret_id=arn,
        name=name,
        owner=at.owner(tags),
        created_at=aware(raw.get("CreatedDate")),
        current_version_created_at=current,
        enabled=raw.get("DeletedDate") is None,
        rotation_configured=bool(raw.get("RotationEnabled"))
        and bool(raw.get("RotationLambdaARN") or raw.get("RotationRules")),
        exportable=True,
        signing=at.signing(tags),
        aliases=tuple(dict.fromkeys((f"{at.region}:{name}", partial, f"{at.region}:{arn}"))),
    )


def _path_aliases(region: str, name: str) -> list[str]:
    """``region:/a/b/c`` plus the GetParametersByPath patterns that return it."""
    out = [f"{region}:{name}"]
    parts = name.strip("/").split("/")
    lead = "/" if name.startswith("/") else ""
    for i in range(len(parts) - 1, -1, -1):
        parent = lead + "/".join(parts[:i]) if i else ""
        if i == len(parts) - 1:
            out.append(f"{region}:{parent}/+")
        out.append(f"{region}:{parent}/*")
    return out


def parameter_state(
    at: Listing,
    raw: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None,
    tags: Mapping[str, str],
) -> SecretState:
    """An SSM SecureString parameter from ``DescribeParameters`` (+ ``GetParameterHistory``)."""
    name = str(raw["Name"])
    current = aware(raw.get("LastModifiedDate"))
    if history:
        latest = max(history, key=lambda h: int(h.get("Version") or 0))
        current = aware(latest.get("LastModifiedDate")) or current
    arn = raw.get("ARN") or f"arn:aws:ssm:{at.region}:{at.scope}:parameter/{name.lstrip('/')}"
    return SecretState(
        source=at.source,
        scope=at.scope,
        kind=CredentialKind.PARAMETER,
        secret_id=str(arn),
        name=name,
        owner=at.owner(tags),
        current_version_created_at=current,
        enabled=True,
        rotation_configured=False,
        exportable=True,
        signing=at.signing(tags),
        aliases=tuple(dict.fromkeys(_path_aliases(at.region, name))),
    )


def kms_state(
    at: Listing,
    meta: Mapping[str, Any],
    rotation_enabled: bool,
    grants: Sequence[Mapping[str, Any]],
    tags: Mapping[str, str],
    policy: Any = None,
) -> SecretState:
    """A customer-managed KMS key from ``DescribeKey`` (+ rotation status, grants, tags, and the
    key policy from ``GetKeyPolicy``: each other account it lets use the key is a grantee)."""
    arn = str(meta["Arn"])
    key_id = str(meta["KeyId"])
    state = str(meta.get("KeyState") or "")
    origin = str(meta.get("Origin") or "AWS_KMS")
    return SecretState(
        source=at.source,
        scope=at.scope,
        kind=CredentialKind.KMS_KEY,
        secret_id=arn,
        name=str(meta.get("Description") or key_id),
        owner=at.owner(tags),
        created_at=aware(meta.get("CreationDate")),
        # Imported material is the key's only version until it is re-imported or the key replaced.
        current_version_created_at=aware(meta.get("CreationDate")),
        enabled=bool(meta.get("Enabled")) and state not in ("PendingDeletion", "PendingReplicaDeletion"),
        rotation_configured=rotation_enabled,
        # AWS-generated material never leaves KMS; imported (EXTERNAL) material was in someone's hands.
        exportable=origin == "EXTERNAL",
        signing=str(meta.get("KeyUsage") or "") == "SIGN_VERIFY",
        grantees=tuple(
            sorted(
                {str(g["GranteePrincipal"]) for g in grants if g.get("GranteePrincipal")}
                | {policy_grantee(a) for a in (outside_accounts(policy, at.scope) if policy else ())}
            )
        ),
        aliases=(f"{at.region}:{key_id}", f"{at.region}:{arn}", key_id),
    )


def trust_policy_outside(document: Any, scope: str) -> list[str]:
    """Accounts other than ``scope`` that a trust policy lets assume the role."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    found: set[str] = set()
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements or ():
        principal = st.get("Principal") if isinstance(st, dict) else None
        values: list[Any] = []
        if isinstance(principal, dict):
            aws = principal.get("AWS")
            values = aws if isinstance(aws, list) else [aws]
        elif principal == "*":
            found.add("*")
        for v in values:
            text = str(v)
            m = re.match(r"^(?:arn:aws[\w-]*:iam::)?(\d{12})", text)
            if text == "*":
                found.add("*")
            elif m and m.group(1) != scope:
                found.add(m.group(1))
    return sorted(found)


def password_set_state(
    source: str,
    ref: ObjectRef,
    set_at: datetime,
    profile_created: datetime | None,
    password_changed: datetime | None,
) -> PersistenceState:
    """A login profile whose password a leaver set (UpdateLoginProfile at ``set_at``), as
    ``GetLoginProfile`` (``profile_created``) and the credential report's
    ``password_last_changed`` see it now: still the password they set unless the profile was made
    after the call (deleted and given again) or its password changed after it. The call's own
    change is stamped during the call, up to ``MADE_BY_THE_CALL`` after its logged second. A date
    that is not known proves no change."""
    limit = set_at + MADE_BY_THE_CALL
    if profile_created is not None and profile_created > limit:
        return PersistenceState(source, ref, False, "re-created since")
    if password_changed is not None and password_changed > limit:
        return PersistenceState(source, ref, False, "password changed since")
    return PersistenceState(source, ref, True, "password set by the leaver not changed since")


def persistence_state(source: str, ref: ObjectRef, present: bool, detail: str = "") -> PersistenceState:
    return PersistenceState(source, ref, present, detail)
