"""Translation of IAM payloads into the core's records. Pure: no I/O, no decisions about people.

Credential ids are stable across runs. The bulk pass only knows report slots (the credential
report gives no key ids), so its ids are ``report/access_key_1``, ``report/cert_1`` and
``report/mfa``, marked ``provisional`` (never evaluated, planned or shown as evidence); the
detail pass returns the real ids (``AKIA...``, ``APKA...``, certificate ids, MFA serial
numbers), which replace them and are not provisional. Console passwords are ``login-profile``
and group memberships ``group/<name>`` in both passes (real ids, never provisional).

Every account carries the user's ``UserId`` (``AIDA...``) as ``Account.uid``. The ARN (the
core's account id) only names the user: a user deleted and re-created under the same name gets
the same ARN but a new ``UserId``, so the revoker checks the ``UserId`` before every change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.aws_iam.payloads import ReportRow, UserDetail, opt_time
from connectors.aws_iam.settings import AwsSettings
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

SYSTEM = "aws_iam"
LOGIN_PROFILE_ID = "login-profile"
# Name of the inline policy that denies temporary credentials issued before revocation.
DENY_POLICY_NAME = "OffboardAuditDenyIssuedSessions"
# Credentials with which an IAM user can authenticate (groups and MFA only widen or guard access).
_LOGIN_KINDS = frozenset(
    {
        CredentialKind.PASSWORD,
        CredentialKind.ACCESS_KEY,
        CredentialKind.SSH_KEY,
        CredentialKind.SIGNING_CERTIFICATE,
        CredentialKind.SERVICE_CREDENTIAL,
    }
)


def account_id_of(scope: str, user: str, arn: str | None = None) -> str:
    """The core's account id for an IAM user: its ARN (unique across accounts, stable)."""
    return arn if arn else f"arn:aws:iam::{scope}:user/{user}"


def owner_attributes(
    user: UserDetail, settings: AwsSettings
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Owner hints from tags and the ``owners`` map, as (attributes, emails).

    Each configured tag is kept raw (``tag:<key>``) and also under a canonical name, so the
    plugin's static match spec works whatever tag keys a company uses: a value with ``@`` is an
    ``email``; a key containing ``employee`` gives an ``employee_id``; anything else an ``owner``.
    """
    wanted = {k.lower() for k in settings.owner_tag_keys}
    attributes: list[tuple[str, str]] = [("arn", user.arn), ("path", user.path), ("user_id", user.user_id)]
    emails: list[str] = []
    for key, value in user.tags:
        if key.lower() not in wanted or not value.strip():
            continue
        value = value.strip()
        attributes.append((f"tag:{key}", value))
        if "@" in value:
            attributes.append(("email", value))
            emails.append(value)
        elif "employee" in key.lower():
            attributes.append(("employee_id", value))
        else:
            attributes.append(("owner", value))
    mapped = settings.owner_of(user.name)
    if mapped:
        attributes.append(("owner", mapped))
        if "@" in mapped:
            attributes.append(("email", mapped))
            emails.append(mapped)
    # Many companies use the email as IAM user name: the core also matches on the username.
    if "@" in user.name:
        emails.append(user.name)
    attributes.extend(("group", g) for g in user.groups)
    attributes.extend(("attached_policy", p) for p in user.attached_policies)
    attributes.extend(("inline_policy", p) for p in user.inline_policies)
    return tuple(attributes), tuple(dict.fromkeys(e.lower() for e in emails))


def account_kind(user: UserDetail, settings: AwsSettings) -> AccountKind:
    if user.name in settings.service_users or any(user.path.startswith(p) for p in settings.service_paths):
        return AccountKind.SERVICE
    return AccountKind.HUMAN


def make_account(
    source: str,
    scope: str,
    user: UserDetail,
    settings: AwsSettings,
    credentials: Sequence[Credential] | None,
    last_login_at: datetime | None,
) -> Account:
    """An IAM user. IAM users have no enabled flag: a user is enabled when it can authenticate
    (an active password, key, certificate or service credential); unknown credentials => enabled."""
    attributes, emails = owner_attributes(user, settings)
    enabled = True if credentials is None else any(c.active and c.kind in _LOGIN_KINDS for c in credentials)
    return Account(
        source=source,
        system=SYSTEM,
        account_id=account_id_of(scope, user.name, user.arn),
        username=user.name,
        enabled=enabled,
        kind=account_kind(user, settings),
        emails=emails,
        last_login_at=last_login_at,
        attributes=attributes,
        scope=scope,
        uid=user.user_id,
    )


# Per kind listed with a Status: the key of the credential's id and of its creation date.
_LISTED_KEYS: Mapping[CredentialKind, tuple[str, str]] = {
    CredentialKind.ACCESS_KEY: ("AccessKeyId", "CreateDate"),
    CredentialKind.SSH_KEY: ("SSHPublicKeyId", "UploadDate"),
    CredentialKind.SERVICE_CREDENTIAL: ("ServiceSpecificCredentialId", "CreateDate"),
    CredentialKind.SIGNING_CERTIFICATE: ("CertificateId", "UploadDate"),
}
_PASSWORD = "console password (login profile)"


@dataclass(frozen=True)
class _Seen:
    """What the credentials of one user share: the source, the AWS account (``scope``), the
    user's account id and when they were read."""

    source: str
    scope: str
    account_id: str
    observed_at: datetime

    def credential(
        self,
        credential_id: str,
        kind: CredentialKind,
        detail: str,
        *,
        active: bool = True,
        created_at: datetime | None = None,
        last_used_at: datetime | None = None,
        provisional: bool = False,
    ) -> Credential:
        return Credential(
            source=self.source,
            account_id=self.account_id,
            credential_id=credential_id,
            kind=kind,
            active=active,
            created_at=created_at,
            last_used_at=last_used_at,
            detail=detail,
            observed_at=self.observed_at,
            scope=self.scope,
            provisional=provisional,
        )

    def listed(
        self, kind: CredentialKind, item: Mapping[str, Any], detail: str, last_used_at: datetime | None = None
    ) -> Credential:
        """One entry of a ``List...`` call for a credential IAM switches between Active and Inactive."""
        id_key, created_key = _LISTED_KEYS[kind]
        active, created_at = item["Status"] == "Active", opt_time(item.get(created_key))
        return self.credential(
            item[id_key], kind, detail, active=active, created_at=created_at, last_used_at=last_used_at
        )


def report_credentials(
    source: str, scope: str, account_id: str, row: ReportRow, observed_at: datetime
) -> list[Credential]:
    """Password, access key slots, certificate slots and MFA from one credential report row.

    Slots have no id in the report: their placeholder ids are ``provisional``."""
    seen = _Seen(source, scope, account_id, observed_at)
    out: list[Credential] = []
    if row.password_enabled:
        out.append(password_credential(source, scope, account_id, row, observed_at))
    for key in row.keys:
        where = " ".join(x for x in (key.last_used_service, key.last_used_region) if x)
        out.append(
            seen.credential(
                f"report/access_key_{key.slot}",
                CredentialKind.ACCESS_KEY,
                f"access key slot {key.slot}" + (f" (last used: {where})" if where else ""),
                active=key.active,
                created_at=key.last_rotated,
                last_used_at=key.last_used,
                provisional=True,
            )
        )
    for cert in row.certs:
        out.append(
            seen.credential(
                f"report/cert_{cert.slot}",
                CredentialKind.SIGNING_CERTIFICATE,
                f"signing certificate slot {cert.slot}",
                active=cert.active,
                created_at=cert.last_rotated,
                provisional=True,
            )
        )
    if row.mfa_active:
        detail = "MFA device (serial read in the detail pass)"
        out.append(seen.credential("report/mfa", CredentialKind.MFA_DEVICE, detail, provisional=True))
    return out


def password_credential(
    source: str, scope: str, account_id: str, row: ReportRow, observed_at: datetime
) -> Credential:
    return _Seen(source, scope, account_id, observed_at).credential(
        LOGIN_PROFILE_ID,
        CredentialKind.PASSWORD,
        _PASSWORD,
        created_at=row.password_last_changed,
        last_used_at=row.password_last_used,
    )


def login_profile_credential(
    source: str, scope: str, account_id: str, raw: Mapping[str, Any], observed_at: datetime
) -> Credential:
    """From ``GetLoginProfile`` (targeted path without a report: no last use known)."""
    created_at = opt_time(raw["LoginProfile"].get("CreateDate"))
    seen = _Seen(source, scope, account_id, observed_at)
    return seen.credential(LOGIN_PROFILE_ID, CredentialKind.PASSWORD, _PASSWORD, created_at=created_at)


def group_credentials(
    source: str, scope: str, account_id: str, user: UserDetail, observed_at: datetime
) -> list[Credential]:
    seen = _Seen(source, scope, account_id, observed_at)
    return [seen.credential(f"group/{g}", CredentialKind.GROUP_MEMBERSHIP, g) for g in user.groups]


def session_credential(
    source: str,
    scope: str,
    account_id: str,
    user: UserDetail,
    observed_at: datetime,
    last_login_at: datetime | None,
) -> Credential:
    """The user's already-issued temporary credentials; inactive once the deny policy is in place."""
    return _Seen(source, scope, account_id, observed_at).credential(
        account_id,
        CredentialKind.ACCOUNT,
        "temporary credentials already issued to this user (STS sessions)",
        active=DENY_POLICY_NAME not in user.inline_policies,
        last_used_at=last_login_at,
    )


def access_key_credential(
    source: str,
    scope: str,
    account_id: str,
    key: Mapping[str, Any],
    last_used: Mapping[str, Any] | None,
    observed_at: datetime,
) -> Credential:
    """``ListAccessKeys`` metadata plus ``GetAccessKeyLastUsed``'s ``AccessKeyLastUsed``."""
    used_at = opt_time(last_used.get("LastUsedDate")) if last_used else None
    where = ""
    if last_used:
        parts = [last_used.get("ServiceName"), last_used.get("Region")]
        where = " ".join(str(p) for p in parts if p and p != "N/A")
    detail = f"access key {key['AccessKeyId']}" + (f" (last used: {where})" if where else "")
    return _Seen(source, scope, account_id, observed_at).listed(
        CredentialKind.ACCESS_KEY, key, detail, used_at
    )


def ssh_key_credential(
    source: str, scope: str, account_id: str, key: Mapping[str, Any], observed_at: datetime
) -> Credential:
    detail = f"SSH public key {key['SSHPublicKeyId']} (CodeCommit)"
    return _Seen(source, scope, account_id, observed_at).listed(CredentialKind.SSH_KEY, key, detail)


def service_credential(
    source: str, scope: str, account_id: str, cred: Mapping[str, Any], observed_at: datetime
) -> Credential:
    service = cred.get("ServiceName", "")
    detail = f"service-specific credential for {service}" if service else "service-specific credential"
    return _Seen(source, scope, account_id, observed_at).listed(
        CredentialKind.SERVICE_CREDENTIAL, cred, detail
    )


def signing_certificate_credential(
    source: str, scope: str, account_id: str, cert: Mapping[str, Any], observed_at: datetime
) -> Credential:
    detail = f"signing certificate {cert['CertificateId']}"
    return _Seen(source, scope, account_id, observed_at).listed(
        CredentialKind.SIGNING_CERTIFICATE, cert, detail
    )


def mfa_credential(
    source: str, scope: str, account_id: str, device: Mapping[str, Any], observed_at: datetime
) -> Credential:
    serial, created_at = device["SerialNumber"], opt_time(device.get("EnableDate"))
    seen = _Seen(source, scope, account_id, observed_at)
    return seen.credential(serial, CredentialKind.MFA_DEVICE, f"MFA device {serial}", created_at=created_at)


def without_kinds(credentials: Iterable[Credential], kinds: Iterable[CredentialKind]) -> list[Credential]:
    drop = frozenset(kinds)
    return [c for c in credentials if c.kind not in drop]
