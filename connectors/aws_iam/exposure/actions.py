"""The rotate action: Secrets Manager ``RotateSecret``, planned only with
``policy.auto_rotate_secrets = true`` and only for a secret whose rotation is configured.

The engine runs it like every action (``offboard_audit.engine.steps``): read, identity check
(the secret's ARN: a secret deleted and re-created under the same name has another ARN), no-op
check, change, one re-read to verify, intent and outcome audit events. Rotation cannot be undone.

- ``read``: ``secretsmanager:DescribeSecret`` (gone, or scheduled for deletion: nothing to do;
  rotation not configured: refused) and ``ListSecretVersionIds``: ``active`` while no
  ``AWSCURRENT`` or ``AWSPENDING`` version was created after the last exposure (the time in the
  finding's detail). A rotation in progress (``AWSPENDING``) counts as done: the audit resolves
  the finding once the new version is current.
- ``change``: ``secretsmanager:RotateSecret`` (the configured Lambda makes the new version).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

from connectors._shared.actions import GONE, NoUndo, irreversible
from connectors.aws_iam.clients import ClientProvider
from connectors.aws_iam.errors import describe, error_code
from connectors.aws_iam.exposure.clients import ExposureClients
from connectors.aws_iam.exposure.inventory import secret_versions
from connectors.aws_iam.exposure.states import aware
from connectors.aws_iam.revoker import AwsIamRevoker
from connectors.aws_iam.settings import AwsSettings
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.exposure import base_scope, exposed_until
from offboard_audit.core.protocols import ActionSpec
from offboard_audit.core.records import CredentialKind

ROTATE_SECRET = "rotate_secret"


class RotateSecret(NoUndo):
    """One ActionSpec: rotate a Secrets Manager secret with its configured rotation."""

    definition = irreversible(
        ROTATE_SECRET,
        CredentialKind.SECRET,
        (
            "secretsmanager:DescribeSecret",
            "secretsmanager:ListSecretVersionIds",
            "secretsmanager:RotateSecret",
        ),
        "rotate the secret with its configured rotation (policy.auto_rotate_secrets); "
        "the old value stops working once the rotation function finishes",
        stage=Stage.ROTATE,
    )

    def __init__(self, clients: ExposureClients) -> None:
        self.clients = clients

    def _client(self, target: ActionTarget) -> Any:
        parts = target.credential_id.split(":")
        if len(parts) < 7 or parts[2] != "secretsmanager":
            raise RevokeError(f"{target.credential_id!r} is not a Secrets Manager secret ARN")
        account, region = parts[4], parts[3]
        home = self.clients.provider.home_account()
        if base_scope(target.scope) and base_scope(target.scope) != account:
            raise RevokeError(f"secret {target.credential_id} is not in account {base_scope(target.scope)}")
        return self.clients.client("" if account == home else account, "secretsmanager", region)

    def read(self, target: ActionTarget) -> ResourceState:
        sm = self._client(target)
        try:
            meta = sm.describe_secret(SecretId=target.credential_id)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return GONE
            raise RevokeError(
                f"secretsmanager:DescribeSecret {target.credential_id}: {describe(exc)}"
            ) from exc
        identity = str(meta["ARN"])
        if meta.get("DeletedDate") is not None:
            return ResourceState(exists=False, active=False, identity=identity)
        if not meta.get("RotationEnabled"):
            raise RevokeError(
                f"secret {meta.get('Name')} has no rotation configured: rotate it by hand (rotate task)"
            )
        since = exposed_until(target.detail)
        if since is None:
            raise RevokeError(f"no exposure time recorded for {target.credential_id}: run the audit again")
        newest: datetime | None = None
        try:
            for v in secret_versions(sm, identity):
                stages = set(v.get("VersionStages") or ())
                created = aware(v.get("CreatedDate"))
                if stages & {"AWSCURRENT", "AWSPENDING"} and created is not None:
                    newest = created if newest is None else max(newest, created)
        except Exception as exc:
            raise RevokeError(f"secretsmanager:ListSecretVersionIds {identity}: {describe(exc)}") from exc
        rotated = newest is not None and newest > since
        data = (("newest_version_created", newest.astimezone(UTC).isoformat() if newest else ""),)
        return ResourceState(exists=True, active=not rotated, data=data, identity=identity)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        sm = self._client(target)
        try:
            sm.rotate_secret(SecretId=before.identity or target.credential_id)
        except Exception as exc:
            raise RevokeError(f"secretsmanager:RotateSecret {target.credential_id}: {describe(exc)}") from exc


class AwsRevoker(AwsIamRevoker):
    """The ``aws_iam`` revoker with the exposure actions (``rotate_secret``) added."""

    actions: ClassVar[Mapping[str, ActionDef]] = MappingProxyType(
        {**AwsIamRevoker.actions, ROTATE_SECRET: RotateSecret.definition}
    )

    def __init__(self, settings: AwsSettings, provider: ClientProvider, clock: Any = None) -> None:
        super().__init__(settings, provider, clock)
        specs: dict[str, ActionSpec] = dict(self.specs)
        specs[ROTATE_SECRET] = RotateSecret(ExposureClients(provider))
        self.specs = MappingProxyType(specs)
