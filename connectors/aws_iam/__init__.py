"""AWS IAM connector (source type ``aws_iam``): IAM users, their credentials, and revocation.

See ``source.py`` for the read path (credential report + authorization details in bulk,
per-user calls only for the users that matter) and ``revoker.py`` for the write path.
"""

from __future__ import annotations

from connectors._shared.plugin import account_plugin, lazy_demo
from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.exposure import EXPOSURE_PERMISSIONS, make_exposure
from connectors.aws_iam.exposure.actions import AwsRevoker
from connectors.aws_iam.revoker import AwsIamRevoker
from connectors.aws_iam.settings import OPTIONS, AwsSettings, parse_settings
from connectors.aws_iam.source import AwsIamSource
from connectors.aws_iam.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext

READ_PERMISSIONS: tuple[str, ...] = (
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListSSHPublicKeys",
    "iam:ListServiceSpecificCredentials",
    "iam:ListSigningCertificates",
    "iam:ListMFADevices",
    "iam:GetUser",
    "iam:GetLoginProfile",
    "iam:ListGroupsForUser",
    "iam:ListUserPolicies",
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "organizations:ListAccounts",
)


def _wire(options: SourceOptions, ctx: SourceContext) -> tuple[AwsSettings, ClientProvider]:
    # Injected clients: ``ctx.clients.get(<source name>)`` may be an :class:`AwsClients`
    # (``session``, ``iam``, ``sts``, ``organizations``, ``iam_by_account``) or a bare IAM client;
    # otherwise clients come from boto3's normal credential chain (or ``profile``).
    settings = parse_settings(options)
    return settings, ClientProvider(settings, AwsClients.coerce(ctx.clients.get(settings.name)))


PLUGIN = account_plugin(
    "aws_iam",
    SYSTEM,
    _wire,
    source=AwsIamSource,
    # The revoker carries the exposure action ``rotate_secret`` too (planned only with
    # policy.auto_rotate_secrets).
    revoker=AwsRevoker,
    # With a [sources.exposure] table the source also reads what leavers could carry away.
    read_permissions=READ_PERMISSIONS
    + tuple(
        f"{p} ([sources.exposure]{' lake_event_data_store' if p.startswith('cloudtrail:') else ''})"
        for p in EXPOSURE_PERMISSIONS
    ),
    options=OPTIONS,
    match=MatchSpec(
        employee_id_attributes=("employee_id", "tag:employee_id"),
        email_attributes=("email", "tag:email", "owner", "tag:owner"),
    ),
    # Lazy: the demo pulls in moto, which an ordinary audit never needs.
    demo=lazy_demo("connectors.aws_iam.demo:build_demo"),
    make_exposure=make_exposure,
    exposure_permissions=EXPOSURE_PERMISSIONS,
)

__all__ = [
    "PLUGIN",
    "AwsClients",
    "AwsIamRevoker",
    "AwsIamSource",
    "AwsSettings",
]
