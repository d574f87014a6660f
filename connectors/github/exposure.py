"""What a GitHub leaver could leave behind: deploy keys they added (``deploy_keys = true``).

A deploy key is an SSH key with access to one repository; whoever holds its private key keeps
that access whatever becomes of the account that added it. The core's rule
``persistence-left-by-leaver`` (``core/exposure_rules.py``) flags a key a departed person added
that still exists, and ``plan`` lists a ``remove`` task for it (never an automatic deletion: CI
may depend on it). This reader feeds that rule:

- :meth:`GitHubExposure.read_events`: ``GET /orgs/{org}/repos`` (paged), then per repository
  ``GET /repos/{owner}/{repo}/keys`` (paged, ``workers`` at a time): each key's ``added_by`` and
  ``created_at`` is an exposure event (``deploy_key.added``, ``created``), one batch per repository
  (stream ``deploy-keys/<owner>/<repo>``). The adder is resolved to its user id (``GET
  /users/{login}``, once per distinct adder) so that it is matched as that account is (SAML
  identity, owners map). A repository whose keys cannot be read yields a failed batch: that
  repository's exposure scope fails (its stored state is kept, stale), the others go on. Keys
  without ``added_by`` (added before GitHub recorded it) name nobody and are skipped.
- :meth:`GitHubExposure.inventory`: for the keys the leavers' events name, whether each still
  exists (from this run's listing; a repository not listed in this run is listed again) and, for
  those that do, the repository's admins (``GET /repos/{owner}/{repo}/collaborators?permission=admin``,
  the first page, only for repositories holding a leaver's key): who should remove or rotate it.

Cost: one call per 100 repositories plus one per repository (GitHub has no organisation-wide
deploy-key list); the adders: one lookup each, or with more than 20 the member and collaborator
lists (one call per 100) and a lookup for each adder they do not name; one call per repository
holding a leaver's key.
Permissions: token scope ``repo`` (an organisation owner sees every repository); GitHub App:
Administration (read) on the repositories, Metadata (read).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.github import translate as tr
from connectors.github.clients import GitHubApi, GitHubCallError, OrgAccess, is_not_found
from connectors.github.settings import GitHubSettings
from offboard_audit.core.exposure import (
    Actor,
    Checkpoint,
    EventBatch,
    InventoryRead,
    ObjectRef,
    PersistenceState,
)
from offboard_audit.core.records import CredentialKind, ScopeFailure

# More distinct adders than this: list the members once instead of looking each one up.
_LOOKUPS_BEFORE_LISTING = 20

EXPOSURE_PERMISSIONS: tuple[str, ...] = (
    "GET /orgs/{org}/repos, GET /repos/{owner}/{repo}/keys, GET /repos/{owner}/{repo}/collaborators "
    "(token scope repo; GitHub App: Administration read, Metadata read)",
    "GET /users/{username} (public)",
)


class GitHubExposure(OrgAccess):
    """Deploy keys of one organisation's repositories (see the module docstring)."""

    system = tr.SYSTEM

    def __init__(self, settings: GitHubSettings, api: GitHubApi) -> None:
        super().__init__(settings, api)
        # This run's listing: repository -> its deploy keys; and the repositories that failed.
        self._keys: dict[str, list[Any]] = {}
        self._failed: dict[str, str] = {}

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        """One batch per repository (the whole listing is read every run: GitHub keeps no history
        of deploy keys to resume from; event ids are stable, so nothing is stored twice)."""
        from githubkit_schemas.ghec_v2026_03_10.models import MinimalRepository

        api, org = self.api, self.org
        self._keys, self._failed = {}, {}
        with api.session():
            try:
                repos = api.pages(
                    f"GET /orgs/{org}/repos",
                    lambda: api.rest.repos.list_for_org(org, type="all", per_page=self.settings.page_size),
                    MinimalRepository,
                )
            except GitHubCallError as exc:
                yield EventBatch(stream=f"deploy-keys/{org}", scope=org, failure=ScopeFailure(org, str(exc)))
                return
        names = [str(r.full_name) for r in repos]
        listed = api.map(self.list_keys, names)
        adders = sorted(
            {
                str(k.added_by)
                for keys in listed
                if isinstance(keys, list)
                for k in keys
                if tr.unset(k.added_by)
            },
            key=str.casefold,
        )
        actors = self.resolve_all(adders)
        for repo, keys in zip(names, listed, strict=True):
            stream = f"deploy-keys/{repo}"
            if isinstance(keys, GitHubCallError):
                self._failed[repo] = str(keys)
                yield EventBatch(stream=stream, scope=repo, failure=ScopeFailure(repo, str(keys)))
                continue
            events = []
            unresolved = None
            for key in keys:
                login = tr.unset(key.added_by)
                if not login:
                    continue
                actor = actors[str(login)]
                if isinstance(actor, GitHubCallError):
                    unresolved = f"{stream}: who added key {key.id} ({login}): {actor}"
                    break
                events.append(tr.deploy_key_event(self.name, repo, key, actor))
            if unresolved is not None:
                # Never a batch that silently leaves a key's adder out.
                self._failed[repo] = unresolved
                yield EventBatch(stream=stream, scope=repo, failure=ScopeFailure(repo, unresolved))
                continue
            self._keys[repo] = keys
            yield EventBatch(
                stream=stream,
                scope=repo,
                events=tuple(events),
                checkpoint=Checkpoint(stream, now.isoformat()),
                events_seen=len(keys),
                objects_read=1,
            )

    def list_keys(self, repo: str) -> list[Any]:
        from githubkit_schemas.ghec_v2026_03_10.models import DeployKey

        owner, name = repo.split("/", 1)
        return self.api.pages(
            f"GET /repos/{repo}/keys",
            lambda: self.api.rest.repos.list_deploy_keys(owner, name, per_page=self.settings.page_size),
            DeployKey,
        )

    def resolve_all(self, logins: list[str]) -> dict[str, Actor | GitHubCallError]:
        """Every adder as an actor. Many adders: the member and outside-collaborator lists (a call
        per 100) name most of them, and only the rest are looked up one by one."""
        from githubkit_schemas.ghec_v2026_03_10.models import SimpleUser

        api, org, size = self.api, self.org, self.settings.page_size
        known: dict[str, Actor | GitHubCallError] = {}
        if len(logins) > _LOOKUPS_BEFORE_LISTING:
            with api.session():
                try:
                    listed = api.pages(
                        f"GET /orgs/{org}/members",
                        lambda: api.rest.orgs.list_members(org, per_page=size),
                        SimpleUser,
                    ) + api.pages(
                        f"GET /orgs/{org}/outside_collaborators",
                        lambda: api.rest.orgs.list_outside_collaborators(org, per_page=size),
                        SimpleUser,
                    )
                except GitHubCallError:
                    listed = []  # fall back to one lookup per adder
            ids = {u.login.casefold(): int(u.id) for u in listed}
            known = {
                login: tr.adder_actor(login, ids[login.casefold()])
                for login in logins
                if login.casefold() in ids
            }
        rest = [login for login in logins if login not in known]
        known.update(zip(rest, api.map(self.resolve, rest), strict=True))
        return known

    def resolve(self, login: str) -> Actor:
        """The adder as an actor with its user id; by login alone when it no longer resolves."""
        user = self.api.found(f"GET /users/{login}", lambda: self.api.rest.users.get_by_username(login))
        return tr.adder_actor(login, None if user is None else int(user.id))

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        """Whether each wanted deploy key still exists, with its repository's admins."""
        by_repo: dict[str, list[ObjectRef]] = defaultdict(list)
        for ref in wanted:
            if ref.kind is CredentialKind.DEPLOY_KEY:
                by_repo[ref.scope].append(ref)
        repos = sorted(by_repo)
        with self.api.session():
            results = [self._check(repo, by_repo[repo]) for repo in repos]
        objects = tuple(o for r in results if isinstance(r, list) for o in r)
        failed = tuple(
            ScopeFailure(repo, r) for repo, r in zip(repos, results, strict=True) if isinstance(r, str)
        )
        return InventoryRead(objects=objects, scopes=tuple(repos), failed_scopes=failed)

    def _check(self, repo: str, refs: list[ObjectRef]) -> list[PersistenceState] | str:
        if repo in self._failed:
            return self._failed[repo]
        keys = self._keys.get(repo)
        if keys is None:
            try:
                keys = self.list_keys(repo)
            except GitHubCallError as exc:
                if not is_not_found(exc):
                    return str(exc)
                keys = []  # the repository is gone, and its keys with it
        by_id = {str(k.id): k for k in keys}
        present = [r for r in refs if r.fingerprint in by_id]
        admins: list[str] = []
        if present:
            owner, name = repo.split("/", 1)
            what = f"GET /repos/{repo}/collaborators?permission=admin"
            # The first page names who to ask (the detail shows five); no need to read every owner.
            try:
                response = self.api.call(
                    what,
                    lambda: self.api.rest.repos.list_collaborators(
                        owner, name, permission="admin", per_page=100
                    ),
                )
                admins = sorted((c.login for c in self.api.parsed(what, response)), key=str.casefold)
            except GitHubCallError as exc:
                return str(exc)
        return [
            PersistenceState(
                source=self.name,
                ref=r,
                present=r.fingerprint in by_id,
                detail=tr.deploy_key_state_detail(by_id[r.fingerprint], admins)
                if r.fingerprint in by_id
                else "",
                remove_by=tuple(admins),
            )
            for r in refs
        ]
