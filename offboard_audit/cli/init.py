"""Command: config init (a commented starter config that ``config check`` accepts).

The starter has safe policy defaults (dry runs only, blast-radius caps, the HR circuit breaker)
and one commented ``[[sources]]`` block per source type: uncomment the systems you have. ``demo
--write-config DIR`` writes the same file with the demo's HR source filled in.
"""

from __future__ import annotations

from pathlib import Path

import typer

from offboard_audit.cli.app import EXIT_OK, config_app, err, fail, state
from offboard_audit.report.table import plain

HEADER = """\
# offboard-audit configuration{origin}.
# Every key is described in docs/configuration.md (or: offboard-audit config reference).
# Check this file, and see the permissions each source needs: offboard-audit config check
# Secrets never go in this file: options ending in _env name an environment variable.
"""

BODY = """\
[database]
# A SQLite file next to this file. For the daemon with replicas, use PostgreSQL:
# url = "postgresql+psycopg://offboard@db.example.org/offboard"
url = "sqlite:///offboard-audit.db"

[policy]
grace_period = "0h"                 # time after termination before a finding is due for revocation
auto_revoke = false                 # the daemon and the webhook only plan; the CLI needs --apply anyway
max_people_per_run = 25             # blast-radius cap: a plan touching more people is refused whole
max_actions_per_run = 1000          # ... or more actions
max_new_terminations = 0.05         # HR circuit breaker: share of people newly terminated since the last good read
max_missing_people = 0.05           # HR circuit breaker: share of people missing from a new read
max_rehires = 0.05                  # HR circuit breaker: share of the leavers listed as not terminated again
min_breaker_count = 3               # ... counted only when more people than this are behind the share
orphan_accounts = true              # report enabled human accounts that match nobody in HR
protected = ["aws:root", "ldap:uid=breakglass,*"]    # never revoked (selectors, globs allowed)

[schedule]
audit = "*/15 * * * *"              # the daemon's full reconcile (cron)

[webhook]
listen = "127.0.0.1:8787"
secret_env = "OFFBOARD_WEBHOOK_SECRET"   # the HR system's shared HMAC secret, from the environment
"""

# One block per built-in source type, commented out. tests/integration/test_cli_first_contact.py
# uncomments each in turn and runs `config check` on it, so a renamed option fails a test here.
SOURCES: dict[str, str] = {
    "hr_csv": """\
# An HR export (CSV): who works here, who left and when.
# [[sources]]
# name = "hr"
# type = "hr_csv"
# path = "hr.csv"                  # columns: employee_id,email,name,status,termination_date[,aliases]
# timezone = "UTC"                 # termination_date: YYYY-MM-DD (midnight here) or an ISO 8601 date-time
# columns = { employee_id = "Employee ID", email = "Work Email" }   # your export's header names
# status_map = { "Terminated - Voluntary" = "terminated" }
""",
    "hr_json": """\
# ... or an HR system's JSON (a file, or an HTTPS URL with a bearer token).
# [[sources]]
# name = "hr"
# type = "hr_json"
# url = "https://hr.example.org/api/employees"
# token_env = "HR_API_TOKEN"
""",
    "ldap": """\
# LDAP or Active Directory.
# [[sources]]
# name = "corp-ldap"
# type = "ldap"
# url = "ldaps://ldap.example.org:636"
# bind_dn = "cn=offboard-audit,ou=services,dc=example,dc=org"
# password_env = "LDAP_BIND_PASSWORD"
# base_dn = "ou=people,dc=example,dc=org"
# dialect = "openldap"             # openldap | ad | 389ds
""",
    "aws_iam": """\
# AWS IAM (credentials from boto3's usual chain: environment, profile, instance role).
# [[sources]]
# name = "aws-main"
# type = "aws_iam"
# region = "us-east-1"
# accounts = ["111111111111", "222222222222"]   # or: organization = true
# assume_role = "arn:aws:iam::{account}:role/OffboardAudit"
""",
    "gcp_iam": """\
# Google Cloud IAM (Application Default Credentials).
# [[sources]]
# name = "gcp"
# type = "gcp_iam"
# projects = ["my-project"]        # or organization = "organizations/123"
""",
    "vault": """\
# Vault / OpenBao: the leavers' own entities, tokens and logins, and what they read or exported
# (the file audit device's log). See docs/exposure.md for the ACL policy it needs.
# [[sources]]
# name = "vault"
# type = "vault"
# url = "https://vault.example.org:8200"
# token_env = "VAULT_TOKEN"          # or: role_id = "..." and secret_id_env = "VAULT_SECRET_ID"
# audit_log = "/var/log/vault/audit.log"
""",
    "github": """\
# A GitHub organisation: members, outside collaborators, invitations, SAML-authorized tokens and
# SSH keys, and deploy keys the leavers added. Every GitHub revocation is irreversible.
# [[sources]]
# name = "github"
# type = "github"
# org = "acme"
# token_env = "GITHUB_TOKEN"         # an owner's token; or app_id, private_key_env, installation_id
# owners = { "octo-cat" = "cat@example.com" }   # logins SAML and the usual rules do not match
""",
}


def starter_config(origin: str = "", hr_path: str | None = None, note: str = "") -> str:
    """The starter config. With ``hr_path``, the hr_csv source is live (not commented) and
    reads that file; ``note`` is a comment put before the other (commented) sources."""
    parts = [HEADER.format(origin=origin), "\n", BODY, "\n"]
    parts.append("# Sources: uncomment the systems you have. Audits need at least one HR source.\n")
    if note:
        parts.append(note)
    for type_name, block in SOURCES.items():
        parts.append("\n")
        if hr_path is not None and type_name == "hr_csv":
            parts.append(
                "# An HR export (CSV): who works here, who left and when.\n"
                f'[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "{hr_path}"\n'
            )
        elif hr_path is not None and type_name == "hr_json":
            continue  # one HR source is enough to start
        else:
            parts.append(block)
    return "".join(parts)


def write_new(path: Path, text: str, force: bool = False) -> None:
    """Write ``text`` to ``path``; an existing file is a usage error unless ``force``."""
    if path.exists() and not force:
        raise fail(f"{path} already exists; not overwriting it (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@config_app.command("init")
def config_init(
    ctx: typer.Context,
    path: Path | None = typer.Argument(
        None, help="Where to write it (default: the --config path, else ./offboard-audit.toml)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
) -> int:
    """Write a commented starter config: safe policy defaults, every source type commented out."""
    target = path or state(ctx).config_path
    write_new(target, starter_config(" (written by `offboard-audit config init`)"), force=force)
    err.print(plain(f"wrote {target}"))
    err.print(
        plain(
            f"next: uncomment and fill in your sources, then run `offboard-audit --config {target} config check`"
        )
    )
    return EXIT_OK
