"""Pure translation of service accounts, their user-managed keys and their last authentication.

Nothing here performs I/O. The functions take ``iam_admin_v1`` messages, Policy Analyzer
activities (JSON) or plain values and produce :class:`Account` and :class:`Credential` records
and last-authentication times. No policy logic: deciding who departed and what to flag is the
core's job. IAM policy bindings are ``translate.py``.

Owner convention for service accounts
-------------------------------------
A service account's owner comes from the source's ``owners`` table (service account
email -> owner email or employee id) or, when the table has no entry, from markers in the
service account's description: ``owner: grace@example.com`` or ``owner=grace@example.com``
(case-insensitive, several markers allowed, separated by spaces, commas or semicolons).
The owners become ``("owner", EMAIL)`` attributes (``("owner_employee_id", ID)`` for a
table value that is not an email); the core matches them through the plugin's match spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors.gcp_iam.times import parse_rfc3339, ts_to_datetime
from connectors.gcp_iam.translate import SYSTEM
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

# owner: a@b / owner=a@b, anywhere in the description.
_OWNER_MARKER = re.compile(r"\bowner\s*[:=]\s*([^\s,;]+@[^\s,;]+)", re.IGNORECASE)
# Keys Google issues "forever" carry this validBeforeTime.
_NEVER_EXPIRES_YEAR = 9999


# --- service accounts -------------------------------------------------------------------


def service_account_owners(
    email: str, description: str, owners: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """Owner attributes of one service account: the owners table wins over description markers."""
    mapped = owners.get(email.lower())
    if mapped is not None:
        name = "owner" if "@" in mapped else "owner_employee_id"
        return ((name, mapped.lower() if "@" in mapped else mapped),)
    found: list[tuple[str, str]] = []
    for m in _OWNER_MARKER.finditer(description or ""):
        value = m.group(1).rstrip(".").lower()
        if ("owner", value) not in found:
            found.append(("owner", value))
    return tuple(found)


def translate_service_account(
    source: str,
    project: str,
    sa: Any,
    owners: Mapping[str, str],
    observed_at: datetime,
    last_auth: datetime | None = None,
) -> tuple[Account, Credential]:
    """An ``iam_admin_v1.ServiceAccount`` as a service account and its ``account`` credential.

    The service account is a login that can be disabled on its own, so it is also a
    credential whose id is the account id. Its ``uniqueId`` is the account's ``uid``: Google
    gives a service account recreated under the same email a new one.
    """
    email: str = sa.email
    attributes = service_account_owners(email, sa.description, owners)
    if sa.unique_id:
        attributes += (("unique_id", sa.unique_id),)
    if sa.description:
        attributes += (("description", sa.description),)
    account = Account(
        source=source,
        system=SYSTEM,
        account_id=email,
        username=email,
        enabled=not sa.disabled,
        kind=AccountKind.SERVICE,
        # The service account's own email is not a person's address: never put it in emails.
        emails=(),
        display_name=sa.display_name or email,
        last_login_at=last_auth,
        attributes=attributes,
        scope=project,
        uid=sa.unique_id,
    )
    credential = Credential(
        source=source,
        account_id=email,
        credential_id=email,
        kind=CredentialKind.ACCOUNT,
        active=not sa.disabled,
        last_used_at=last_auth,
        detail="service account",
        observed_at=observed_at,
        scope=project,
    )
    return account, credential


def translate_key(
    source: str,
    project: str,
    sa_email: str,
    key: Any,
    observed_at: datetime,
    last_auth: datetime | None = None,
) -> Credential:
    """One user-managed ``iam_admin_v1.ServiceAccountKey`` as a ``service_account_key`` credential.

    A key is active while it is enabled and not past its ``validBeforeTime``.
    """
    created = ts_to_datetime(key.valid_after_time)
    expires = ts_to_datetime(key.valid_before_time)
    expired = expires is not None and expires.year < _NEVER_EXPIRES_YEAR and expires <= observed_at
    detail = "user-managed key"
    if key.disabled:
        detail += ", disabled"
    if expires is not None and expires.year < _NEVER_EXPIRES_YEAR:
        detail += f", expires {expires.isoformat()}"
    return Credential(
        source=source,
        account_id=sa_email,
        credential_id=key.name,
        kind=CredentialKind.SERVICE_ACCOUNT_KEY,
        active=not key.disabled and not expired,
        created_at=created,
        last_used_at=last_auth,
        detail=detail,
        observed_at=observed_at,
        scope=project,
    )


# --- Policy Analyzer activities ----------------------------------------------------------


def key_id_of(resource_name: str) -> str:
    """The key id (last path segment) of a key name or full resource name."""
    return resource_name.rstrip("/").rsplit("/", 1)[-1]


def sa_ref_of(resource_name: str) -> str:
    """The service account part (email or unique id) of a service account full resource name."""
    parts = resource_name.split("/serviceAccounts/", 1)
    if len(parts) != 2:
        return ""
    return parts[1].split("/", 1)[0].lower()


def _latest_auth(
    activities: Iterable[Mapping[str, Any]],
    refs_of: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]],
) -> dict[str, datetime]:
    """The latest ``lastAuthenticatedTime`` per ref that ``refs_of(activity, its body)`` names."""
    found: dict[str, datetime] = {}
    for act in activities:
        body = act.get("activity") or {}
        when = parse_rfc3339(body.get("lastAuthenticatedTime"))
        if when is None:
            continue
        for ref in refs_of(act, body):
            if ref not in found or when > found[ref]:
                found[ref] = when
    return found


def last_auth_by_key(activities: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """``serviceAccountKeyLastAuthentication`` activities -> {key id: last authenticated time}."""

    def key_id(act: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
        key = body.get("serviceAccountKey") or {}
        name = key.get("fullResourceName") or act.get("fullResourceName") or ""
        return [key_id_of(name)] if name else []

    return _latest_auth(activities, key_id)


def last_auth_by_service_account(activities: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """``serviceAccountLastAuthentication`` activities -> {email or unique id: last time}."""

    def sa_refs(act: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
        sa = body.get("serviceAccount") or {}
        refs = [sa_ref_of(sa.get("fullResourceName") or act.get("fullResourceName") or "")]
        if sa.get("serviceAccountId"):
            refs.append(str(sa["serviceAccountId"]))
        return [ref for ref in refs if ref]

    return _latest_auth(activities, sa_refs)
