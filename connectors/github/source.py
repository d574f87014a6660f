"""The ``github`` account source: an organisation's members, outside collaborators and pending
invitations, and the credentials that let them in, in two passes.

Bulk pass (:meth:`GitHubSource.collect`), a fixed number of paged lists whatever the headcount
(``page_size`` items a page), read concurrently:

- ``GET /orgs/{org}/members`` and ``GET /orgs/{org}/members?role=admin`` (who is an owner);
- ``GET /orgs/{org}/outside_collaborators``;
- ``GET /orgs/{org}/invitations`` (a pending invitation is a live way in); for an invitee with a
  GitHub login that is neither a member nor a collaborator, ``GET /users/{login}`` for its id;
- with ``saml = true``: GraphQL ``organization.samlIdentityProvider.externalIdentities`` (100 a
  page: ``nameId`` -> user) and ``GET /orgs/{org}/credential-authorizations`` (SAML-authorized
  tokens and SSH keys, ``credential_accessed_at`` as their last use). An organisation without
  SAML SSO has no identity provider: both are skipped with a warning.

Detail pass (:meth:`GitHubSource.detail`), only for the accounts the core asks about (matched to
departed or ambiguous people):

- ``GET /orgs/{org}/personal-access-tokens?owner[]=...`` (up to 10 owners a call): fine-grained
  tokens with access to the organisation and their ``token_last_used_at``. Only a GitHub App may
  call it; with token auth the source says so in a warning and reads on without them;
- with ``audit_log = true``: ``GET /orgs/{org}/audit-log?phrase=actor:<login>&include=all&per_page=1``
  per account: the newest event the user acted in (web and git: ``git.clone``,
  ``repo.download_zip``, ...) is the membership's last use. An audit log that cannot be read, or
  whose newest event under the login is of another user id (a login renamed and taken since), is
  an enrichment failure (last known values kept, nothing resolved for lack of them).

The organisation is the source's one scope: any list that fails (after the bounded rate-limit waits
of ``clients.py``) fails it, never an empty list; a failed detail pass returns none of the asked
accounts' data. Identity: ``Account.uid`` is the numeric user id.

Token scopes: ``read:org`` (an organisation owner: invitations, credential authorizations),
``read:audit_log`` with ``audit_log``. GitHub App permissions: Members (read), Administration
(read), Personal access tokens (read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from connectors.github import translate as tr
from connectors.github.clients import GitHubApi, GitHubCallError, OrgAccess, is_not_found
from connectors.github.settings import GitHubSettings
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    EnrichmentFailure,
    Person,
    ScopeFailure,
    SourceData,
)

log = logging.getLogger(__name__)

SAML_QUERY = """
query($org: String!, $after: String) {
  organization(login: $org) {
    samlIdentityProvider {
      externalIdentities(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { samlIdentity { nameId } user { login databaseId } }
      }
    }
  }
}
"""

# GET /orgs/{org}/personal-access-tokens takes at most 10 owners per call.
_PAT_OWNERS_PER_CALL = 10


@dataclass
class _Bulk:
    """What the bulk pass read; the detail pass reuses it (no second read of the lists)."""

    users: dict[str, tr.OrgUser] = field(default_factory=dict)  # by account id
    accounts: dict[str, Account] = field(default_factory=dict)
    credentials: dict[str, list[Credential]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class GitHubSource(OrgAccess):
    """Reads one GitHub organisation (see the module docstring for the calls)."""

    system = tr.SYSTEM

    def __init__(self, settings: GitHubSettings, api: GitHubApi) -> None:
        super().__init__(settings, api)
        self._bulk: _Bulk | None = None

    # --- bulk pass ----------------------------------------------------------------------

    def collect(self) -> SourceData:
        with self.api.session():
            bulk = self.read_bulk()
        return SourceData(
            accounts=tuple(bulk.accounts.values()),
            credentials=tuple(c for creds in bulk.credentials.values() for c in creds),
            warnings=tuple(bulk.warnings),
            scopes=(self.org,),
        )

    def read_bulk(self) -> _Bulk:
        """The five lists (and the invitees' ids), or SourceError naming every list that failed."""
        from githubkit_schemas.ghec_v2026_03_10.models import (
            CredentialAuthorization,
            OrganizationInvitation,
            SimpleUser,
        )

        api, org, size = self.api, self.org, self.settings.page_size
        rest = api.rest
        lists: dict[str, Callable[[], Any]] = {
            "members": lambda: api.pages(
                f"GET /orgs/{org}/members", lambda: rest.orgs.list_members(org, per_page=size), SimpleUser
            ),
            "admins": lambda: api.pages(
                f"GET /orgs/{org}/members?role=admin",
                lambda: rest.orgs.list_members(org, role="admin", per_page=size),
                SimpleUser,
            ),
            "outside": lambda: api.pages(
                f"GET /orgs/{org}/outside_collaborators",
                lambda: rest.orgs.list_outside_collaborators(org, per_page=size),
                SimpleUser,
            ),
            "invitations": lambda: api.pages(
                f"GET /orgs/{org}/invitations",
                lambda: rest.orgs.list_pending_invitations(org, per_page=size),
                OrganizationInvitation,
            ),
        }
        if self.settings.saml:
            lists["saml"] = self.saml_identities
        results = self._run_all(lists)
        errors = [f"{what}: {r}" for what, r in results.items() if isinstance(r, BaseException)]
        if errors:
            raise SourceError(f"{self.name}: organisation {org}: {'; '.join(errors)}")
        bulk = _Bulk()
        name_ids: dict[str, str] | None = results.get("saml")
        authorizations: list[Any] = []
        if self.settings.saml and name_ids is None:
            bulk.warnings.append(
                f"organisation {org} has no SAML identity provider: no SAML identities or credential "
                "authorizations to read (set saml = false to silence this)"
            )
        elif self.settings.saml:
            try:
                authorizations = api.pages(
                    f"GET /orgs/{org}/credential-authorizations",
                    lambda: rest.orgs.list_saml_sso_authorizations(org, per_page=size),
                    CredentialAuthorization,
                )
            except GitHubCallError as exc:
                raise SourceError(
                    f"{self.name}: organisation {org}: credential authorizations: {exc}"
                ) from exc
        admins = {u.id for u in results["admins"]}
        users: dict[str, tr.OrgUser] = {}
        for u in results["members"]:
            role = "admin" if u.id in admins else "member"
            users[str(u.id)] = tr.OrgUser(
                u.id, u.login, tr.MEMBER, role, bot=u.type == "Bot", name=u.name or ""
            )
        for u in results["outside"]:
            users.setdefault(
                str(u.id), tr.OrgUser(u.id, u.login, tr.OUTSIDE_COLLABORATOR, bot=u.type == "Bot")
            )
        by_login = {u.login.casefold(): aid for aid, u in users.items()}
        now = api.now()
        ids = name_ids or {}

        def add_account(user: tr.OrgUser) -> str:
            aid = str(user.user_id)
            name_id = ids.get(f"id:{user.user_id}") or ids.get(f"login:{user.login.casefold()}")
            bulk.users[aid] = user
            bulk.accounts[aid] = tr.user_account(
                self.name, org, user, name_id, self.settings.owner_of(user.login)
            )
            bulk.credentials.setdefault(aid, [])
            return aid

        for user in users.values():
            aid = add_account(user)
            bulk.credentials[aid].append(tr.membership_credential(self.name, org, user))
        for inv in results["invitations"]:
            if inv.login:
                aid = by_login.get(inv.login.casefold()) or self._invitee(inv, add_account, by_login, bulk)
            elif inv.email:
                account = tr.email_invitation_account(self.name, org, inv)
                aid = account.account_id
                bulk.accounts.setdefault(aid, account)
                bulk.credentials.setdefault(aid, [])
            else:
                bulk.warnings.append(f"invitation {inv.id} names neither a login nor an email: skipped")
                continue
            bulk.credentials[aid].append(tr.invitation_credential(self.name, org, aid, inv))
        stray: list[str] = []
        for auth in authorizations:
            owner = by_login.get(auth.login.casefold())
            if owner is None:
                stray.append(auth.login)
                continue
            bulk.credentials[owner].append(tr.sso_credential(self.name, org, owner, auth, now))
        if stray:
            bulk.warnings.append(
                f"{len(stray)} SAML credential authorization(s) of logins that are neither members nor "
                f"outside collaborators of {org} ({', '.join(sorted(set(stray))[:5])}): not audited"
            )
        self._bulk = bulk
        return bulk

    def _invitee(
        self, inv: Any, add_account: Callable[[tr.OrgUser], str], by_login: dict[str, str], bulk: _Bulk
    ) -> str:
        """The account of an invitee with a GitHub login: ``GET /users/{login}`` for its id."""
        login = str(inv.login)
        what = f"GET /users/{login}"
        try:
            found = self.api.parsed(
                what, self.api.call(what, lambda: self.api.rest.users.get_by_username(login))
            )
        except GitHubCallError as exc:
            if not is_not_found(exc):
                raise SourceError(
                    f"{self.name}: organisation {self.org}: invitation {inv.id}: {exc}"
                ) from exc
            # Renamed or deleted since the invitation: keep the invitation, with no identity to
            # act on (the revoker refuses an account without one) until the next audit.
            aid = f"login:{login.casefold()}"
            bulk.accounts.setdefault(
                aid,
                Account(
                    self.name,
                    tr.SYSTEM,
                    aid,
                    login,
                    True,
                    attributes=(("relation", tr.INVITEE),),
                    scope=self.org,
                ),
            )
            bulk.credentials.setdefault(aid, [])
            bulk.warnings.append(
                f"invitation {inv.id}: login {login} no longer resolves (renamed or deleted)"
            )
            return aid
        user = tr.OrgUser(found.id, found.login, tr.INVITEE, str(inv.role), bot=found.type == "Bot")
        aid = add_account(user)
        by_login[found.login.casefold()] = aid
        return aid

    def saml_identities(self) -> dict[str, str] | None:
        """``nameId`` by user (see ``translate.saml_name_ids``), or None when the organisation has
        no SAML identity provider."""
        nodes: list[Any] = []
        after: str | None = None
        page = 0
        while True:
            page += 1
            data = self.api.graphql(
                f"GraphQL organization.samlIdentityProvider.externalIdentities (page {page})",
                SAML_QUERY,
                {"org": self.org, "after": after},
            )
            org = data["organization"]
            if org is None:
                raise GitHubCallError(f"GraphQL: organisation {self.org} not found")
            provider = org["samlIdentityProvider"]
            if provider is None:
                return None
            identities = provider["externalIdentities"]
            nodes.extend(identities["nodes"])
            info = identities["pageInfo"]
            if not info["hasNextPage"]:
                return tr.saml_name_ids(nodes)
            if not info["endCursor"] or info["endCursor"] == after:
                raise GitHubCallError("GraphQL externalIdentities: hasNextPage without a new endCursor")
            after = str(info["endCursor"])

    def _run_all(self, work: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        def guarded(fn: Callable[[], Any]) -> Any:
            try:
                with self.api.session():
                    return fn()
            # One list failing must not hide which others failed too: each becomes its error.
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.workers, len(work)))) as pool:
            futures = {name: pool.submit(guarded, fn) for name, fn in work.items()}
            return {name: f.result() for name, f in futures.items()}

    # --- detail pass --------------------------------------------------------------------

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        mine = [a for a in accounts if a.source == self.name and a.system == self.system]
        if not mine:
            return SourceData()
        with self.api.session():
            return self._detail(mine)

    def _detail(self, mine: Sequence[Account]) -> SourceData:
        bulk = self._bulk or self.read_bulk()
        known = [a for a in mine if a.account_id in bulk.accounts]
        creds: dict[str, list[Credential]] = {
            a.account_id: list(bulk.credentials[a.account_id]) for a in known
        }
        users = [bulk.users[a.account_id] for a in known if a.account_id in bulk.users]
        warnings: list[str] = []
        enrichment: list[EnrichmentFailure] = []
        members = [u for u in users if u.relation == tr.MEMBER]
        if members and not self.settings.app_auth:
            warnings.append(
                "fine-grained personal access tokens were not read: only a GitHub App can list them "
                "(configure app_id, private_key_env and installation_id)"
            )
        elif members:
            try:
                for grant in self.pat_grants([u.login for u in members]):
                    aid = str(grant.owner.id)
                    if aid in creds:
                        creds[aid].append(tr.pat_credential(self.name, self.org, aid, grant, self.api.now()))
            except GitHubCallError as exc:
                # None of the asked accounts' data: nothing stored for them is replaced.
                return SourceData(
                    failed_scopes=(ScopeFailure(self.org, f"fine-grained tokens: {exc}"),), scopes=(self.org,)
                )
        if self.settings.audit_log and users:
            events = self.api.map(self.last_event, users)
            errors: list[str] = []
            for user, result in zip(users, events, strict=True):
                if isinstance(result, BaseException):
                    errors.append(str(result))
                elif result is not None:
                    aid = str(user.user_id)
                    creds[aid] = [
                        tr.membership_credential(self.name, self.org, user, result)
                        if c.kind is CredentialKind.ACCOUNT
                        else c
                        for c in creds[aid]
                    ]
            if errors:
                enrichment.append(
                    EnrichmentFailure(
                        self.org,
                        f"audit log: {errors[0]}"
                        + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                    )
                )
        return SourceData(
            accounts=tuple(bulk.accounts[a.account_id] for a in known),
            credentials=tuple(c for aid in creds for c in creds[aid]),
            warnings=tuple(warnings),
            scopes=(self.org,),
            enrichment_failures=tuple(enrichment),
        )

    def pat_grants(self, logins: Sequence[str]) -> list[Any]:
        """Fine-grained token grants of ``logins`` (10 owners per call, each call paged)."""
        from githubkit_schemas.ghec_v2026_03_10.models import OrganizationProgrammaticAccessGrant

        out: list[Any] = []
        rest = self.api.rest
        for i in range(0, len(logins), _PAT_OWNERS_PER_CALL):
            chunk = list(logins[i : i + _PAT_OWNERS_PER_CALL])
            out.extend(
                self.api.pages(
                    f"GET /orgs/{self.org}/personal-access-tokens (owners {', '.join(chunk)})",
                    lambda chunk=chunk: rest.orgs.list_pat_grants(  # type: ignore[misc]
                        self.org, owner=chunk, per_page=self.settings.page_size
                    ),
                    OrganizationProgrammaticAccessGrant,
                )
            )
        return out

    def last_event(self, user: tr.OrgUser) -> tuple[datetime, str] | None:
        """The newest audit-log event ``user`` acted in (one call), or None when there is none.

        The log is searched by login, so the one event read may be of another user id (the login
        renamed and taken since). It is not ``user``'s, and whether ``user`` acted since is then
        unknown: a :class:`GitHubCallError` (an enrichment failure), never "no last use"."""
        what = f"GET /orgs/{self.org}/audit-log?phrase=actor:{user.login}"
        rest = self.api.rest
        response = self.api.call(
            what,
            lambda: rest.orgs.get_audit_log(
                self.org, phrase=f"actor:{user.login}", include="all", order="desc", per_page=1
            ),
        )
        for event in self.api.parsed(what, response):
            actor_id = tr.unset(event.actor_id)
            if actor_id not in (None, user.user_id):
                raise GitHubCallError(
                    f"{what}: the newest event is of user id {actor_id}, not {user.user_id} "
                    "(the login was held by another account): the last use is unknown"
                )
            at = tr.audit_event_time(event)
            if at is not None:
                return at, str(tr.unset(event.action) or "event")
        return None

    # --- targeted path (HR webhook) -------------------------------------------------------

    def collect_for(self, person: Person) -> SourceData:
        """Only the accounts that may belong to ``person``, read in full: the bulk lists, then the
        detail pass for the accounts whose login, SAML nameId, owners-map email or invitation email
        equals one of the person's identifiers (a generous pre-filter; the core's matcher decides)."""
        wanted = {person.employee_id.casefold(), *(a.casefold() for a in person.aliases)}
        if person.email:
            wanted |= {person.email.casefold(), person.email.split("@", 1)[0].casefold()}
        wanted.discard("")
        bulk = self.read_bulk()
        picked = [
            a
            for a in bulk.accounts.values()
            if {
                a.username.casefold(),
                *(e.casefold() for e in a.emails),
                *(v.casefold() for _k, v in a.attributes),
            }
            & wanted
        ]
        if not picked:
            return SourceData(scopes=(self.org,), warnings=tuple(bulk.warnings))
        detailed = self.detail(picked)
        return replace(detailed, warnings=tuple(bulk.warnings) + detailed.warnings)
