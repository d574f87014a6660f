"""Pure translation of Google Cloud API payloads into the core's records.

Nothing here performs I/O. The functions take the payloads the client libraries return
(``google.iam.v1.Policy`` protobufs, ``iam_admin_v1`` messages) or plain values and
produce :class:`Account` and :class:`Credential` records. No policy logic: deciding who
departed and what to flag is the core's job.

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

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

SYSTEM = "gcp_iam"

# owner: a@b / owner=a@b, anywhere in the description.
_OWNER_MARKER = re.compile(r"\bowner\s*[:=]\s*([^\s,;]+@[^\s,;]+)", re.IGNORECASE)
# Keys Google issues "forever" carry this validBeforeTime.
_NEVER_EXPIRES_YEAR = 9999


class _Timestamp(Protocol):
    seconds: int
    nanos: int


@dataclass(frozen=True, slots=True)
class Member:
    """One parsed IAM policy member string."""

    raw: str
    # user, group, serviceAccount, domain, ... (without the deleted: prefix)
    type: str
    email: str
    deleted: bool = False
    uid: str = ""


def parse_member(raw: str) -> Member:
    """Split ``user:a@b``, ``deleted:user:a@b?uid=123``, ``group:g@b``, ``allUsers`` ..."""
    rest = raw
    deleted = False
    if rest.startswith("deleted:"):
        deleted = True
        rest = rest[len("deleted:") :]
    kind, sep, value = rest.partition(":")
    if not sep:
        return Member(raw=raw, type=kind, email="")
    uid = ""
    if "?uid=" in value:
        value, _, uid = value.partition("?uid=")
    return Member(raw=raw, type=kind, email=value.lower(), deleted=deleted, uid=uid)


def principal_uid(raw: str) -> str:
    """The identity (``Account.uid``) of the principal a policy member names, within one resource.

    ``<type>:<email>`` in lower case: ``user:alice@example.com`` for both the live member and
    its ``deleted:user:alice@example.com?uid=123`` form, ``group:eng@example.com`` for a group.
    One account groups a principal's live and deleted members within one resource (the
    resource is the account's scope), so the account's uid is the principal; the exact member
    string, ``deleted:`` prefix and ``?uid=`` included, is in each binding's credential id and
    is what the revoker removes. The policy holds nothing more stable than the email for a live
    member: a Google account deleted and recreated under the same email is not told apart here.
    """
    member = parse_member(raw)
    return f"{member.type}:{member.email}" if member.email else member.type


def condition_key(expression: str) -> str:
    """A short stable tag for a binding condition (bindings are unique per role+condition)."""
    return hashlib.sha256(expression.encode("utf-8")).hexdigest()[:12]


HIERARCHY_PREFIXES = ("organizations/", "folders/")


def is_hierarchy_scope(scope: str) -> bool:
    """True for ``organizations/N`` and ``folders/F`` (project scopes are bare project ids)."""
    return scope.startswith(HIERARCHY_PREFIXES)


def resource_name(scope: str) -> str:
    """The full resource name of a scope: a project id ``P`` -> ``projects/P``; an
    ``organizations/N`` or ``folders/F`` scope is already one (project ids never hold a slash)."""
    return scope if is_hierarchy_scope(scope) else f"projects/{scope}"


def binding_credential_id(scope: str, role: str, member: str, condition_expression: str = "") -> str:
    """``<resource>/<role>/<member>[#condition=<hash>]``: stable across runs.

    ``scope`` is a project id (``projects/P/...``), ``organizations/N`` or ``folders/F``.
    """
    cid = f"{resource_name(scope)}/{role}/{member}"
    if condition_expression:
        cid += f"#condition={condition_key(condition_expression)}"
    return cid


@dataclass(frozen=True, slots=True)
class BindingRef:
    """What a binding credential id names: enough for the revoker to find the binding again."""

    # A project id, "organizations/N" or "folders/F" (the credential's scope).
    scope: str
    role: str
    member: str
    condition: str = ""  # condition_key() of the expression, "" for an unconditional binding

    @property
    def resource(self) -> str:
        """``projects/P``, ``organizations/N`` or ``folders/F``."""
        return resource_name(self.scope)

    @property
    def kind(self) -> str:
        """``projects``, ``organizations`` or ``folders``."""
        return self.resource.split("/", 1)[0]


def parse_binding_credential_id(credential_id: str) -> BindingRef:
    """Inverse of :func:`binding_credential_id`. Raises ``ValueError`` on anything else."""
    base, _, cond = credential_id.partition("#")
    if cond and not cond.startswith("condition="):
        raise ValueError(f"not a binding credential id: {credential_id!r}")
    kind, _, rest = base.partition("/")
    if kind not in ("projects", "organizations", "folders"):
        raise ValueError(f"not a binding credential id: {credential_id!r}")
    ident, _, remainder = rest.partition("/")
    role, _, member = remainder.rpartition("/")
    if not ident or not role or not member or (":" not in member and member not in ("allUsers",)):
        raise ValueError(f"not a binding credential id: {credential_id!r}")
    if kind != "projects" and not ident.isdigit():
        raise ValueError(f"not a binding credential id: {credential_id!r}")
    scope = ident if kind == "projects" else f"{kind}/{ident}"
    return BindingRef(scope=scope, role=role, member=member, condition=cond[len("condition=") :])


def human_account_id(scope: str, email: str) -> str:
    # One account per (resource, person): account ids must be unique within the source.
    return f"{resource_name(scope)}/user:{email}"


def group_account_id(scope: str, email: str) -> str:
    return f"{resource_name(scope)}/group:{email}"


def ts_to_datetime(ts: _Timestamp | None) -> datetime | None:
    """A protobuf Timestamp (or proto-plus DatetimeWithNanoseconds) as an aware datetime; unset -> None."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        # proto-plus gives DatetimeWithNanoseconds for a set field and None for an unset one.
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def parse_rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    cleaned = text.replace("Z", "+00:00")
    # Python 3.11 fromisoformat takes at most 6 fractional digits; Google sends up to 9.
    m = re.match(r"^(.*?\.\d{6})\d*(.*)$", cleaned)
    if m:
        cleaned = m.group(1) + m.group(2)
    value = datetime.fromisoformat(cleaned)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- IAM policies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingEntry:
    role: str
    members: tuple[str, ...]
    condition_title: str = ""
    condition_expression: str = ""


def policy_bindings(policy: Any) -> tuple[BindingEntry, ...]:
    """The bindings of a ``google.iam.v1.policy_pb2.Policy`` as plain values."""
    entries = []
    for b in policy.bindings:
        has_condition = b.HasField("condition")
        entries.append(
            BindingEntry(
                role=b.role,
                members=tuple(b.members),
                condition_title=b.condition.title if has_condition else "",
                condition_expression=b.condition.expression if has_condition else "",
            )
        )
    return tuple(entries)


def translate_policy(
    source: str,
    scope: str,
    bindings: Sequence[BindingEntry],
    observed_at: datetime,
    wanted: Iterable[str] | None = None,
) -> tuple[list[Account], list[Credential]]:
    """Accounts and ``iam_binding`` credentials for the people (and groups) in one IAM policy.

    ``scope`` names the policy's resource: a project id, ``organizations/N`` or ``folders/F``
    (a binding there is inherited by every project below); it becomes the records' scope and
    prefixes their ids.

    ``user:`` and ``deleted:user:`` members of the same email share one account; every
    (role, member[, condition]) is one credential. A deleted member stays an *active*
    credential: the binding comes back to life if the Google account is restored.
    ``group:`` members are reported as service-kind accounts for context (group membership
    lives in Cloud Identity, not here). Other member types are not people and are skipped.
    ``wanted`` (lower-case emails) restricts the output to those people.
    """
    wanted_set = {w.lower() for w in wanted} if wanted is not None else None
    per_account: dict[str, dict[str, Any]] = {}
    credentials: list[Credential] = []
    for entry in bindings:
        for raw in entry.members:
            member = parse_member(raw)
            if member.type not in ("user", "group") or not member.email:
                continue
            if wanted_set is not None and (member.type != "user" or member.email not in wanted_set):
                continue
            if member.type == "user":
                account_id = human_account_id(scope, member.email)
            else:
                account_id = group_account_id(scope, member.email)
            info = per_account.setdefault(
                account_id,
                {"member": member, "live": False, "uids": [], "roles": []},
            )
            if not member.deleted:
                info["live"] = True
            if member.uid and member.uid not in info["uids"]:
                info["uids"].append(member.uid)
            info["roles"].append(entry.role)
            detail = entry.role
            if entry.condition_title or entry.condition_expression:
                detail += f" if {entry.condition_title or entry.condition_expression}"
            if is_hierarchy_scope(scope):
                detail += f" on {scope} (inherited by every project below)"
            if member.deleted:
                detail += " (deleted principal: the binding revives if the Google account is restored)"
            credentials.append(
                Credential(
                    source=source,
                    account_id=account_id,
                    credential_id=binding_credential_id(scope, entry.role, raw, entry.condition_expression),
                    kind=CredentialKind.IAM_BINDING,
                    active=True,
                    detail=detail,
                    observed_at=observed_at,
                    scope=scope,
                )
            )
    accounts = []
    for account_id, info in per_account.items():
        member = info["member"]
        attributes: list[tuple[str, str]] = [("member_type", member.type)]
        attributes += [("deleted_uid", uid) for uid in info["uids"]]
        is_user = member.type == "user"
        accounts.append(
            Account(
                source=source,
                system=SYSTEM,
                account_id=account_id,
                username=f"{member.type}:{member.email}",
                # A principal bound only through deleted: members has no live Google account.
                enabled=bool(info["live"]),
                kind=AccountKind.HUMAN if is_user else AccountKind.SERVICE,
                emails=(member.email,) if is_user else (),
                display_name=member.email,
                attributes=tuple(attributes),
                scope=scope,
                uid=principal_uid(member.raw),
            )
        )
    return accounts, credentials


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
