"""What a leaver could carry away, read from AWS (issue 13): the ``[sources.exposure]`` table of an
``aws_iam`` source.

- ``cloudtrail.py`` / ``lake.py``: exposure events from CloudTrail log files in S3 (incremental,
  streamed) or from a CloudTrail Lake event data store;
- ``inventory.py``: Secrets Manager, SSM SecureString, KMS, and the IAM objects leavers made;
- ``translate.py``: pure, CloudTrail records and inventory payloads to the core's records;
- ``key_policy.py``: pure, the other accounts a KMS key policy lets use the key;
- ``source.py``: :class:`AwsExposureSource`, the ``ExposureSource`` the engine reads;
- ``actions.py``: ``rotate_secret`` (Secrets Manager ``RotateSecret``), only with
  ``policy.auto_rotate_secrets`` and only where rotation is configured.
"""

from __future__ import annotations

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.exposure.clients import ExposureClients
from connectors.aws_iam.exposure.settings import EXPOSURE_OPTIONS, ExposureSettings, parse_exposure
from connectors.aws_iam.exposure.source import AwsExposureSource
from connectors.aws_iam.settings import parse_settings
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

# What the exposure reader needs (never secretsmanager:GetSecretValue nor a decrypted
# ssm:GetParameter: the tool does not read secret values).
EXPOSURE_PERMISSIONS: tuple[str, ...] = (
    "s3:ListBucket",
    "s3:GetObject",
    "secretsmanager:ListSecrets",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:DescribeSecret",
    "ssm:DescribeParameters",
    "ssm:GetParameterHistory",
    "ssm:ListTagsForResource",
    "kms:ListKeys",
    "kms:DescribeKey",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListResourceTags",
    "kms:GetKeyPolicy",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:GetRole",
    "iam:ListAttachedUserPolicies",
    # The password_last_changed of a user whose password a leaver set (UpdateLoginProfile).
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "cloudtrail:StartQuery",
    "cloudtrail:GetQueryResults",
)


def make_exposure(options: SourceOptions, ctx: SourceContext) -> AwsExposureSource | None:
    """The exposure reader of an ``aws_iam`` source, or None without a ``[sources.exposure]``
    table. Same injected clients as the source (``ctx.clients[<name>]``)."""
    settings = parse_settings(options)
    exposure = parse_exposure(options, settings.region)
    if exposure is None:
        return None
    provider = ClientProvider(settings, AwsClients.coerce(ctx.clients.get(settings.name)))
    return AwsExposureSource(
        settings.name, exposure, ExposureClients(provider), AwsIamSource(settings, provider)
    )


__all__ = [
    "EXPOSURE_OPTIONS",
    "EXPOSURE_PERMISSIONS",
    "AwsExposureSource",
    "ExposureSettings",
    "make_exposure",
]
