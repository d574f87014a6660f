"""The state of a fake GitHub organisation, and GitHub-shaped payloads of it.

Every payload carries each field GitHub's OpenAPI description marks required (``SimpleUser`` has
18, ``MinimalRepository`` 46), because the connector parses answers with githubkit's typed models:
an answer GitHub would not send fails, here as against GitHub.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeUser:
    id: int
    login: str
    name: str | None = None
    type: str = "User"


@dataclass
class FakeDeployKey:
    id: int
    title: str
    created_at: datetime
    read_only: bool = True
    added_by: str | None = None
    last_used: datetime | None = None


@dataclass
class FakeRepo:
    id: int
    name: str
    private: bool = True
    keys: list[FakeDeployKey] = field(default_factory=list)
    admins: list[int] = field(default_factory=list)


@dataclass
class FakeInvitation:
    id: int
    login: str | None
    email: str | None
    role: str
    created_at: datetime
    inviter: int
    team_count: int = 0


@dataclass
class FakeCredentialAuthorization:
    credential_id: int
    user_id: int
    credential_type: str
    authorized_at: datetime
    accessed_at: datetime | None = None
    token_last_eight: str | None = None
    fingerprint: str | None = None
    expires_at: datetime | None = None
    title: str | None = None
    scopes: tuple[str, ...] = ()


@dataclass
class FakePatGrant:
    id: int
    user_id: int
    token_id: int
    token_name: str
    granted_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    expired: bool = False


@dataclass
class FakeAuditEvent:
    at: datetime
    action: str
    actor_id: int
    repo: str | None = None


class FakeApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GitHubFakeState:
    """One organisation: users, members (with their role), outside collaborators, invitations,
    SAML identities and credential authorizations, fine-grained token grants, repositories with
    deploy keys and admins, and audit-log events. Thread-safe (the server is threaded)."""

    def __init__(self, org: str = "acme", saml: bool = True) -> None:
        self.org = org
        self.org_id = 9000
        self.saml = saml
        self.lock = threading.RLock()
        self.users: dict[int, FakeUser] = {}
        self.members: dict[int, str] = {}  # user id -> admin | member
        self.outside: set[int] = set()
        self.invitations: dict[int, FakeInvitation] = {}
        self.authorizations: dict[int, FakeCredentialAuthorization] = {}
        self.grants: dict[int, FakePatGrant] = {}
        self.repos: dict[str, FakeRepo] = {}
        self.name_ids: dict[int, str] = {}
        self.audit: list[FakeAuditEvent] = []
        self._next = 1000
        self.base_url = ""

    def next_id(self) -> int:
        with self.lock:
            self._next += 1
            return self._next

    # --- seeding ---------------------------------------------------------------------------

    def add_user(
        self, login: str, user_id: int | None = None, name: str | None = None, bot: bool = False
    ) -> FakeUser:
        with self.lock:
            user = FakeUser(user_id or self.next_id(), login, name, "Bot" if bot else "User")
            self.users[user.id] = user
            return user

    def add_member(self, login: str, role: str = "member", name_id: str | None = None, **kw: Any) -> FakeUser:
        user = self.add_user(login, **kw)
        with self.lock:
            self.members[user.id] = role
            if name_id:
                self.name_ids[user.id] = name_id
        return user

    def add_outside_collaborator(self, login: str, **kw: Any) -> FakeUser:
        user = self.add_user(login, **kw)
        with self.lock:
            self.outside.add(user.id)
        return user

    def invite(
        self,
        inviter: FakeUser,
        login: str | None = None,
        email: str | None = None,
        role: str = "direct_member",
        created_at: datetime | None = None,
    ) -> FakeInvitation:
        with self.lock:
            inv = FakeInvitation(
                self.next_id(),
                login,
                email,
                role,
                created_at or datetime.now(UTC) - timedelta(days=3),
                inviter.id,
            )
            self.invitations[inv.id] = inv
            return inv

    def authorize(
        self, user: FakeUser, credential_type: str = "personal access token", **kw: Any
    ) -> FakeCredentialAuthorization:
        kw.setdefault("authorized_at", datetime.now(UTC) - timedelta(days=100))
        if credential_type == "personal access token":
            kw.setdefault("token_last_eight", f"{user.id:08d}"[-8:])
        with self.lock:
            auth = FakeCredentialAuthorization(self.next_id(), user.id, credential_type, **kw)
            self.authorizations[auth.credential_id] = auth
            return auth

    def grant(self, user: FakeUser, token_name: str = "ci", **kw: Any) -> FakePatGrant:  # noqa: S107
        kw.setdefault("granted_at", datetime.now(UTC) - timedelta(days=50))
        with self.lock:
            g = FakePatGrant(self.next_id(), user.id, self.next_id(), token_name, **kw)
            self.grants[g.id] = g
            return g

    def add_repo(self, name: str, admins: tuple[FakeUser, ...] = ()) -> FakeRepo:
        with self.lock:
            repo = FakeRepo(self.next_id(), name, admins=[u.id for u in admins])
            self.repos[name] = repo
            return repo

    def add_deploy_key(self, repo: FakeRepo, title: str, added_by: str | None, **kw: Any) -> FakeDeployKey:
        kw.setdefault("created_at", datetime.now(UTC) - timedelta(days=30))
        with self.lock:
            key = FakeDeployKey(self.next_id(), title, added_by=added_by, **kw)
            repo.keys.append(key)
            return key

    def log(self, user: FakeUser, action: str, at: datetime, repo: str | None = None) -> None:
        with self.lock:
            self.audit.append(FakeAuditEvent(at, action, user.id, repo))

    def rename(self, user: FakeUser, login: str) -> None:
        with self.lock:
            user.login = login

    def user_by_login(self, login: str) -> FakeUser | None:
        wanted = login.casefold()
        with self.lock:
            return next((u for u in self.users.values() if u.login.casefold() == wanted), None)

    def owners(self) -> list[int]:
        with self.lock:
            return [uid for uid, role in self.members.items() if role == "admin"]

    # --- payloads --------------------------------------------------------------------------

    def simple_user(self, user: FakeUser) -> dict[str, Any]:
        api = self.base_url
        return {
            "login": user.login,
            "id": user.id,
            "node_id": f"U_{user.id}",
            "avatar_url": f"https://avatars.example/u/{user.id}",
            "gravatar_id": "",
            "url": f"{api}/users/{user.login}",
            "html_url": f"https://github.example/{user.login}",
            "followers_url": f"{api}/users/{user.login}/followers",
            "following_url": f"{api}/users/{user.login}/following{{/other_user}}",
            "gists_url": f"{api}/users/{user.login}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{user.login}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{user.login}/subscriptions",
            "organizations_url": f"{api}/users/{user.login}/orgs",
            "repos_url": f"{api}/users/{user.login}/repos",
            "events_url": f"{api}/users/{user.login}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{user.login}/received_events",
            "type": user.type,
            "site_admin": False,
        }

    def public_user(self, user: FakeUser) -> dict[str, Any]:
        epoch = "2015-01-01T00:00:00Z"
        return {
            **self.simple_user(user),
            "name": user.name,
            "company": None,
            "blog": None,
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": epoch,
            "updated_at": epoch,
        }

    def collaborator(self, user: FakeUser) -> dict[str, Any]:
        return {
            **self.simple_user(user),
            "permissions": {"pull": True, "triage": True, "push": True, "maintain": True, "admin": True},
            "role_name": "admin",
        }

    def organization_simple(self) -> dict[str, Any]:
        api, org = self.base_url, self.org
        return {
            "login": org,
            "id": self.org_id,
            "node_id": f"O_{self.org_id}",
            "url": f"{api}/orgs/{org}",
            "repos_url": f"{api}/orgs/{org}/repos",
            "events_url": f"{api}/orgs/{org}/events",
            "hooks_url": f"{api}/orgs/{org}/hooks",
            "issues_url": f"{api}/orgs/{org}/issues",
            "members_url": f"{api}/orgs/{org}/members{{/member}}",
            "public_members_url": f"{api}/orgs/{org}/public_members{{/member}}",
            "avatar_url": f"https://avatars.example/o/{self.org_id}",
            "description": None,
        }

    def membership(self, user: FakeUser) -> dict[str, Any]:
        api, org = self.base_url, self.org
        return {
            "url": f"{api}/orgs/{org}/memberships/{user.login}",
            "state": "active",
            "role": self.members[user.id],
            "organization_url": f"{api}/orgs/{org}",
            "organization": self.organization_simple(),
            "user": self.simple_user(user),
        }

    def invitation(self, inv: FakeInvitation) -> dict[str, Any]:
        return {
            "id": inv.id,
            "login": inv.login,
            "email": inv.email,
            "role": inv.role,
            "created_at": iso(inv.created_at),
            "inviter": self.simple_user(self.users[inv.inviter]),
            "team_count": inv.team_count,
            "node_id": f"OI_{inv.id}",
            "invitation_teams_url": f"{self.base_url}/organizations/{self.org_id}/invitations/{inv.id}/teams",
            "invitation_source": "member",
        }

    def credential_authorization(self, a: FakeCredentialAuthorization) -> dict[str, Any]:
        out: dict[str, Any] = {
            "login": self.users[a.user_id].login,
            "credential_id": a.credential_id,
            "credential_type": a.credential_type,
            "credential_authorized_at": iso(a.authorized_at),
            "credential_accessed_at": iso(a.accessed_at),
            "authorized_credential_id": a.credential_id + 7,
        }
        if a.token_last_eight is not None:
            out["token_last_eight"] = a.token_last_eight
            out["scopes"] = list(a.scopes or ("repo", "read:org"))
        if a.fingerprint is not None:
            out["fingerprint"] = a.fingerprint
        if a.title is not None:
            out["authorized_credential_title"] = a.title
        if a.expires_at is not None:
            out["authorized_credential_expires_at"] = iso(a.expires_at)
        return out

    def pat_grant(self, g: FakePatGrant) -> dict[str, Any]:
        return {
            "id": g.id,
            "owner": self.simple_user(self.users[g.user_id]),
            "repository_selection": "all",
            "repositories_url": f"{self.base_url}/organizations/{self.org_id}/personal-access-tokens/{g.id}/repositories",
            "permissions": {"organization": {}, "repository": {"contents": "write"}, "other": {}},
            "access_granted_at": iso(g.granted_at),
            "token_id": g.token_id,
            "token_name": g.token_name,
            "token_expired": g.expired,
            "token_expires_at": iso(g.expires_at),
            "token_last_used_at": iso(g.last_used_at),
        }

    def repository(self, repo: FakeRepo) -> dict[str, Any]:
        api, org = self.base_url, self.org
        full = f"{org}/{repo.name}"
        base = f"{api}/repos/{full}"
        urls = {
            "archive_url": f"{base}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{base}/assignees{{/user}}",
            "blobs_url": f"{base}/git/blobs{{/sha}}",
            "branches_url": f"{base}/branches{{/branch}}",
            "collaborators_url": f"{base}/collaborators{{/collaborator}}",
            "comments_url": f"{base}/comments{{/number}}",
            "commits_url": f"{base}/commits{{/sha}}",
            "compare_url": f"{base}/compare/{{base}}...{{head}}",
            "contents_url": f"{base}/contents/{{+path}}",
            "contributors_url": f"{base}/contributors",
            "deployments_url": f"{base}/deployments",
            "downloads_url": f"{base}/downloads",
            "events_url": f"{base}/events",
            "forks_url": f"{base}/forks",
            "git_commits_url": f"{base}/git/commits{{/sha}}",
            "git_refs_url": f"{base}/git/refs{{/sha}}",
            "git_tags_url": f"{base}/git/tags{{/sha}}",
            "issue_comment_url": f"{base}/issues/comments{{/number}}",
            "issue_events_url": f"{base}/issues/events{{/number}}",
            "issues_url": f"{base}/issues{{/number}}",
            "keys_url": f"{base}/keys{{/key_id}}",
            "labels_url": f"{base}/labels{{/name}}",
            "languages_url": f"{base}/languages",
            "merges_url": f"{base}/merges",
            "milestones_url": f"{base}/milestones{{/number}}",
            "notifications_url": f"{base}/notifications{{?since,all,participating}}",
            "pulls_url": f"{base}/pulls{{/number}}",
            "releases_url": f"{base}/releases{{/id}}",
            "stargazers_url": f"{base}/stargazers",
            "statuses_url": f"{base}/statuses/{{sha}}",
            "subscribers_url": f"{base}/subscribers",
            "subscription_url": f"{base}/subscription",
            "tags_url": f"{base}/tags",
            "teams_url": f"{base}/teams",
            "trees_url": f"{base}/git/trees{{/sha}}",
            "hooks_url": f"{base}/hooks",
        }
        org_user = FakeUser(self.org_id, org, type="Organization")
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": full,
            "owner": self.simple_user(org_user),
            "private": repo.private,
            "html_url": f"https://github.example/{full}",
            "description": None,
            "fork": False,
            "url": base,
            **urls,
        }

    def deploy_key(self, repo: FakeRepo, key: FakeDeployKey) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": key.id,
            "key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{key.id:012d}",
            "url": f"{self.base_url}/repos/{self.org}/{repo.name}/keys/{key.id}",
            "title": key.title,
            "verified": True,
            "created_at": iso(key.created_at),
            "read_only": key.read_only,
            "added_by": key.added_by,
            "last_used": iso(key.last_used),
            "enabled": True,
        }
        return out

    def audit_event(self, e: FakeAuditEvent) -> dict[str, Any]:
        actor = self.users.get(e.actor_id)
        ms = int(e.at.timestamp() * 1000)
        out: dict[str, Any] = {
            "@timestamp": ms,
            "_document_id": f"doc-{e.actor_id}-{ms}",
            "action": e.action,
            "actor": actor.login if actor else None,
            "actor_id": e.actor_id,
            "created_at": ms,
            "org": self.org,
            "org_id": self.org_id,
        }
        if e.repo:
            out["repo"] = f"{self.org}/{e.repo}"
        return out
