"""The ``gcp_iam`` source table, parsed once into a frozen value.

``OPTIONS`` lists every key with its help text (``PLUGIN.options``: the config loader rejects
other keys and ``config check`` prints them); :class:`GcpSettings` has one field per key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions

OPTIONS: dict[str, str] = {
    "name": "Name of this source (used in findings and to inject clients).",
    "type": 'Must be "gcp_iam".',
    "projects": "List of project ids to scan.",
    "organization": "Scan every ACTIVE project under this organization, sub-folders included "
    '("organizations/N"), and read the IAM policies of the organization and of every ACTIVE '
    "folder below it (roles granted there are inherited by every project below); an "
    "organization or folder policy that cannot be read is a failed scope.",
    "folders": "Scan every ACTIVE project under these folders, sub-folders included "
    '(["folders/N", ...]), and read the IAM policies of these folders and their ACTIVE '
    "sub-folders; a folder policy that cannot be read is a failed scope.",
    "iam_endpoint": "Optional plaintext gRPC host:port of an IAM Admin API endpoint (tests, private "
    "endpoints); default: Google with Application Default Credentials.",
    "resource_manager_endpoint": "Optional HTTP(S) URL of a Resource Manager v3 REST endpoint; "
    "default: Google with Application Default Credentials.",
    "policy_analyzer_endpoint": "Optional HTTP(S) URL of the Policy Analyzer REST endpoint "
    "(used with key_last_auth); default https://policyanalyzer.googleapis.com with ADC.",
    "max_workers": "Projects scanned concurrently (default 8).",
    "owners": "Table of service-account email -> owner email (or employee id); overrides "
    "'owner: EMAIL' / 'owner=EMAIL' markers in service-account descriptions.",
    "key_last_auth": "true: in the detail pass, read last authentication of service accounts and "
    "keys from the Policy Analyzer (needs roles/policyanalyzer.activityAnalysisViewer); a "
    "missing API or permission becomes a warning, not a failure (default false).",
    "timeout": "Seconds per API call (default 30).",
    "protected_principals": "fnmatch patterns (case-insensitive) of what the revoker never touches, "
    "in addition to the core's protected list and Google-managed service agents. Each is matched "
    "against the member (`user:bob@example.com`), its email, and the account id the audit reported "
    "(`projects/P/<principal>` for a binding; for a key or the account, the service account's email "
    "and its member `serviceAccount:EMAIL`).",
    "max_policy_retries": "Attempts of the etag-checked read-modify-write of a project, folder or "
    "organization IAM policy "
    "when it changes concurrently (default 5).",
    "exposure": "Table [sources.exposure]: what leavers could carry away (issue 14). Keys: audit_logs, "
    'secret_manager, kms (default true), lookback ("365d"), overlap ("10m"), page_size, '
    "owner_label_keys, signing_labels, logging_endpoint, secret_manager_endpoint, kms_endpoint; "
    "see docs/exposure.md.",
}

_ORG = re.compile(r"^organizations/\d+$")
_FOLDER = re.compile(r"^folders/\d+$")
# Project ids are lower-case letters, digits and hyphens; legacy ones carry a domain prefix.
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]*$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class GcpSettings:
    """The parsed ``[[sources]]`` table of a ``gcp_iam`` source."""

    name: str
    projects: tuple[str, ...] = ()
    organization: str | None = None
    folders: tuple[str, ...] = ()
    iam_endpoint: str | None = None
    resource_manager_endpoint: str | None = None
    policy_analyzer_endpoint: str | None = None
    max_workers: int = 8
    # service account email (lower case) -> owner email or employee id
    owners: Mapping[str, str] | None = None
    key_last_auth: bool = False
    timeout: float = 30.0
    # Members / service-account emails (fnmatch patterns) the revoker refuses to touch.
    protected_principals: tuple[str, ...] = ()
    max_policy_retries: int = 5


def parse_settings(options: SourceOptions) -> GcpSettings:
    """Read and validate the source table; every problem is a ConfigError naming its key."""
    name = options.string("name")
    projects = options.strings("projects")
    for p in projects:
        if not _PROJECT.match(p):
            raise options.error("projects", f"{p!r} is not a project id")
    organization = options.opt_str("organization")
    if organization is not None and not _ORG.match(organization):
        raise options.error("organization", f'must look like "organizations/123", got {organization!r}')
    folders = options.strings("folders")
    for f in folders:
        if not _FOLDER.match(f):
            raise options.error("folders", f'each folder must look like "folders/123", got {f!r}')
    if not projects and organization is None and not folders:
        raise ConfigError(
            'gcp_iam needs projects = [...], organization = "organizations/N" or folders = [...]',
            key=options.path("projects"),
        )
    iam_endpoint = options.opt_str("iam_endpoint")
    if iam_endpoint is not None and not _HOSTPORT.match(iam_endpoint):
        raise options.error("iam_endpoint", f"must be host:port (plaintext gRPC), got {iam_endpoint!r}")
    rm_endpoint = options.opt_str("resource_manager_endpoint")
    pa_endpoint = options.opt_str("policy_analyzer_endpoint")
    for key, url in (
        ("resource_manager_endpoint", rm_endpoint),
        ("policy_analyzer_endpoint", pa_endpoint),
    ):
        if url is not None and not url.startswith(("http://", "https://")):
            raise options.error(key, f"must be an http:// or https:// URL, got {url!r}")
    owners = {k.lower(): v for k, v in options.str_map("owners").items()}
    return GcpSettings(
        name=name,
        projects=projects,
        organization=organization,
        folders=folders,
        iam_endpoint=iam_endpoint,
        resource_manager_endpoint=rm_endpoint,
        policy_analyzer_endpoint=pa_endpoint,
        max_workers=options.integer("max_workers", default=8, minimum=1),
        owners=owners,
        key_last_auth=options.flag("key_last_auth", default=False),
        timeout=options.number("timeout", default=30.0),
        protected_principals=options.strings("protected_principals"),
        max_policy_retries=options.integer("max_policy_retries", default=5, minimum=1),
    )
