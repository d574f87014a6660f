"""The github revoker's actions: one class per action, carrying its definition (with the token
scopes / GitHub App permissions it needs), its read and its change. None of them can be undone by
this tool, and each says so: GitHub has no switch to turn a membership, a token or an invitation
off and back on.

The engine runs them (``offboard_audit.engine.steps``): read, identity and no-op checks, change,
one re-read to verify. Every read first passes the revoker's guard (another organisation,
``protected_logins``; before any call) and reads the user's identity, the numeric user id
(``GET /users/{login}``, or the membership's ``user.id``): a login renamed and taken by someone
else since the audit reads as another identity, and nothing is touched.

- ``revoke_sso_authorization``: read = ``GET /orgs/{org}/credential-authorizations?login=``;
  change = ``DELETE /orgs/{org}/credential-authorizations/{credential_id}``. The token or SSH key
  stops working for the organisation until its owner authorizes it again through the IdP.
- ``revoke_fine_grained_token``: read = ``GET /orgs/{org}/personal-access-tokens?owner[]=``;
  change = ``POST /orgs/{org}/personal-access-tokens/{pat_id}`` ``{"action": "revoke"}`` (only a
  GitHub App may call either).
- ``cancel_invitation``: read = ``GET /orgs/{org}/invitations``; an invitation gone from it whose
  invitee is an active member now (``GET /orgs/{org}/memberships/{login}``, same user id) was
  accepted: it reads as still active and the change refuses (never "nothing to revoke" or
  "cancelled"); change = ``DELETE /orgs/{org}/invitations/{invitation_id}``.
- ``remove_from_organization`` (delete stage, so it comes last, after the credentials above, and
  only with ``policy.delete_after``): read = ``GET /orgs/{org}/memberships/{login}`` (an outside
  collaborator: ``GET /orgs/{org}/outside_collaborators``); change = ``DELETE
  /orgs/{org}/memberships/{login}`` or ``DELETE /orgs/{org}/outside_collaborators/{login}``, as
  the same user (by id) is in the organisation now: converted since the audit (member to outside
  collaborator, or back), they are still in, never "nothing to revoke".
  Refused for the organisation's last owner, in the read and again right before the write.

Writes keyed by an immutable id (a credential, a grant, an invitation) cannot reach another user's
object. The membership writes are keyed by login, which GitHub cannot make conditional: the
identity (and the last-owner rule) is re-read immediately before the write (``TargetChanged``).
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from connectors._shared.actions import GONE, GuardedAction, irreversible
from connectors.github import translate as tr
from connectors.github.clients import GitHubApi
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import Restore
from offboard_audit.core.records import CredentialKind

Data = tuple[tuple[str, str], ...]

REVOKE_SSO_AUTHORIZATION = "revoke_sso_authorization"
REVOKE_FINE_GRAINED_TOKEN = "revoke_fine_grained_token"
CANCEL_INVITATION = "cancel_invitation"
REMOVE_FROM_ORGANIZATION = "remove_from_organization"


class GitHubAccess(Protocol):
    """What every action gets from :class:`~connectors.github.revoker.GitHubRevoker`."""

    @property
    def api(self) -> GitHubApi: ...

    @property
    def org(self) -> str: ...

    def guard(self, target: ActionTarget) -> None:
        """``RevokeError`` for a target of another organisation or a protected login (no call)."""
        ...

    def user_id(self, login: str) -> str | None:
        """``GET /users/{login}``: the user id now, or None when no user has that login."""
        ...

    def calling(self, what: str) -> AbstractContextManager[None]:
        """Turn a failed GitHub call into a ``RevokeError`` that names it."""
        ...


# Every action reads the user's identity first (and none can be undone by this tool).
READ_USER = "GET /users/{username}"


class GitHubAction(GuardedAction):
    """Read = guard + identity + ``read_object``; change = guard + ``revoke``. No restore."""

    def __init__(self, access: GitHubAccess) -> None:
        self.access = access

    def guard(self, target: ActionTarget) -> None:
        self.access.guard(target)

    def calling(self, what: str) -> AbstractContextManager[None]:
        return self.access.calling(what)

    @property
    def restore(self) -> Restore | None:
        # Honest undo: none of these can be put back by this tool (the descriptions say what can).
        return None

    def identity(self, target: ActionTarget) -> str | None:
        return self.access.user_id(target.username)


def _object_id(target: ActionTarget, prefix: str) -> int:
    raw = target.credential_id
    if not raw.startswith(prefix) or not raw[len(prefix) :].isdigit():
        raise RevokeError(f"{raw!r} is not a {prefix.rstrip('/')} credential id")
    return int(raw[len(prefix) :])


class ListedObjectAction(GitHubAction):
    """An object GitHub lists and deletes by its immutable numeric id (an SSO authorization, a
    fine-grained token's grant, an invitation): the id is in the credential id after ``prefix``;
    the object is read from its listing, and gone from the listing means revoked."""

    prefix: ClassVar[str]
    # The id's name in the state's data.
    id_key: ClassVar[str]
    # The requests, as errors name them: the listing (narrowed to the target's {login} where
    # GitHub can) and the one that revokes an object by its {id}. The listing's items' githubkit
    # model is named, not imported: githubkit is imported only when a call is made.
    listed: ClassVar[str]
    model: ClassVar[str]
    removed: ClassVar[str]

    def read_object(self, target: ActionTarget) -> ResourceState:
        wanted = _object_id(target, self.prefix)
        identity = self.identity(target)
        if identity is None:
            return GONE
        match = next((o for o in self.listing(target) if self.object_id(o) == wanted), None)
        data = self.keys(target, wanted)
        if match is None:
            return ResourceState(exists=False, active=False, data=data, identity=identity)
        active, more = self.found(target, match)
        return ResourceState(exists=True, active=active, data=data + more, identity=identity)

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        object_id, org = _object_id(target, self.prefix), self.access.org
        self.access.api.call(self.removed.format(org=org, id=object_id), lambda: self.remove(org, object_id))

    def keys(self, target: ActionTarget, wanted: int) -> Data:
        """What the state records whether or not the object is still there."""
        return (("login", target.username), (self.id_key, str(wanted)))

    def object_id(self, obj: Any) -> int:
        return int(obj.id)

    def listing(self, target: ActionTarget) -> list[Any]:
        """Every object of the listing that holds the target's (all pages)."""
        from githubkit_schemas.ghec_v2026_03_10 import models

        api, org, login = self.access.api, self.access.org, target.username
        return api.pages(
            self.listed.format(org=org, login=login),
            lambda: self.first_page(org, login),
            getattr(models, self.model),
        )

    @abstractmethod
    def first_page(self, org: str, login: str) -> Any:
        """The listing's first request (githubkit's typed call, 100 a page)."""

    @abstractmethod
    def found(self, target: ActionTarget, obj: Any) -> tuple[bool, Data]:
        """Whether the listed object is still active, and what the state records of it."""

    @abstractmethod
    def remove(self, org: str, object_id: int) -> Any:
        """The request that revokes the object (githubkit's typed call)."""


class RevokeSsoAuthorization(ListedObjectAction):
    definition = irreversible(
        REVOKE_SSO_AUTHORIZATION,
        CredentialKind.SSO_AUTHORIZATION,
        (
            READ_USER,
            "GET /orgs/{org}/credential-authorizations (token scope read:org)",
            "DELETE /orgs/{org}/credential-authorizations/{credential_id} (token scope admin:org)",
            "an organisation owner; Enterprise Cloud with SAML SSO",
        ),
        "Revoke the SAML SSO authorization of the token or SSH key: it stops working for the "
        "organisation. IRREVERSIBLE by this tool: only its owner can authorize it again, through the IdP.",
    )

    prefix = tr.SSO_PREFIX
    id_key = "credential_id"
    listed = "GET /orgs/{org}/credential-authorizations?login={login}"
    model = "CredentialAuthorization"
    removed = "DELETE /orgs/{org}/credential-authorizations/{id}"

    def first_page(self, org: str, login: str) -> Any:
        return self.access.api.rest.orgs.list_saml_sso_authorizations(org, login=login, per_page=100)

    def object_id(self, obj: Any) -> int:
        return int(obj.credential_id)

    def found(self, target: ActionTarget, obj: Any) -> tuple[bool, Data]:
        return True, (("credential_type", str(obj.credential_type)),)

    def remove(self, org: str, object_id: int) -> Any:
        return self.access.api.rest.orgs.remove_saml_sso_authorization(org, object_id)


class RevokeFineGrainedToken(ListedObjectAction):
    definition = irreversible(
        REVOKE_FINE_GRAINED_TOKEN,
        CredentialKind.PERSONAL_ACCESS_TOKEN,
        (
            READ_USER,
            "GET /orgs/{org}/personal-access-tokens",
            "POST /orgs/{org}/personal-access-tokens/{pat_id}",
            "GitHub App auth only: organisation permission Personal access tokens (write)",
        ),
        "Revoke the fine-grained personal access token's access to the organisation. IRREVERSIBLE by "
        "this tool: its owner would have to request access again (and an owner approve it).",
    )

    prefix = tr.PAT_PREFIX
    id_key = "pat_id"
    listed = "GET /orgs/{org}/personal-access-tokens?owner[]={login}"
    model = "OrganizationProgrammaticAccessGrant"
    removed = "POST /orgs/{org}/personal-access-tokens/{id}"

    def first_page(self, org: str, login: str) -> Any:
        return self.access.api.rest.orgs.list_pat_grants(org, owner=[login], per_page=100)

    def found(self, target: ActionTarget, obj: Any) -> tuple[bool, Data]:
        return not obj.token_expired, (("token_id", str(obj.token_id)), ("token_name", str(obj.token_name)))

    def remove(self, org: str, object_id: int) -> Any:
        return self.access.api.rest.orgs.update_pat_access(org, object_id, action="revoke")


class CancelInvitation(ListedObjectAction):
    definition = irreversible(
        CANCEL_INVITATION,
        CredentialKind.INVITATION,
        (
            READ_USER,
            "GET /orgs/{org}/invitations",
            "GET /orgs/{org}/memberships/{username} (an invitation gone from the list: accepted?)",
            "DELETE /orgs/{org}/invitations/{invitation_id}",
            "token scope admin:org (an organisation owner); GitHub App: Members (write)",
        ),
        "Cancel the pending invitation. IRREVERSIBLE by this tool: to undo, invite the person again "
        "(a new invitation and a new email to them).",
    )

    prefix = tr.INVITATION_PREFIX
    id_key = "invitation_id"
    listed = "GET /orgs/{org}/invitations"
    model = "OrganizationInvitation"
    removed = "DELETE /orgs/{org}/invitations/{id}"

    def identity(self, target: ActionTarget) -> str | None:
        # An invitation to an address with no GitHub account: the address is the identity.
        if target.account_id.startswith(tr.EMAIL_PREFIX):
            return target.account_id
        return super().identity(target)

    def keys(self, target: ActionTarget, wanted: int) -> Data:
        # The invitee is checked against the listing instead (``found``).
        return ((self.id_key, str(wanted)),)

    def read_object(self, target: ActionTarget) -> ResourceState:
        state = super().read_object(target)
        if state.exists or state.identity is None or target.account_id.startswith(tr.EMAIL_PREFIX):
            return state
        # Gone from the pending list: cancelled, expired, or accepted. Accepted, the invitee is a
        # member now: still in, and no cancel can take that back (never "nothing to revoke").
        api, org, login = self.access.api, self.access.org, target.username
        membership = api.found(
            f"GET /orgs/{org}/memberships/{login}", lambda: api.rest.orgs.get_membership_for_user(org, login)
        )
        user = getattr(membership, "user", None)
        if membership is None or str(membership.state) != "active" or user is None:
            return state
        if str(user.id) != state.identity:
            return state
        accepted = (("accepted", f"{login} is a member of {org} now"),)
        return ResourceState(exists=True, active=True, data=state.data + accepted, identity=state.identity)

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        accepted = before.value("accepted")
        if accepted is not None:
            raise RevokeError(
                f"invitation {target.credential_id} was accepted: {accepted}; cancelling cannot undo "
                "that: run the audit again to plan remove_from_organization"
            )
        super().revoke(target, before)

    def first_page(self, org: str, login: str) -> Any:
        return self.access.api.rest.orgs.list_pending_invitations(org, per_page=100)

    def found(self, target: ActionTarget, obj: Any) -> tuple[bool, Data]:
        invitee = (obj.login or obj.email or "").casefold()
        expected = target.username.casefold()
        if invitee != expected:
            raise RevokeError(
                f"invitation {obj.id} is for {invitee!r} now, not {expected!r}: run the audit again"
            )
        return True, (("invitee", invitee), ("role", str(obj.role)))

    def remove(self, org: str, object_id: int) -> Any:
        return self.access.api.rest.orgs.cancel_invitation(org, object_id)


class RemoveFromOrganization(GitHubAction):
    definition = irreversible(
        REMOVE_FROM_ORGANIZATION,
        CredentialKind.ACCOUNT,
        (
            READ_USER,
            "GET /orgs/{org}/memberships/{username}",
            "GET /orgs/{org}/members?role=admin",
            "GET /orgs/{org}/outside_collaborators",
            "DELETE /orgs/{org}/memberships/{username}",
            "DELETE /orgs/{org}/outside_collaborators/{username}",
            "token scope admin:org (an organisation owner); GitHub App: Members (write)",
        ),
        "Remove the user from the organisation (a member's membership, or an outside collaborator "
        "from every repository); planned last, in the delete stage. IRREVERSIBLE: a removed member "
        "can only be re-invited (they must accept; GitHub offers to restore their former access for "
        "three months). Never the organisation's last owner.",
        stage=Stage.DELETE,
    )

    def read_object(self, target: ActionTarget) -> ResourceState:
        if target.credential_id == tr.COLLABORATOR_ID:
            state = self._collaborator(target)
            other = self._member
        elif target.credential_id == tr.MEMBERSHIP_ID:
            state = self._member(target)
            other = self._collaborator
        else:
            raise RevokeError(f"{target.credential_id!r} is not an organisation membership")
        if state.exists or state.identity is None:
            return state
        # Not in the organisation as planned: converted since the audit (a member to an outside
        # collaborator, or the reverse), the same user is still in, and is removed as they are now.
        now = other(target, state.identity)
        return now if now.exists and now.identity == state.identity else state

    def _member(self, target: ActionTarget, known: str | None = None) -> ResourceState:
        membership = self._membership(target.username)
        if membership is None:
            identity = known or self.identity(target)
            if identity is None:
                return GONE
            return ResourceState(
                exists=False, active=False, data=(("login", target.username),), identity=identity
            )
        identity = str(membership.user.id) if membership.user is not None else self.identity(target)
        role, state = str(membership.role), str(membership.state)
        data = (("login", target.username), ("role", role), ("state", state))
        resource = ResourceState(exists=True, active=True, data=data, identity=identity)
        if role == "admin" and identity == target.account_uid:
            self._refuse_last_owner(target, identity)
        return resource

    def _membership(self, login: str) -> Any:
        api, org = self.access.api, self.access.org
        return api.found(
            f"GET /orgs/{org}/memberships/{login}", lambda: api.rest.orgs.get_membership_for_user(org, login)
        )

    def _refuse_last_owner(self, target: ActionTarget, identity: str) -> None:
        from githubkit_schemas.ghec_v2026_03_10.models import SimpleUser

        api, org = self.access.api, self.access.org
        owners = api.pages(
            f"GET /orgs/{org}/members?role=admin",
            lambda: api.rest.orgs.list_members(org, role="admin", per_page=100),
            SimpleUser,
        )
        if not any(str(o.id) != identity for o in owners):
            raise RevokeError(
                f"refusing to remove {target.username!r}: the last owner of {org} (an organisation "
                "with no owner cannot be administered); make someone else an owner first"
            )

    def _collaborator(self, target: ActionTarget, known: str | None = None) -> ResourceState:
        from githubkit_schemas.ghec_v2026_03_10.models import SimpleUser

        identity = known or self.identity(target)
        if identity is None:
            return GONE
        api, org = self.access.api, self.access.org
        found = api.pages(
            f"GET /orgs/{org}/outside_collaborators",
            lambda: api.rest.orgs.list_outside_collaborators(org, per_page=100),
            SimpleUser,
        )
        present = any(str(u.id) == identity for u in found)
        data = (("login", target.username), ("relation", tr.OUTSIDE_COLLABORATOR))
        return ResourceState(exists=present, active=present, data=data, identity=identity)

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        from offboard_audit.core.actions import identity_mismatch
        from offboard_audit.core.errors import TargetChanged

        api, org, login = self.access.api, self.access.org, target.username
        # The write names the login, which GitHub cannot make conditional: read again right before.
        now = self.read_object(target)
        mismatch = identity_mismatch(target, now)
        if mismatch is not None:
            raise TargetChanged(mismatch)
        if now.value("relation") == tr.OUTSIDE_COLLABORATOR:
            api.call(
                f"DELETE /orgs/{org}/outside_collaborators/{login}",
                lambda: api.rest.orgs.remove_outside_collaborator(org, login),
            )
            return
        api.call(
            f"DELETE /orgs/{org}/memberships/{login}",
            lambda: api.rest.orgs.remove_membership_for_user(org, login),
        )


# In the order the plan and ``config check`` list them.
ACTIONS: tuple[type[GitHubAction], ...] = (
    RevokeSsoAuthorization,
    RevokeFineGrainedToken,
    CancelInvitation,
    RemoveFromOrganization,
)
