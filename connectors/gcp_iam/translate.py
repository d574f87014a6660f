"""Pure translation of Google Cloud IAM policies into the core's records, and the ids of their parts.

Nothing here performs I/O. The bindings of a ``google.iam.v1.Policy`` (of a project, folder or
organization) become one :class:`Account` per principal and one ``iam_binding``
:class:`Credential` per (role, member[, condition]). The member strings, the binding credential
ids (:func:`binding_credential_id`, and :func:`parse_binding_credential_id` by which the revoker
finds a binding again) and the resource names of scopes are parsed and built here. No policy
logic: deciding who departed and what to flag is the core's job.

Service accounts, their keys and their last-authentication activity are
``translate_service_accounts.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

SYSTEM = "gcp_iam"


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
