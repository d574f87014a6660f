"""AWS IAM connector (source type ``aws_iam``): IAM users, their credentials, and revocation.

See ``source.py`` for the read path (credential report + authorization details in bulk,
per-user calls only for the users that matter) and ``revoker.py`` for the write path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.exposure import EXPOSURE_PERMISSIONS, make_exposure
from connectors.aws_iam.exposure.actions import AwsRevoker
from connectors.aws_iam.revoker import AwsIamRevoker
from connectors.aws_iam.settings import OPTIONS, AwsSettings, parse_settings
from connectors.aws_iam.source import AwsIamSource
from connectors.aws_iam.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import ConnectorPlugin, DemoPart, MatchSpec, SourceContext, SourceKind
from offboard_audit.core.records import Person

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


def make_source(options: SourceOptions, ctx: SourceContext) -> AwsIamSource:
    """Build the source from its config table.

    Injected clients: ``ctx.clients.get(<source name>)`` may be an :class:`AwsClients`
    (``session``, ``iam``, ``sts``, ``organizations``, ``iam_by_account``) or a bare IAM
    client; otherwise clients come from boto3's normal credential chain (or ``profile``).
    """
    settings = parse_settings(options)
    provider = ClientProvider(settings, AwsClients.coerce(ctx.clients.get(settings.name)))
    return AwsIamSource(settings, provider)


def make_revoker(options: SourceOptions, ctx: SourceContext) -> AwsIamRevoker:
    """Build the revoker; same options and injected clients as :func:`make_source`. It carries
    the exposure action ``rotate_secret`` too (planned only with policy.auto_rotate_secrets)."""
    settings = parse_settings(options)
    provider = ClientProvider(settings, AwsClients.coerce(ctx.clients.get(settings.name)))
    return AwsRevoker(settings, provider)


def _demo(people: Sequence[Person], now: datetime) -> DemoPart:
    # Imported lazily: the demo pulls in moto, which an ordinary audit never needs.
    from connectors.aws_iam.demo import build_demo

    return build_demo(people, now)


PLUGIN = ConnectorPlugin(
    type_name="aws_iam",
    kind=SourceKind.ACCOUNTS,
    system=SYSTEM,
    make_source=make_source,
    make_revoker=make_revoker,
    revoker_actions=AwsRevoker.actions,
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
    demo=_demo,
    make_exposure=make_exposure,
    exposure_permissions=EXPOSURE_PERMISSIONS,
)

__all__ = [
    "PLUGIN",
    "AwsClients",
    "AwsIamRevoker",
    "AwsIamSource",
    "AwsSettings",
    "make_revoker",
    "make_source",
]
