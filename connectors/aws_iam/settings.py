"""The ``aws_iam`` source's config table, parsed once into a frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from offboard_audit.core.options import SourceOptions

# Every key the source reads, with its help text (PLUGIN.options; ``config check`` prints it).
OPTIONS: dict[str, str] = {
    "name": "Source name (required); also the key under which tests and the demo inject clients.",
    "type": 'Always "aws_iam".',
    "region": 'AWS region for the IAM, STS and Organizations clients (default "us-east-1").',
    "endpoint_url": "Optional AWS-compatible endpoint (e.g. a local moto server) used for IAM, STS and "
    "Organizations. boto3 also honours AWS_ENDPOINT_URL.",
    "profile": "Optional named profile from ~/.aws/config; otherwise the normal boto3 credential chain.",
    "accounts": "List of 12-digit AWS account ids to scan (needs assume_role for accounts other than the "
    "caller's). Default: only the account of the current credentials.",
    "assume_role": 'Role ARN template with "{account}", e.g. "arn:aws:iam::{account}:role/OffboardAudit"; '
    "assumed in every scanned account.",
    "organization": "true: list the accounts with Organizations ListAccounts (run from the management "
    "account) and scan every ACTIVE one through assume_role.",
    "role_session_name": 'Session name used with AssumeRole (default "offboard-audit").',
    "external_id": "ExternalId passed to AssumeRole, when the roles' trust policies require one.",
    "owner_tag_keys": 'IAM user tag keys that name the owner (default ["email", "employee_id", "owner"]). '
    'Values with "@" become emails; keys containing "employee" give employee ids; others owner hints.',
    "owners": "Table mapping IAM user names to their owner's email, for users without tags.",
    "service_paths": 'IAM paths whose users are service accounts, not people (default ["/service/"]).',
    "service_users": "IAM user names that are service accounts (default []).",
    "protected_users": "IAM user names the revoker must never touch (break-glass users), compared "
    "case-insensitively as IAM compares user names; the root account is always refused.",
    "full_detail": "true: run the per-user detail calls for every user, not only for the users the core "
    "asks about (costs ~5 calls per user; default false).",
    "max_workers": "Concurrent per-user detail calls per account (default 8).",
    "account_workers": "Accounts scanned concurrently (default 4).",
    "retry_mode": 'botocore retry mode: "standard" (default) or "adaptive" (client-side rate limiting).',
    "max_attempts": "botocore max attempts per call, including the first (default 8). Throttling past "
    "this marks the account failed, never empty.",
    "report_timeout": 'How long to wait for the credential report to be generated (default "5m").',
    "service_specific_credentials": "true (default): list service-specific credentials (CodeCommit, "
    "Keyspaces, Bedrock) in the detail pass. Set false only against endpoints that lack the call "
    "(moto does not implement it): such credentials are then not audited. An endpoint that lacks "
    "it fails the account with an error naming this option.",
    "ssh_public_keys": "true (default): list SSH public keys (CodeCommit) in the detail pass. Set false "
    "only against AWS-compatible endpoints that lack iam:ListSSHPublicKeys: SSH keys are then not "
    "audited. An endpoint that lacks it fails the account with an error naming this option.",
    "exposure": "Table [sources.exposure]: what leavers could carry away (issue 13). Keys: trail_bucket, "
    'trail_prefix, trail_region, lookback ("365d"), overlap ("1h"), workers, regions, owner_tag_keys, '
    "signing_tags, lake_event_data_store; see docs/exposure.md.",
    "include_inline_deny": "true: also offer a deny-all inline policy conditioned on aws:TokenIssueTime "
    "so temporary credentials issued before revocation stop working (one extra credential of kind "
    '"account" per user; default false).',
}

_ACCOUNT_ID = re.compile(r"^\d{12}$")


@dataclass(frozen=True, slots=True)
class AwsSettings:
    name: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    accounts: tuple[str, ...] = ()
    assume_role: str | None = None
    organization: bool = False
    role_session_name: str = "offboard-audit"
    external_id: str | None = None
    owner_tag_keys: tuple[str, ...] = ("email", "employee_id", "owner")
    owners: tuple[tuple[str, str], ...] = ()
    service_paths: tuple[str, ...] = ("/service/",)
    service_users: tuple[str, ...] = ()
    protected_users: tuple[str, ...] = ()
    full_detail: bool = False
    max_workers: int = 8
    account_workers: int = 4
    retry_mode: str = "standard"
    max_attempts: int = 8
    report_timeout: timedelta = timedelta(minutes=5)
    service_specific_credentials: bool = True
    ssh_public_keys: bool = True
    include_inline_deny: bool = False

    def is_protected(self, user: str) -> bool:
        """Whether ``user`` is listed in ``protected_users``. IAM user names are unique without
        regard to case (``BreakGlass`` and ``breakglass`` are the same user), so is this."""
        wanted = user.casefold()
        return any(p.casefold() == wanted for p in self.protected_users)

    def owner_of(self, user: str) -> str | None:
        for name, email in self.owners:
            if name == user:
                return email
        return None


def parse_settings(options: SourceOptions) -> AwsSettings:
    """Read and validate the source table; every problem is a ConfigError naming its key."""
    options.only(OPTIONS, "aws_iam")
    accounts = options.strings("accounts")
    for account in accounts:
        if not _ACCOUNT_ID.match(account):
            raise options.error("accounts", f"{account!r} is not a 12-digit AWS account id")
    assume_role = options.opt_str("assume_role")
    if assume_role is not None and "{account}" not in assume_role:
        raise options.error("assume_role", 'must contain "{account}", e.g. arn:aws:iam::{account}:role/X')
    organization = options.flag("organization")
    if organization and assume_role is None:
        raise options.error("organization", "needs assume_role to reach the member accounts")
    if organization and accounts:
        raise options.error("organization", "use either organization = true or accounts = [...], not both")
    retry_mode = options.opt_str("retry_mode", "standard") or "standard"
    if retry_mode not in ("standard", "adaptive"):
        raise options.error("retry_mode", f'must be "standard" or "adaptive", got {retry_mode!r}')
    endpoint_url = options.opt_str("endpoint_url")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise options.error("endpoint_url", f"must be an http(s) URL, got {endpoint_url!r}")
    return AwsSettings(
        name=options.string("name"),
        region=options.opt_str("region", "us-east-1") or "us-east-1",
        endpoint_url=endpoint_url,
        profile=options.opt_str("profile"),
        accounts=accounts,
        assume_role=assume_role,
        organization=organization,
        role_session_name=options.opt_str("role_session_name", "offboard-audit") or "offboard-audit",
        external_id=options.opt_str("external_id"),
        owner_tag_keys=options.strings("owner_tag_keys", ("email", "employee_id", "owner")),
        owners=tuple(sorted(options.str_map("owners").items())),
        service_paths=options.strings("service_paths", ("/service/",)),
        service_users=options.strings("service_users"),
        protected_users=options.strings("protected_users"),
        full_detail=options.flag("full_detail"),
        max_workers=options.integer("max_workers", 8, minimum=1),
        account_workers=options.integer("account_workers", 4, minimum=1),
        retry_mode=retry_mode,
        max_attempts=options.integer("max_attempts", 8, minimum=1),
        report_timeout=options.duration("report_timeout", timedelta(minutes=5)),
        service_specific_credentials=options.flag("service_specific_credentials", True),
        ssh_public_keys=options.flag("ssh_public_keys", True),
        include_inline_deny=options.flag("include_inline_deny"),
    )
