"""The inventory of one AWS account: its secrets and keys, and the objects leavers made.

Per account and region (``[sources.exposure] regions``):

- Secrets Manager: ``ListSecrets`` (every secret: name, tags, rotation, deletion), then
  ``ListSecretVersionIds`` for the secrets a leaver touched (version creation dates, the
  ``AWSCURRENT`` stage). Never ``GetSecretValue``.
- SSM: ``DescribeParameters`` (SecureString only), then ``GetParameterHistory`` (without
  decryption) and ``ListTagsForResource`` for the parameters a leaver touched.
- KMS: ``ListKeys``, then ``DescribeKey``, ``GetKeyRotationStatus``, ``ListGrants``,
  ``ListResourceTags`` and ``GetKeyPolicy`` for the keys a leaver touched (customer-managed keys
  only).
- IAM, for the objects a leaver made (global): ``GetUser`` (same ``UserId`` as created),
  ``ListAccessKeys`` (key still there and active), ``GetLoginProfile`` (same creation time; for a
  password a leaver set with ``UpdateLoginProfile``, not made since, and the credential report's
  ``password_last_changed`` not after it: ``GenerateCredentialReport`` / ``GetCredentialReport``),
  ``GetRole`` (the trust policy they set still in place; accounts outside it named),
  ``ListAttachedUserPolicies``.

Any call that fails raises: the caller fails the whole account (``ScopeFailure``), never an
empty inventory.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.aws_iam.errors import error_code
from connectors.aws_iam.exposure import states as st
from connectors.aws_iam.exposure import translate as tr
from connectors.aws_iam.exposure.clients import ExposureClients
from connectors.aws_iam.exposure.settings import ExposureSettings
from connectors.aws_iam.payloads import CredentialReport
from offboard_audit.core.exposure import (
    InventoryRead,
    ObjectRef,
    PersistenceState,
    SecretListing,
    SecretState,
)
from offboard_audit.core.records import CredentialKind


def with_listings(read: InventoryRead, regions: Sequence[str]) -> InventoryRead:
    """``read`` saying what it listed: every secret, parameter and key of ``regions``, no other
    region. A region dropped from ``regions`` is not read, which says nothing about its secrets:
    their stored state is kept, never taken as rotated or deleted."""
    kinds = (CredentialKind.SECRET, CredentialKind.PARAMETER, CredentialKind.KMS_KEY)
    return replace(read, listed=tuple(SecretListing(kind, region) for region in regions for kind in kinds))


def secret_versions(sm: Any, secret_id: str) -> list[Any]:
    """Every version of a secret (``ListSecretVersionIds``, NextToken pages; boto3 has no
    paginator for it): ids, stages and creation dates, never values."""
    versions: list[Any] = []
    token: str | None = None
    while True:
        page = sm.list_secret_version_ids(SecretId=secret_id, **({"NextToken": token} if token else {}))
        versions.extend(page.get("Versions") or ())
        token = page.get("NextToken")
        if not token:
            return versions


@dataclass
class AccountInventory:
    """Reads the inventory of one account (see the module docstring)."""

    source: str
    account: str
    clients: ExposureClients
    settings: ExposureSettings
    # The IAM source's credential report reader (generate, then poll within report_timeout).
    read_report: Callable[[Any], CredentialReport] | None = None
    # The account the clients are made for: "" is the home account's own credentials.
    _client_account: str = field(init=False, repr=False)
    _report_read: CredentialReport | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._client_account = "" if self.account == self.clients.provider.home_account() else self.account

    def _report(self, iam: Any) -> CredentialReport:
        """The account's credential report, read once, when a password a leaver set is checked."""
        if self._report_read is None:
            if self.read_report is None:
                raise RuntimeError("no credential report reader: a password change cannot be dated")
            self._report_read = self.read_report(iam)
        return self._report_read

    def _client(self, service: str, region: str) -> Any:
        return self.clients.client(self._client_account, service, region)

    def secrets(self, wanted: Sequence[ObjectRef]) -> list[SecretState]:
        wanted_ids = {r.object_id for r in wanted if r.scope == self.account}
        out: list[SecretState] = []
        s = self.settings
        for region in s.regions:
            at = st.Listing(self.source, self.account, region, s.owner_tag_keys, s.signing_tags)
            out.extend(self._secrets_manager(at, wanted_ids))
            out.extend(self._parameters(at, wanted_ids))
            out.extend(self._kms(at, wanted_ids))
        return out

    def _secrets_manager(self, at: st.Listing, wanted: set[str]) -> list[SecretState]:
        sm = self._client("secretsmanager", at.region)
        out: list[SecretState] = []
        for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for raw in page.get("SecretList") or ():
                state = st.secret_state(at, raw, None)
                if wanted & {state.secret_id, *state.aliases}:
                    state = st.secret_state(at, raw, secret_versions(sm, state.secret_id))
                out.append(state)
        return out

    def _parameters(self, at: st.Listing, wanted: set[str]) -> list[SecretState]:
        ssm = self._client("ssm", at.region)
        out: list[SecretState] = []
        filters = [{"Key": "Type", "Option": "Equals", "Values": ["SecureString"]}]
        for page in ssm.get_paginator("describe_parameters").paginate(ParameterFilters=filters):
            for raw in page.get("Parameters") or ():
                name = str(raw["Name"])
                listed_state = st.parameter_state(at, raw, None, {})
                history: list[Any] | None = None
                tags: dict[str, str] = {}
                # A read by ARN names the parameter by its secret_id, a read by name or path by an alias.
                if wanted & {listed_state.secret_id, *listed_state.aliases}:
                    history = []
                    # WithDecryption is never set: the history is read without values.
                    for hpage in ssm.get_paginator("get_parameter_history").paginate(Name=name):
                        history.extend(hpage.get("Parameters") or ())
                    listed = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
                    tags = st.tags_of(listed.get("TagList"))
                out.append(st.parameter_state(at, raw, history, tags))
        return out

    def _kms(self, at: st.Listing, wanted: set[str]) -> list[SecretState]:
        kms = self._client("kms", at.region)
        out: list[SecretState] = []
        for page in kms.get_paginator("list_keys").paginate():
            for raw in page.get("Keys") or ():
                key_id = str(raw["KeyId"])
                arn = str(raw.get("KeyArn") or "")
                if not wanted & {key_id, arn, f"{at.region}:{key_id}", f"{at.region}:{arn}"}:
                    continue
                meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
                if meta.get("KeyManager") == "AWS":
                    continue  # AWS-managed keys: nobody can import, grant or export them
                rotation = False
                if (
                    meta.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
                    and meta.get("Origin") != "EXTERNAL"
                ):
                    rotation = bool(kms.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled"))
                grants: list[Any] = []
                for gpage in kms.get_paginator("list_grants").paginate(KeyId=key_id):
                    grants.extend(gpage.get("Grants") or ())
                tags = st.tags_of(kms.list_resource_tags(KeyId=key_id).get("Tags"))
                # The policy in force: the accounts a leaver's PutKeyPolicy let in that still are.
                policy = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
                out.append(st.kms_state(at, meta, rotation, grants, tags, policy))
        return out

    # --- persistence ---------------------------------------------------------------------------

    def objects(self, refs: Sequence[ObjectRef]) -> list[PersistenceState]:
        iam = self._client("iam", self.clients.settings.region)
        return [self._object(iam, r) for r in refs if r.scope == self.account]

    def _object(self, iam: Any, ref: ObjectRef) -> PersistenceState:
        def gone(detail: str = "") -> PersistenceState:
            return st.persistence_state(self.source, ref, False, detail)

        try:
            if ref.kind is CredentialKind.ACCOUNT:
                user = iam.get_user(UserName=ref.object_id)["User"]
                same = not ref.fingerprint or str(user["UserId"]) == ref.fingerprint
                return st.persistence_state(self.source, ref, same, "" if same else "re-created since")
            if ref.kind is CredentialKind.ACCESS_KEY:
                keys = iam.list_access_keys(UserName=ref.owner)["AccessKeyMetadata"]
                for k in keys:
                    if k["AccessKeyId"] == ref.object_id:
                        active = k.get("Status") == "Active"
                        return st.persistence_state(
                            self.source, ref, active, "active" if active else "inactive"
                        )
                return gone()
            if ref.kind is CredentialKind.PASSWORD:
                profile = iam.get_login_profile(UserName=ref.owner)["LoginProfile"]
                created = st.aware(profile.get("CreateDate"))
                set_at = tr.password_set_at(ref.fingerprint)
                if set_at is not None:
                    # Only the credential report dates a password change (GetLoginProfile does not).
                    row = self._report(iam).rows.get(ref.owner)
                    changed = row.password_last_changed if row is not None else None
                    return st.password_set_state(self.source, ref, set_at, created, changed)
                made = tr.response_time(ref.fingerprint)
                same = made is None or created is None or abs((created - made).total_seconds()) < 300
                return st.persistence_state(self.source, ref, same, "" if same else "re-created since")
            if ref.kind is CredentialKind.TRUST_POLICY:
                role = iam.get_role(RoleName=ref.object_id)["Role"]
                document = role["AssumeRolePolicyDocument"]
                if isinstance(document, str):
                    document = json.loads(urllib.parse.unquote(document))
                same = tr.policy_digest(document) == ref.fingerprint
                outside = st.trust_policy_outside(document, self.account)
                detail = f"trust policy lets {', '.join(outside)} assume it" if outside else ""
                return st.persistence_state(self.source, ref, same, detail if same else "changed since")
            if ref.kind is CredentialKind.IAM_BINDING:
                policy_arn = ref.object_id.split("/", 1)[1]
                pages = iam.get_paginator("list_attached_user_policies").paginate(UserName=ref.owner)
                attached = {str(p["PolicyArn"]) for page in pages for p in page.get("AttachedPolicies") or ()}
                return st.persistence_state(self.source, ref, policy_arn in attached)
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return gone()
            raise
        return gone()
