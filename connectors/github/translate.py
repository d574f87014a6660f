"""Pure translation: GitHub's typed payloads (githubkit models) -> Account / Credential records and
exposure events. No I/O, no clock (``now`` is an argument), no decisions about people.

Identity: an account is a GitHub user, ``Account.account_id`` = ``Account.uid`` = the numeric user
id (immutable; a login can be renamed and then taken by someone else). An invitation to an email
address with no GitHub account yet is an account of its own, ``email:<address>``. Logins are
compared case-insensitively everywhere, as GitHub compares them.

Credential ids are stable across runs: ``membership`` / ``outside-collaborator`` (the account's
access to the organisation), ``invitation/<id>``, ``sso/<credential_id>`` (a SAML SSO
authorization of a token or SSH key), ``pat/<grant id>`` (a fine-grained token's access).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind, ExposureHow

SYSTEM = "github"

MEMBER = "member"
OUTSIDE_COLLABORATOR = "outside_collaborator"
INVITEE = "invitee"

MEMBERSHIP_ID = "membership"
COLLABORATOR_ID = "outside-collaborator"
INVITATION_PREFIX = "invitation/"
SSO_PREFIX = "sso/"
PAT_PREFIX = "pat/"
EMAIL_PREFIX = "email:"


def aware(value: datetime | str | None) -> datetime | None:
    """A GitHub time (the typed models give some as ``datetime``, others as ISO 8601 strings) as an
    aware datetime. GitHub sends UTC (``Z``); a value without an offset is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | str | None) -> str:
    v = aware(value)
    return v.isoformat(timespec="seconds") if v is not None else "never"


def unset(value: Any) -> Any:
    """githubkit's UNSET (a field GitHub left out) as None."""
    from githubkit.utils import UNSET

    return None if value is UNSET else value


@dataclass(frozen=True, slots=True)
class OrgUser:
    """One GitHub user with access to (or an invitation into) the organisation, as the bulk pass
    assembled it from the member, admin, outside-collaborator and invitation lists."""

    user_id: int
    login: str
    relation: str  # MEMBER, OUTSIDE_COLLABORATOR or INVITEE
    role: str = ""  # admin | member for members; the invitation role for invitees
    bot: bool = False
    name: str = ""


def user_account(source: str, org: str, user: OrgUser, name_id: str | None, owner: str | None) -> Account:
    """The account of one GitHub user. ``name_id`` is its SAML identity's ``nameId`` (an email or
    an employee id, whatever the IdP sends), ``owner`` the ``owners`` map's email for the login."""
    attributes: list[tuple[str, str]] = [("login", user.login), ("relation", user.relation)]
    if user.role:
        attributes.append(("role", user.role))
    if name_id:
        attributes.append(("saml_name_id", name_id))
    if owner:
        attributes.append(("owner", owner))
    emails = tuple(dict.fromkeys(e.lower() for e in (name_id, owner) if e and "@" in e))
    return Account(
        source=source,
        system=SYSTEM,
        account_id=str(user.user_id),
        username=user.login,
        enabled=True,
        kind=AccountKind.SERVICE if user.bot else AccountKind.HUMAN,
        emails=emails,
        display_name=user.name,
        attributes=tuple(attributes),
        scope=org,
        uid=str(user.user_id),
    )


def email_account_id(email: str) -> str:
    return f"{EMAIL_PREFIX}{email.strip().lower()}"


def email_invitation_account(source: str, org: str, invitation: Any) -> Account:
    """An invitation to an email address that has no GitHub account (``login`` is null): whoever
    opens the mail and signs up gets in, so it is an account of its own, identified by the address."""
    email = str(invitation.email).strip().lower()
    return Account(
        source=source,
        system=SYSTEM,
        account_id=email_account_id(email),
        username=email,
        enabled=True,
        emails=(email,),
        attributes=(("relation", INVITEE), ("role", str(invitation.role))),
        scope=org,
        uid=email_account_id(email),
    )


def membership_credential(
    source: str,
    org: str,
    user: OrgUser,
    last_event: tuple[datetime, str] | None = None,
) -> Credential:
    """The account's access to the organisation itself (kind ``account``). ``last_event``: the
    newest audit-log event the user acted in (time, action), with ``audit_log = true``."""
    if user.relation == OUTSIDE_COLLABORATOR:
        credential_id, what = COLLABORATOR_ID, f"outside collaborator on repositories of {org}"
    else:
        credential_id, what = MEMBERSHIP_ID, f"member of {org} ({user.role or 'member'})"
    last_used = aware(last_event[0]) if last_event else None
    if last_event:
        what += f"; last audit-log event {last_event[1]} at {_iso(last_event[0])}"
    return Credential(
        source=source,
        account_id=str(user.user_id),
        credential_id=credential_id,
        kind=CredentialKind.ACCOUNT,
        active=True,
        last_used_at=last_used,
        detail=what,
        scope=org,
    )


def invitation_credential(source: str, org: str, account_id: str, invitation: Any) -> Credential:
    """A pending invitation (``OrganizationInvitation``): live until accepted, cancelled or failed."""
    inviter = invitation.inviter.login if invitation.inviter is not None else "unknown"
    failed = unset(invitation.failed_at)
    detail = (
        f"invited to {org} as {invitation.role} by {inviter} on {_iso(invitation.created_at)}; "
        f"{invitation.team_count} team(s)"
    )
    if failed is not None:
        detail += f"; failed {_iso(failed)}: {unset(invitation.failed_reason) or 'no reason given'}"
    return Credential(
        source=source,
        account_id=account_id,
        credential_id=f"{INVITATION_PREFIX}{invitation.id}",
        kind=CredentialKind.INVITATION,
        active=failed is None,
        created_at=aware(invitation.created_at),
        detail=detail,
        scope=org,
    )


def sso_credential(source: str, org: str, account_id: str, auth: Any, now: datetime) -> Credential:
    """A SAML SSO credential authorization (``CredentialAuthorization``): a classic token, SSH key,
    OAuth or App token the user authorized for the organisation. ``credential_accessed_at`` is its
    last use, so a token used after its owner left is ``used-after-termination``."""
    expires = aware(unset(auth.authorized_credential_expires_at))
    parts = [str(auth.credential_type)]
    last_eight = unset(auth.token_last_eight)
    if last_eight:
        parts.append(f"...{last_eight}")
    fingerprint = unset(auth.fingerprint)
    if fingerprint:
        parts.append(str(fingerprint))
    title = unset(auth.authorized_credential_title) or unset(auth.authorized_credential_note)
    if title:
        parts.append(repr(str(title)))
    detail = " ".join(parts) + f"; SAML-authorized {_iso(auth.credential_authorized_at)}"
    scopes = unset(auth.scopes)
    if scopes:
        detail += f"; scopes {', '.join(scopes)}"
    if expires is not None:
        detail += f"; expires {_iso(expires)}"
    return Credential(
        source=source,
        account_id=account_id,
        credential_id=f"{SSO_PREFIX}{auth.credential_id}",
        kind=CredentialKind.SSO_AUTHORIZATION,
        active=expires is None or expires > now,
        created_at=aware(auth.credential_authorized_at),
        last_used_at=aware(auth.credential_accessed_at),
        detail=detail,
        observed_at=now,
        scope=org,
    )


def pat_credential(source: str, org: str, account_id: str, grant: Any, now: datetime) -> Credential:
    """A fine-grained personal access token with access to the organisation
    (``OrganizationProgrammaticAccessGrant``): ``token_last_used_at`` is its last use."""
    expires = aware(grant.token_expires_at)
    expired = bool(grant.token_expired) or (expires is not None and expires <= now)
    detail = (
        f"fine-grained token {grant.token_name!r} (token id {grant.token_id}); "
        f"{grant.repository_selection} repositories; expires {_iso(expires)}"
    )
    return Credential(
        source=source,
        account_id=account_id,
        credential_id=f"{PAT_PREFIX}{grant.id}",
        kind=CredentialKind.PERSONAL_ACCESS_TOKEN,
        active=not expired,
        created_at=aware(grant.access_granted_at),
        last_used_at=aware(grant.token_last_used_at),
        detail=detail,
        observed_at=now,
        scope=org,
    )


def saml_name_ids(nodes: list[Mapping[str, Any]]) -> dict[str, str]:
    """``nameId`` by user, from GraphQL ``externalIdentities`` nodes: keyed ``id:<databaseId>``
    and ``login:<lower-case login>`` (nodes whose identity is linked to no user are skipped)."""
    out: dict[str, str] = {}
    for node in nodes:
        user = node.get("user")
        identity = node.get("samlIdentity")
        if not user or not identity or not identity.get("nameId"):
            continue
        name_id = str(identity["nameId"]).strip()
        if user.get("databaseId") is not None:
            out[f"id:{user['databaseId']}"] = name_id
        out[f"login:{str(user['login']).casefold()}"] = name_id
    return out


def audit_event_time(event: Any) -> datetime | None:
    """When an ``AuditLogEvent`` happened: ``@timestamp`` (ms since the epoch), else ``created_at``."""
    for value in (unset(event.timestamp), unset(event.created_at)):
        if isinstance(value, int):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


# --- exposure: deploy keys -------------------------------------------------------------------


def deploy_key_ref(repo: str, key_id: int) -> ObjectRef:
    """A deploy key of repository ``repo`` (``owner/name``): its scope and owner are the repository
    (so a key is never "the leaver's own"), its fingerprint the key id (a key re-added is new)."""
    return ObjectRef(
        scope=repo,
        kind=CredentialKind.DEPLOY_KEY,
        object_id=f"{repo}/keys/{key_id}",
        owner=repo,
        fingerprint=str(key_id),
    )


def adder_actor(login: str, user_id: int | None) -> Actor:
    """Who added a deploy key (``added_by``, a login). With the user id it is matched as that
    account is (SAML identity, owners map); without (the login no longer resolves) by the login."""
    if user_id is not None:
        return Actor(identity=f"user:{user_id}", kind="user", account_id=str(user_id), names=(login,))
    return Actor(identity=f"login:{login.casefold()}", kind="user", names=(login,))


def deploy_key_event(source: str, repo: str, key: Any, actor: Actor) -> ExposureEvent:
    """The creation of a deploy key (``DeployKey`` with ``added_by``), as an exposure event."""
    created = aware(key.created_at)
    assert created is not None
    return ExposureEvent(
        source=source,
        scope=repo,
        event_id=f"deploy-key:{repo}/{key.id}",
        at=created,
        action="deploy_key.added",
        how=ExposureHow.CREATED,
        actor=actor,
        target=deploy_key_ref(repo, int(key.id)),
        stream=f"deploy-keys/{repo}",
    )


def deploy_key_state_detail(key: Any, admins: list[str]) -> str:
    access = "read-only" if key.read_only else "read-write"
    last = unset(key.last_used)
    detail = f"deploy key {key.title!r} ({access}), last used {_iso(aware(last)) if last else 'never'}"
    if admins:
        shown = ", ".join(admins[:5]) + (f" and {len(admins) - 5} more" if len(admins) > 5 else "")
        detail += f"; repository admins: {shown}"
    return detail
