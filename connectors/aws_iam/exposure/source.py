"""The ``aws_iam`` source's exposure reader: CloudTrail events and the secrets inventory.

Events come from the trail's log files in S3 (``cloudtrail.py``) or, with
``lake_event_data_store``, from a CloudTrail Lake query (``lake.py``). The inventory
(``inventory.py``) covers the same AWS accounts as the IAM source (the home account,
``accounts`` or ``organization``), each on its own: one account failing is a ``ScopeFailure``
of that account while the others report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from connectors._shared.inventory import ScopeFound, inventory_by_scope
from connectors.aws_iam.errors import describe
from connectors.aws_iam.exposure.clients import ExposureClients
from connectors.aws_iam.exposure.cloudtrail import TrailReader
from connectors.aws_iam.exposure.inventory import AccountInventory, with_listings
from connectors.aws_iam.exposure.lake import LakeReader
from connectors.aws_iam.exposure.settings import ExposureSettings
from connectors.aws_iam.source import AwsIamSource
from connectors.aws_iam.translate import SYSTEM
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import (
    PERSISTENCE_KINDS,
    Checkpoint,
    EventBatch,
    InventoryRead,
    ObjectRef,
)
from offboard_audit.core.records import ScopeFailure


@dataclass(eq=False)  # a reader per source: compared by identity, as before
class AwsExposureSource:
    """Reads CloudTrail events and the Secrets Manager / SSM / KMS / IAM inventory.

    Permissions: ``s3:ListBucket``, ``s3:GetObject`` (trail bucket) or ``cloudtrail:StartQuery``,
    ``cloudtrail:GetQueryResults`` (Lake); ``secretsmanager:ListSecrets``,
    ``secretsmanager:ListSecretVersionIds``; ``ssm:DescribeParameters``,
    ``ssm:GetParameterHistory``, ``ssm:ListTagsForResource``; ``kms:ListKeys``,
    ``kms:DescribeKey``, ``kms:GetKeyRotationStatus``, ``kms:ListGrants``,
    ``kms:ListResourceTags``, ``kms:GetKeyPolicy``; ``iam:GetUser``, ``iam:ListAccessKeys``, ``iam:GetLoginProfile``,
    ``iam:GetRole``, ``iam:ListAttachedUserPolicies``, ``iam:GenerateCredentialReport``,
    ``iam:GetCredentialReport``. Never ``secretsmanager:GetSecretValue``
    nor a decrypted ``ssm:GetParameter``: no secret value is ever read.
    """

    system = SYSTEM

    name: str
    settings: ExposureSettings
    clients: ExposureClients
    # The IAM source of the same table: its scopes are the accounts whose inventory is read.
    accounts: AwsIamSource

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        s = self.settings
        try:
            if s.lake_event_data_store is not None:
                lake = LakeReader(
                    self.name,
                    self.clients.home("cloudtrail"),
                    s.lake_event_data_store,
                    s.lookback,
                    s.overlap,
                    self.accounts.scopes,
                )
                yield from lake.read(checkpoints, now)
                return
            assert s.trail_bucket is not None
            s3 = self.clients.home("s3", s.trail_region)
            reader = TrailReader(
                self.name, s3, s.trail_bucket, s.trail_prefix, s.lookback, s.overlap, s.workers
            )
            yield from reader.read(checkpoints, now)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"{self.name}: cannot list the CloudTrail logs: {describe(exc)}") from exc

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        scopes = self.accounts.scopes()
        refs = [r for r in wanted if r.kind in PERSISTENCE_KINDS]

        def one(account: str) -> ScopeFound | ScopeFailure:
            inv = AccountInventory(self.name, account, self.clients, self.settings, self.accounts.read_report)
            try:
                return ScopeFound(inv.secrets(wanted), inv.objects(refs))
            except Exception as exc:
                return ScopeFailure(account, f"inventory of account {account}: {describe(exc)}")

        read = inventory_by_scope(scopes, one, workers=self.accounts.settings.account_workers)
        return with_listings(read, self.settings.regions)
