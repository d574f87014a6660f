"""An HTTP server on 127.0.0.1 answering the GitHub REST and GraphQL calls the connector makes,
backed by a :class:`GitHubFakeState`: pages with ``Link`` headers (``per_page``, default 30, at
most 100, as GitHub), rate-limit headers on every answer, GitHub's error bodies.

``route`` is the one entry point (tests wrap it to count calls and inject failures).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

from connectors._shared.fake_http import Answer, LocalJsonServer
from connectors.github.demo_fake.state import FakeApiError, GitHubFakeState, iso

Reply = tuple[int, dict[str, str], Any]

# Installation tokens start with ghs_; the fake hands them out and only they may list fine-grained
# token grants (as on GitHub, where only GitHub Apps can).
APP_TOKEN_PREFIX = "ghs_"


class FakeGitHubServer(LocalJsonServer):
    """GitHub's REST + GraphQL API for one organisation, on 127.0.0.1 (an OS-chosen port)."""

    thread_name = "fake-github"
    content_type = "application/json; charset=utf-8"

    def __init__(self, state: GitHubFakeState) -> None:
        super().__init__()
        self.state = state
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = []
        org = re.escape(state.org)
        add = self._add
        add("GET", rf"/orgs/{org}/members", self.list_members)
        add("GET", rf"/orgs/{org}/outside_collaborators", self.list_outside)
        add("GET", rf"/orgs/{org}/invitations", self.list_invitations)
        add("DELETE", rf"/orgs/{org}/invitations/(\d+)", self.cancel_invitation)
        add("GET", rf"/orgs/{org}/credential-authorizations", self.list_authorizations)
        add("DELETE", rf"/orgs/{org}/credential-authorizations/(\d+)", self.remove_authorization)
        add("GET", rf"/orgs/{org}/personal-access-tokens", self.list_grants)
        add("POST", rf"/orgs/{org}/personal-access-tokens/(\d+)", self.revoke_grant)
        add("GET", rf"/orgs/{org}/memberships/([^/]+)", self.get_membership)
        add("DELETE", rf"/orgs/{org}/memberships/([^/]+)", self.remove_membership)
        add("DELETE", rf"/orgs/{org}/outside_collaborators/([^/]+)", self.remove_outside)
        add("GET", rf"/orgs/{org}/repos", self.list_repos)
        add("GET", rf"/orgs/{org}/audit-log", self.audit_log)
        add("GET", rf"/repos/{org}/([^/]+)/keys", self.list_keys)
        add("GET", rf"/repos/{org}/([^/]+)/collaborators", self.list_repo_admins)
        add("GET", r"/users/([^/]+)", self.get_user)
        add("POST", r"/graphql", self.graphql)
        add("POST", r"/app/installations/(\d+)/access_tokens", self.installation_token)

    def _add(self, method: str, pattern: str, handler: Callable[..., Reply]) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    # --- HTTP ------------------------------------------------------------------------------

    def start(self) -> Self:
        self.serve()
        self.state.base_url = self.url
        return self

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        parts = urlsplit(path)
        try:
            status, extra, reply = self.route(method, parts.path, parse_qs(parts.query), body, headers)
        except FakeApiError as exc:
            status, extra, reply = exc.status, {}, {"message": exc.message, "documentation_url": ""}
        return status, {**self.rate_headers(), **extra}, reply

    def rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: dict[str, str]
    ) -> Reply:
        for m, pattern, handler in self._routes:
            match = pattern.match(path)
            if m == method and match:
                with self.state.lock:
                    return handler(*match.groups(), query=query, body=body, headers=headers, path=path)
        raise FakeApiError(404, "Not Found")

    # --- helpers ---------------------------------------------------------------------------

    def page(self, items: list[Any], query: dict[str, list[str]], path: str) -> Reply:
        """One page of ``items`` with GitHub's ``Link`` header (next / last)."""
        per_page = min(int((query.get("per_page") or ["30"])[0]), 100)
        page = max(int((query.get("page") or ["1"])[0]), 1)
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        last = max((len(items) + per_page - 1) // per_page, 1)
        headers: dict[str, str] = {}
        if page < last:

            def link(n: int) -> str:
                q = {k: v for k, v in query.items() if k != "page"}
                q["page"] = [str(n)]
                return f"{self.url}{path}?{urlencode(q, doseq=True)}"

            headers["Link"] = f'<{link(page + 1)}>; rel="next", <{link(last)}>; rel="last"'
        return 200, headers, chunk

    def user(self, login: str) -> Any:
        user = self.state.user_by_login(login)
        if user is None:
            raise FakeApiError(404, "Not Found")
        return user

    # --- REST ------------------------------------------------------------------------------

    def list_members(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        role = (query.get("role") or ["all"])[0]
        ids = sorted(uid for uid, r in s.members.items() if role == "all" or r == role)
        return self.page([s.simple_user(s.users[i]) for i in ids], query, path)

    def list_outside(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        return self.page([s.simple_user(s.users[i]) for i in sorted(s.outside)], query, path)

    def list_invitations(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        return self.page([s.invitation(i) for _k, i in sorted(s.invitations.items())], query, path)

    def cancel_invitation(self, inv_id: str, **_: Any) -> Reply:
        if self.state.invitations.pop(int(inv_id), None) is None:
            raise FakeApiError(404, "Not Found")
        return 204, {}, None

    def _saml(self) -> None:
        if not self.state.saml:
            raise FakeApiError(404, "Not Found")

    def list_authorizations(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        self._saml()
        s = self.state
        login = query["login"][0] if query.get("login") else None
        items = [
            s.credential_authorization(a)
            for _k, a in sorted(s.authorizations.items())
            if login is None or s.users[a.user_id].login.casefold() == login.casefold()
        ]
        return self.page(items, query, path)

    def remove_authorization(self, cred_id: str, **_: Any) -> Reply:
        self._saml()
        if self.state.authorizations.pop(int(cred_id), None) is None:
            raise FakeApiError(404, "Not Found")
        return 204, {}, None

    def _app_only(self, headers: dict[str, str]) -> None:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not auth.split()[-1:] or not auth.split()[-1].startswith(APP_TOKEN_PREFIX):
            raise FakeApiError(403, "Resource not accessible by personal access token")

    def list_grants(
        self, *, query: dict[str, list[str]], path: str, headers: dict[str, str], **_: Any
    ) -> Reply:
        self._app_only(headers)
        s = self.state
        owners = {o.casefold() for o in (query.get("owner") or []) + (query.get("owner[]") or [])}
        items = [
            s.pat_grant(g)
            for _k, g in sorted(s.grants.items())
            if not owners or s.users[g.user_id].login.casefold() in owners
        ]
        return self.page(items, query, path)

    def revoke_grant(self, pat_id: str, *, body: Any, headers: dict[str, str], **_: Any) -> Reply:
        self._app_only(headers)
        if not isinstance(body, dict) or body.get("action") != "revoke":
            raise FakeApiError(422, "action must be revoke")
        if self.state.grants.pop(int(pat_id), None) is None:
            raise FakeApiError(404, "Not Found")
        return 204, {}, None

    def get_membership(self, login: str, **_: Any) -> Reply:
        user = self.user(login)
        if user.id not in self.state.members:
            raise FakeApiError(404, "Not Found")
        return 200, {}, self.state.membership(user)

    def remove_membership(self, login: str, **_: Any) -> Reply:
        user = self.user(login)
        if self.state.members.pop(user.id, None) is None:
            raise FakeApiError(404, "Not Found")
        # GitHub drops what belonged to the membership with it.
        for k in [k for k, a in self.state.authorizations.items() if a.user_id == user.id]:
            del self.state.authorizations[k]
        for k in [k for k, g in self.state.grants.items() if g.user_id == user.id]:
            del self.state.grants[k]
        return 204, {}, None

    def remove_outside(self, login: str, **_: Any) -> Reply:
        user = self.user(login)
        if user.id not in self.state.outside:
            raise FakeApiError(404, "Not Found")
        self.state.outside.discard(user.id)
        return 204, {}, None

    def list_repos(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        return self.page([s.repository(r) for r in sorted(s.repos.values(), key=lambda r: r.id)], query, path)

    def _repo(self, name: str) -> Any:
        repo = self.state.repos.get(name)
        if repo is None:
            raise FakeApiError(404, "Not Found")
        return repo

    def list_keys(self, name: str, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        repo = self._repo(name)
        return self.page([self.state.deploy_key(repo, k) for k in repo.keys], query, path)

    def list_repo_admins(self, name: str, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        repo = self._repo(name)
        admins = sorted(set(repo.admins) | set(s.owners()))
        return self.page([s.collaborator(s.users[i]) for i in admins if i in s.users], query, path)

    def audit_log(self, *, query: dict[str, list[str]], path: str, **_: Any) -> Reply:
        s = self.state
        phrase = (query.get("phrase") or [""])[0]
        actor = re.search(r"actor:(\S+)", phrase)
        events = [
            e
            for e in s.audit
            if actor is None
            or (e.actor_id in s.users and s.users[e.actor_id].login.casefold() == actor.group(1).casefold())
        ]
        desc = (query.get("order") or ["desc"])[0] != "asc"
        events.sort(key=lambda e: e.at, reverse=desc)
        return self.page([s.audit_event(e) for e in events], query, path)

    def get_user(self, login: str, **_: Any) -> Reply:
        return 200, {}, self.state.public_user(self.user(login))

    def installation_token(self, installation_id: str, **_: Any) -> Reply:
        expires = datetime.now(UTC) + timedelta(hours=1)
        return 201, {}, {"token": f"{APP_TOKEN_PREFIX}fake{installation_id}", "expires_at": iso(expires)}

    # --- GraphQL ---------------------------------------------------------------------------

    def graphql(self, *, body: Any, **_: Any) -> Reply:
        query = str(body.get("query") or "")
        variables = body.get("variables") or {}
        if "samlIdentityProvider" not in query:
            return 200, {}, {"errors": [{"message": "the fake answers the SAML identity query only"}]}
        s = self.state
        if variables.get("org") != s.org:
            return (
                200,
                {},
                {"data": {"organization": None}, "errors": [{"type": "NOT_FOUND", "message": "no such org"}]},
            )
        if not s.saml:
            return 200, {}, {"data": {"organization": {"samlIdentityProvider": None}}}
        ids = sorted(s.name_ids)
        after = variables.get("after")
        start = int(after) if after else 0
        chunk = ids[start : start + 100]
        nodes = [
            {
                "samlIdentity": {"nameId": s.name_ids[i]},
                "user": {"login": s.users[i].login, "databaseId": i} if i in s.users else None,
            }
            for i in chunk
        ]
        more = start + 100 < len(ids)
        page_info = {"hasNextPage": more, "endCursor": str(start + 100) if more else None}
        identities = {"pageInfo": page_info, "nodes": nodes}
        return (
            200,
            {},
            {"data": {"organization": {"samlIdentityProvider": {"externalIdentities": identities}}}},
        )
