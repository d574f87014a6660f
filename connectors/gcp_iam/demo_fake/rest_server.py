"""An HTTP server for the Resource Manager v3 REST calls the connector makes (``projects:search``,
``folders``, and ``:getIamPolicy`` / ``:setIamPolicy`` on projects, organizations and folders) and
the Policy Analyzer ``activities:query``, on 127.0.0.1, backed by a :class:`GcpFakeState`.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from connectors._shared.fake_http import Answer, LocalJsonServer
from connectors.gcp_iam.demo_fake.state import (
    FakeApiError,
    FakePolicyHolder,
    FakeProject,
    GcpFakeState,
    rfc3339,
)

_HTTP_STATUS = {
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 400,
    "INTERNAL": 500,
}

_POLICY_CALL = re.compile(r"^/v3/(projects|organizations|folders)/([^/:]+):(getIamPolicy|setIamPolicy)$")
_ACTIVITY = re.compile(r"^/v1/projects/([^/]+)/locations/global/activityTypes/([^/]+)/activities:query$")


class FakeRestServer(LocalJsonServer):
    """Resource Manager v3 REST and Policy Analyzer on 127.0.0.1, backed by a :class:`GcpFakeState`."""

    thread_name = "fake-gcp-rest"

    def __init__(self, state: GcpFakeState) -> None:
        super().__init__()
        self.state = state

    def start(self) -> str:
        self.serve()
        return self.url

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        try:
            status, reply = self.route(method, path, body)
        except FakeApiError as exc:
            status = exc.http_status or _HTTP_STATUS.get(exc.code, 500)
            reply = {"error": {"code": status, "message": exc.message, "status": exc.code}}
        return status, {}, reply

    # --- routing -------------------------------------------------------------------------

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request: (HTTP status, JSON body); raises :class:`FakeApiError` for an error answer."""
        return self._route(method, path, body)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        route = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "GET" and route == "/v3/projects:search":
            return 200, self._search_projects(query)
        if method == "GET" and route == "/v3/folders":
            return 200, self._list_folders(query)
        m = _POLICY_CALL.match(route)
        if m and method == "POST":
            if m.group(3) == "getIamPolicy":
                return 200, self._get_policy(m.group(1), m.group(2))
            return 200, self._set_policy(m.group(1), m.group(2), body)
        m = _ACTIVITY.match(route)
        if m and method == "GET":
            return 200, self._activities(m.group(1), m.group(2), query)
        raise FakeApiError("NOT_FOUND", f"no such method: {method} {route}", 404)

    def _page(self, items: list[Any], query: dict[str, str]) -> tuple[list[Any], str]:
        size = min(int(query.get("pageSize") or self.state.page_size), self.state.page_size)
        start = int(query.get("pageToken") or 0)
        token = str(start + size) if start + size < len(items) else ""
        return items[start : start + size], token

    def _search_projects(self, query: dict[str, str]) -> dict[str, Any]:
        # Only the filters the connector sends: "parent:X" and "state:Y".
        terms = dict(t.split(":", 1) for t in query.get("query", "").split() if ":" in t)
        with self.state.lock:
            parent = terms.get("parent")
            self.state.on_call("rm.SearchProjects", parent or "*")
            found = [
                p
                for p in sorted(self.state.projects.values(), key=lambda p: p.project_id)
                if (parent is None or p.parent == parent)
                and ("state" not in terms or p.state == terms["state"])
            ]
            page, token = self._page(found, query)
            return {
                "projects": [
                    {
                        "name": f"projects/{p.number}",
                        "projectId": p.project_id,
                        "parent": p.parent,
                        "state": p.state,
                        "displayName": p.project_id,
                    }
                    for p in page
                ],
                "nextPageToken": token,
            }

    def _list_folders(self, query: dict[str, str]) -> dict[str, Any]:
        parent = query.get("parent", "")
        with self.state.lock:
            self.state.on_call("rm.ListFolders", parent)
            found = [
                f
                for f in sorted(self.state.folders.values(), key=lambda f: f.name)
                if f.parent == parent and (f.state == "ACTIVE" or query.get("showDeleted") == "true")
            ]
            page, token = self._page(found, query)
            return {
                "folders": [
                    {"name": f.name, "parent": f.parent, "state": f.state, "displayName": f.name}
                    for f in page
                ],
                "nextPageToken": token,
            }

    def _project_or_404(self, ref: str) -> FakeProject:
        project = self.state.project(ref)
        if project is None:
            raise FakeApiError("PERMISSION_DENIED", f"project {ref} not found or permission denied", 403)
        return project

    def _holder_or_403(self, collection: str, ref: str) -> FakePolicyHolder:
        if collection == "projects":
            return self._project_or_404(ref)
        name = f"{collection}/{ref}"
        found: FakePolicyHolder | None = (
            self.state.organizations.get(name)
            if collection == "organizations"
            else self.state.folders.get(name)
        )
        if found is None:
            raise FakeApiError("PERMISSION_DENIED", f"{name} not found or permission denied", 403)
        return found

    def _get_policy(self, collection: str, ref: str) -> dict[str, Any]:
        with self.state.lock:
            holder = self._holder_or_403(collection, ref)
            self.state.on_call("rm.GetIamPolicy", holder.policy_key)
            return holder.policy_json()

    def _set_policy(self, collection: str, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            project = self._holder_or_403(collection, ref)
            self.state.on_call("rm.SetIamPolicy", project.policy_key)
            # Tests let a concurrent writer in here, between our client's read and its write.
            self.state.before_policy_write(project)
            policy = body.get("policy") or {}
            sent = policy.get("etag")
            if sent and base64.b64decode(sent) != project.etag:
                raise FakeApiError(
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole read-modify-write "
                    "with exponential backoff.",
                    409,
                )
            bindings = []
            for b in policy.get("bindings") or []:
                entry: dict[str, Any] = {"role": b["role"], "members": list(b.get("members") or [])}
                if b.get("condition"):
                    entry["condition"] = {
                        k: b["condition"].get(k, "") for k in ("title", "description", "expression")
                    }
                if entry["members"]:
                    bindings.append(entry)
            if any("condition" in b for b in bindings) and int(policy.get("version") or 1) < 3:
                raise FakeApiError("INVALID_ARGUMENT", "conditional bindings need policy version 3", 400)
            project.bindings = bindings
            project.version = int(policy.get("version") or 1)
            project.revision += 1
            return project.policy_json()

    def _activities(self, ref: str, activity_type: str, query: dict[str, str]) -> dict[str, Any]:
        with self.state.lock:
            project = self._project_or_404(ref)
            self.state.on_call(f"pa.{activity_type}", project.project_id)
            sas = sorted(
                (s for s in self.state.service_accounts.values() if s.project == project.project_id),
                key=lambda s: s.email,
            )
            found: list[dict[str, Any]] = []
            for sa in sas:
                if activity_type == "serviceAccountLastAuthentication" and sa.last_auth:
                    full = f"//iam.googleapis.com/{sa.name}"
                    found.append(
                        {
                            "fullResourceName": full,
                            "activityType": activity_type,
                            "activity": {
                                "lastAuthenticatedTime": rfc3339(sa.last_auth),
                                "serviceAccount": {
                                    "fullResourceName": full,
                                    "projectNumber": project.number,
                                    "serviceAccountId": sa.unique_id,
                                },
                            },
                        }
                    )
                if activity_type == "serviceAccountKeyLastAuthentication":
                    for key in sa.keys.values():
                        if key.last_auth is None:
                            continue
                        full = f"//iam.googleapis.com/{key.name}"
                        found.append(
                            {
                                "fullResourceName": full,
                                "activityType": activity_type,
                                "activity": {
                                    "lastAuthenticatedTime": rfc3339(key.last_auth),
                                    "serviceAccountKey": {
                                        "fullResourceName": full,
                                        "projectNumber": project.number,
                                        "serviceAccountId": sa.unique_id,
                                    },
                                },
                            }
                        )
            page, token = self._page(found, query)
            return {"activities": page, "nextPageToken": token}
