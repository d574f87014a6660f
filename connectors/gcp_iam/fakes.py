"""An in-memory Google Cloud and two local servers that speak its APIs, for tests and the demo.

- :class:`GcpFakeState`: organizations, folders, projects, their IAM policies (with etags),
  service accounts (each with a ``uniqueId`` never given before, so one deleted and
  recreated under the same email gets a new one, as in Google),
  keys (user- and system-managed) and last-authentication activity, plus knobs to inject
  failures (per-project errors, a concurrent policy change before a write, a change just
  before an IAM Admin call, a disabled Policy Analyzer) and per-project (per-organization, per-folder) call counters.
- :class:`FakeIamServer`: a gRPC server for ``google.iam.admin.v1.IAM`` built from generic
  handlers and the ``iam_admin_v1`` library's own message classes, so the real
  ``IAMClient`` talks to it unchanged.
- :class:`FakeRestServer`: an HTTP server for the Resource Manager v3 REST calls the
  connector makes (``projects:search``, ``folders``, and ``:getIamPolicy`` /
  ``:setIamPolicy`` on projects, organizations and folders) and the Policy Analyzer
  ``activities:query``.

Both bind to 127.0.0.1 on a port the OS picks and are stopped by ``stop()``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_HTTP_STATUS = {
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 400,
    "INTERNAL": 500,
}


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeKey:
    name: str
    key_id: str
    created: datetime
    expires: datetime | None = None
    disabled: bool = False
    system_managed: bool = False
    last_auth: datetime | None = None


@dataclass
class FakeServiceAccount:
    project: str
    email: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    keys: dict[str, FakeKey] = field(default_factory=dict)
    last_auth: datetime | None = None

    @property
    def name(self) -> str:
        return f"projects/{self.project}/serviceAccounts/{self.email}"


@dataclass(kw_only=True)
class FakePolicyHolder:
    """A resource with an IAM policy: a project, a folder or an organization."""

    # Each binding: {"role": str, "members": [str], "condition": {title, description, expression}?}
    bindings: list[dict[str, Any]] = field(default_factory=list)
    version: int = 1
    revision: int = 1

    @property
    def policy_key(self) -> str:
        """The key of this resource in call counters, failures and hooks."""
        raise NotImplementedError

    @property
    def etag(self) -> bytes:
        return f"etag-{self.policy_key}-{self.revision}".encode()

    def policy_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "etag": base64.b64encode(self.etag).decode("ascii"),
            "bindings": [dict(b, members=list(b["members"])) for b in self.bindings],
        }


@dataclass
class FakeProject(FakePolicyHolder):
    project_id: str
    number: str
    parent: str
    state: str = "ACTIVE"

    @property
    def policy_key(self) -> str:
        return self.project_id


@dataclass
class FakeFolder(FakePolicyHolder):
    name: str
    parent: str
    state: str = "ACTIVE"

    @property
    def policy_key(self) -> str:
        return self.name


@dataclass
class FakeOrganization(FakePolicyHolder):
    name: str

    @property
    def policy_key(self) -> str:
        return self.name


class GcpFakeState:
    """The fake cloud. Every method takes the lock: both servers call in from their threads."""

    def __init__(self, page_size: int = 100) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, FakeProject] = {}
        self.folders: dict[str, FakeFolder] = {}
        self.organizations: dict[str, FakeOrganization] = {}
        self.service_accounts: dict[str, FakeServiceAccount] = {}
        self.page_size = page_size
        # (api method, project id / "organizations/N" / "folders/F") -> number of calls
        self.calls: Counter[tuple[str, str]] = Counter()
        # project (or organization/folder name) -> status name (PERMISSION_DENIED,
        # RESOURCE_EXHAUSTED, ...) for every call on it
        self.failures: dict[str, str] = {}
        # project / organization / folder -> status name for its getIamPolicy/setIamPolicy only
        self.policy_failures: dict[str, str] = {}
        # project -> (status name, message) for IAM Admin (gRPC) calls only
        self.iam_failures: dict[str, tuple[str, str]] = {}
        # project ("*" for all) -> (HTTP status, message) for Policy Analyzer queries
        self.activity_failures: dict[str, tuple[int, str]] = {}
        # project (or organization/folder name) -> hooks run (one per setIamPolicy call, first in
        # first out) before the etag check
        self.before_set_policy: dict[str, list[Callable[[Any], None]]] = {}
        # IAM Admin method ("iam.DisableServiceAccount", ...) -> hooks run (one per call, first in
        # first out) before the call looks its service account or key up: something that
        # happens between a client's read and its write.
        self.before_iam_call: dict[str, list[Callable[[], None]]] = {}
        # Seconds each REST call takes (simulated network latency) and the most calls seen in flight.
        self.rest_latency = 0.0
        self.rest_in_flight = 0
        self.rest_max_in_flight = 0
        self._next_number = 100000000000
        self._next_id = 1

    # --- seeding ---------------------------------------------------------------------------

    def add_project(
        self, project_id: str, parent: str = "organizations/1", state: str = "ACTIVE"
    ) -> FakeProject:
        with self.lock:
            self._next_number += 1
            project = FakeProject(project_id, str(self._next_number), parent, state)
            self.projects[project_id] = project
            self._ensure_organization(parent)
            return project

    def add_folder(self, name: str, parent: str, state: str = "ACTIVE") -> FakeFolder:
        with self.lock:
            folder = FakeFolder(name, parent, state)
            self.folders[name] = folder
            self._ensure_organization(parent)
            return folder

    def add_organization(self, name: str) -> FakeOrganization:
        if not name.startswith("organizations/"):
            raise ValueError(f"not an organization name: {name!r}")
        with self.lock:
            return self.organizations.setdefault(name, FakeOrganization(name))

    def _ensure_organization(self, parent: str) -> FakeOrganization | None:
        # An organization exists as soon as something lives directly under it.
        if not parent.startswith("organizations/"):
            return None
        return self.add_organization(parent)

    def policy_holder(self, resource: str) -> FakePolicyHolder:
        """A project (by id), ``organizations/N`` or ``folders/F``; KeyError if unknown."""
        with self.lock:
            if resource.startswith("organizations/"):
                return self.organizations[resource]
            if resource.startswith("folders/"):
                return self.folders[resource]
            return self.projects[resource]

    def bind(self, resource: str, role: str, member: str, condition: dict[str, str] | None = None) -> None:
        """Grant ``role`` to ``member`` on a project id, ``organizations/N`` or ``folders/F``."""
        with self.lock:
            p = self.policy_holder(resource)
            for b in p.bindings:
                if b["role"] == role and b.get("condition") == condition:
                    if member not in b["members"]:
                        b["members"].append(member)
                    break
            else:
                binding: dict[str, Any] = {"role": role, "members": [member]}
                if condition:
                    binding["condition"] = dict(condition)
                    p.version = 3
                p.bindings.append(binding)
            p.revision += 1

    def members(self, resource: str, role: str) -> list[str]:
        with self.lock:
            return [
                m for b in self.policy_holder(resource).bindings if b["role"] == role for m in b["members"]
            ]

    def add_service_account(
        self,
        project: str,
        account_id: str,
        display_name: str = "",
        description: str = "",
        disabled: bool = False,
        last_auth: datetime | None = None,
    ) -> FakeServiceAccount:
        with self.lock:
            email = f"{account_id}@{project}.iam.gserviceaccount.com"
            if email in self.service_accounts:
                raise ValueError(f"service account {email} already exists")
            # Like Google: every account gets a uniqueId never given before, also one recreated
            # under the email of a deleted account.
            self._next_id += 1
            sa = FakeServiceAccount(
                project=project,
                email=email,
                unique_id=str(10**20 + self._next_id),
                display_name=display_name,
                description=description,
                disabled=disabled,
                last_auth=last_auth,
            )
            self.service_accounts[email] = sa
            # Google creates system-managed keys itself; the connector must filter them out.
            self.add_key(email, datetime(2020, 1, 1, tzinfo=UTC), system_managed=True)
            return sa

    def delete_service_account(self, email: str) -> FakeServiceAccount:
        """Delete a service account and its keys; its email can then be used again."""
        with self.lock:
            return self.service_accounts.pop(email.lower())

    def add_key(
        self,
        email: str,
        created: datetime,
        disabled: bool = False,
        expires: datetime | None = None,
        last_auth: datetime | None = None,
        system_managed: bool = False,
    ) -> FakeKey:
        with self.lock:
            sa = self.service_accounts[email]
            self._next_id += 1
            key_id = f"{self._next_id:040x}"
            key = FakeKey(
                name=f"{sa.name}/keys/{key_id}",
                key_id=key_id,
                created=created,
                expires=expires,
                disabled=disabled,
                system_managed=system_managed,
                last_auth=last_auth,
            )
            sa.keys[key_id] = key
            return key

    # --- lookups used by the servers -----------------------------------------------------

    def count(self, method: str, project: str) -> None:
        with self.lock:
            self.calls[(method, project)] += 1

    def calls_for(self, project: str) -> int:
        with self.lock:
            return sum(n for (_m, p), n in self.calls.items() if p == project)

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def project(self, ref: str) -> FakeProject | None:
        """A project by id or number."""
        with self.lock:
            if ref in self.projects:
                return self.projects[ref]
            return next((p for p in self.projects.values() if p.number == ref), None)

    def find_service_account(self, project: str, ref: str) -> FakeServiceAccount | None:
        with self.lock:
            sa = self.service_accounts.get(ref.lower())
            if sa is None:
                sa = next((s for s in self.service_accounts.values() if s.unique_id == ref), None)
            if sa is None or project not in ("-", sa.project):
                return None
            return sa

    def find_key(self, name: str) -> tuple[FakeServiceAccount, FakeKey] | None:
        m = re.match(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$", name)
        if not m:
            return None
        with self.lock:
            sa = self.find_service_account(m.group(1), m.group(2))
            if sa is None or m.group(3) not in sa.keys:
                return None
            return sa, sa.keys[m.group(3)]


# --- gRPC: google.iam.admin.v1.IAM -------------------------------------------------------


def _sa_project_of(name: str) -> tuple[str, str]:
    """("P", "EMAIL") from projects/P/serviceAccounts/EMAIL[/keys/K]."""
    parts = name.split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "serviceAccounts":
        return parts[1], parts[3]
    return "", ""


class FakeIamServer:
    """``google.iam.admin.v1.IAM`` over plaintext gRPC on 127.0.0.1, backed by a :class:`GcpFakeState`."""

    def __init__(self, state: GcpFakeState, max_workers: int = 16) -> None:
        self.state = state
        self.max_workers = max_workers
        self._server: Any = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        import grpc
        from google.cloud.iam_admin_v1 import types as t
        from google.protobuf import empty_pb2

        def handler(fn: Callable[[Any, Any], Any], req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.deserialize, response_serializer=resp.serialize
            )

        def empty_handler(fn: Callable[[Any, Any], Any], req: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=req.deserialize,
                response_serializer=empty_pb2.Empty.SerializeToString,
            )

        methods = {
            "ListServiceAccounts": handler(
                self._list_service_accounts, t.ListServiceAccountsRequest, t.ListServiceAccountsResponse
            ),
            "GetServiceAccount": handler(
                self._get_service_account, t.GetServiceAccountRequest, t.ServiceAccount
            ),
            "ListServiceAccountKeys": handler(
                self._list_keys, t.ListServiceAccountKeysRequest, t.ListServiceAccountKeysResponse
            ),
            "GetServiceAccountKey": handler(
                self._get_key, t.GetServiceAccountKeyRequest, t.ServiceAccountKey
            ),
            "DisableServiceAccountKey": empty_handler(self._disable_key, t.DisableServiceAccountKeyRequest),
            "EnableServiceAccountKey": empty_handler(self._enable_key, t.EnableServiceAccountKeyRequest),
            "DeleteServiceAccountKey": empty_handler(self._delete_key, t.DeleteServiceAccountKeyRequest),
            "DisableServiceAccount": empty_handler(self._disable_sa, t.DisableServiceAccountRequest),
            "EnableServiceAccount": empty_handler(self._enable_sa, t.EnableServiceAccountRequest),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("google.iam.admin.v1.IAM", methods),)
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    # --- helpers -------------------------------------------------------------------------

    def _enter(self, method: str, project: str, context: Any) -> None:
        import grpc

        if project == "-":
            # "-" means "find the project from the account": count and fail on the real one.
            return
        self.state.count(method, project)
        failure = self.state.failures.get(project)
        if failure:
            context.abort(
                getattr(grpc.StatusCode, failure), f"{failure}: injected failure on project {project}"
            )
        iam_failure = self.state.iam_failures.get(project)
        if iam_failure:
            context.abort(getattr(grpc.StatusCode, iam_failure[0]), iam_failure[1])

    def _run_hooks(self, method: str) -> None:
        with self.state.lock:
            hooks = self.state.before_iam_call.get(method)
            hook = hooks.pop(0) if hooks else None
        if hook is not None:
            hook()

    def _sa_or_abort(self, method: str, name: str, context: Any) -> FakeServiceAccount:
        import grpc

        project, ref = _sa_project_of(name)
        self._enter(method, project, context)
        self._run_hooks(method)
        sa = self.state.find_service_account(project, ref)
        if sa is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Service account {ref} does not exist.")
        assert sa is not None
        if project == "-":
            self._enter(method, sa.project, context)
        return sa

    def _key_or_abort(self, method: str, name: str, context: Any) -> tuple[FakeServiceAccount, FakeKey]:
        import grpc

        project, _ref = _sa_project_of(name)
        self._enter(method, project, context)
        self._run_hooks(method)
        found = self.state.find_key(name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Service account key {name} does not exist.")
        assert found is not None
        if project == "-":
            self._enter(method, found[0].project, context)
        return found

    @staticmethod
    def _sa_message(sa: FakeServiceAccount) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        return t.ServiceAccount(
            name=sa.name,
            project_id=sa.project,
            unique_id=sa.unique_id,
            email=sa.email,
            display_name=sa.display_name,
            description=sa.description,
            disabled=sa.disabled,
            oauth2_client_id=sa.unique_id,
        )

    @staticmethod
    def _key_message(key: FakeKey) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        kt = t.ListServiceAccountKeysRequest.KeyType
        return t.ServiceAccountKey(
            name=key.name,
            valid_after_time=key.created,
            valid_before_time=key.expires or datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            key_type=kt.SYSTEM_MANAGED if key.system_managed else kt.USER_MANAGED,
            disabled=key.disabled,
            key_algorithm=t.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
        )

    # --- methods -------------------------------------------------------------------------

    def _list_service_accounts(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud.iam_admin_v1 import types as t

        project = request.name.removeprefix("projects/")
        self._enter("iam.ListServiceAccounts", project, context)
        with self.state.lock:
            if project not in self.state.projects:
                context.abort(grpc.StatusCode.NOT_FOUND, f"project {project} not found")
            accounts = sorted(
                (sa for sa in self.state.service_accounts.values() if sa.project == project),
                key=lambda s: s.email,
            )
            size = min(request.page_size or 100, self.state.page_size)
            start = int(request.page_token or 0)
            page = accounts[start : start + size]
            token = str(start + size) if start + size < len(accounts) else ""
            return t.ListServiceAccountsResponse(
                accounts=[self._sa_message(sa) for sa in page], next_page_token=token
            )

    def _get_service_account(self, request: Any, context: Any) -> Any:
        sa = self._sa_or_abort("iam.GetServiceAccount", request.name, context)
        with self.state.lock:
            return self._sa_message(sa)

    def _list_keys(self, request: Any, context: Any) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        sa = self._sa_or_abort("iam.ListServiceAccountKeys", request.name, context)
        kt = t.ListServiceAccountKeysRequest.KeyType
        wanted = set(request.key_types) or {kt.USER_MANAGED, kt.SYSTEM_MANAGED}
        with self.state.lock:
            keys = [
                self._key_message(k)
                for k in sa.keys.values()
                if (kt.SYSTEM_MANAGED if k.system_managed else kt.USER_MANAGED) in wanted
            ]
        return t.ListServiceAccountKeysResponse(keys=keys)

    def _get_key(self, request: Any, context: Any) -> Any:
        _sa, key = self._key_or_abort("iam.GetServiceAccountKey", request.name, context)
        with self.state.lock:
            return self._key_message(key)

    def _set_key_disabled(self, method: str, request: Any, context: Any, disabled: bool) -> Any:
        from google.protobuf import empty_pb2

        _sa, key = self._key_or_abort(method, request.name, context)
        with self.state.lock:
            key.disabled = disabled
        return empty_pb2.Empty()

    def _disable_key(self, request: Any, context: Any) -> Any:
        return self._set_key_disabled("iam.DisableServiceAccountKey", request, context, True)

    def _enable_key(self, request: Any, context: Any) -> Any:
        return self._set_key_disabled("iam.EnableServiceAccountKey", request, context, False)

    def _delete_key(self, request: Any, context: Any) -> Any:
        from google.protobuf import empty_pb2

        sa, key = self._key_or_abort("iam.DeleteServiceAccountKey", request.name, context)
        with self.state.lock:
            sa.keys.pop(key.key_id, None)
        return empty_pb2.Empty()

    def _set_sa_disabled(self, method: str, request: Any, context: Any, disabled: bool) -> Any:
        from google.protobuf import empty_pb2

        sa = self._sa_or_abort(method, request.name, context)
        with self.state.lock:
            sa.disabled = disabled
        return empty_pb2.Empty()

    def _disable_sa(self, request: Any, context: Any) -> Any:
        return self._set_sa_disabled("iam.DisableServiceAccount", request, context, True)

    def _enable_sa(self, request: Any, context: Any) -> Any:
        return self._set_sa_disabled("iam.EnableServiceAccount", request, context, False)


# --- HTTP: Resource Manager v3 and Policy Analyzer --------------------------------------

_POLICY_CALL = re.compile(r"^/v3/(projects|organizations|folders)/([^/:]+):(getIamPolicy|setIamPolicy)$")
_ACTIVITY = re.compile(r"^/v1/projects/([^/]+)/locations/global/activityTypes/([^/]+)/activities:query$")


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FakeRestServer:
    """Resource Manager v3 REST and Policy Analyzer on 127.0.0.1, backed by a :class:`GcpFakeState`."""

    def __init__(self, state: GcpFakeState) -> None:
        self.state = state
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive: the clients reuse connections, as they would against Google.
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK add ~40 ms to every keep-alive request.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                    status, reply = fake.route(method, self.path, body)
                except _ApiError as exc:
                    status = exc.status
                    reply = {"error": {"code": exc.status, "message": exc.message, "status": exc.code}}
                self._reply(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name="fake-gcp-rest", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- routing -------------------------------------------------------------------------

    def _enter(self, method: str, project: str) -> None:
        self.state.count(method, project)
        failure = self.state.failures.get(project)
        if failure:
            raise _ApiError(_HTTP_STATUS.get(failure, 500), failure, f"injected failure on project {project}")

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.state.lock:
            self.state.rest_in_flight += 1
            self.state.rest_max_in_flight = max(self.state.rest_max_in_flight, self.state.rest_in_flight)
        try:
            if self.state.rest_latency:
                time.sleep(self.state.rest_latency)
            return self._route(method, path, body)
        finally:
            with self.state.lock:
                self.state.rest_in_flight -= 1

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
        raise _ApiError(404, "NOT_FOUND", f"no such method: {method} {route}")

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
            self.state.count("rm.SearchProjects", parent or "*")
            if parent and parent in self.state.failures:
                raise _ApiError(403, "PERMISSION_DENIED", f"caller cannot search under {parent}")
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
            self.state.count("rm.ListFolders", parent)
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
            raise _ApiError(403, "PERMISSION_DENIED", f"project {ref} not found or permission denied")
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
            raise _ApiError(403, "PERMISSION_DENIED", f"{name} not found or permission denied")
        return found

    def _enter_policy(self, method: str, holder: FakePolicyHolder) -> None:
        self._enter(method, holder.policy_key)
        failure = self.state.policy_failures.get(holder.policy_key)
        if failure:
            raise _ApiError(
                _HTTP_STATUS.get(failure, 500), failure, f"injected policy failure on {holder.policy_key}"
            )

    def _get_policy(self, collection: str, ref: str) -> dict[str, Any]:
        with self.state.lock:
            holder = self._holder_or_403(collection, ref)
            self._enter_policy("rm.GetIamPolicy", holder)
            return holder.policy_json()

    def _set_policy(self, collection: str, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            project = self._holder_or_403(collection, ref)
            self._enter_policy("rm.SetIamPolicy", project)
            hooks = self.state.before_set_policy.get(project.policy_key)
            if hooks:
                # A concurrent writer got in between our client's read and its write.
                hooks.pop(0)(project)
                project.revision += 1
            policy = body.get("policy") or {}
            sent = policy.get("etag")
            if sent and base64.b64decode(sent) != project.etag:
                raise _ApiError(
                    409,
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole read-modify-write "
                    "with exponential backoff.",
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
                raise _ApiError(400, "INVALID_ARGUMENT", "conditional bindings need policy version 3")
            project.bindings = bindings
            project.version = int(policy.get("version") or 1)
            project.revision += 1
            return project.policy_json()

    def _activities(self, ref: str, activity_type: str, query: dict[str, str]) -> dict[str, Any]:
        with self.state.lock:
            project = self._project_or_404(ref)
            self.state.count(f"pa.{activity_type}", project.project_id)
            failure = self.state.activity_failures.get(
                project.project_id
            ) or self.state.activity_failures.get("*")
            if failure:
                raise _ApiError(failure[0], "PERMISSION_DENIED", failure[1])
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
                                "lastAuthenticatedTime": _rfc3339(sa.last_auth),
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
                                    "lastAuthenticatedTime": _rfc3339(key.last_auth),
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


class FakeGcp:
    """Both fake servers over one state: ``start()`` them, point a source at ``iam_endpoint``
    and ``rest_url`` (Resource Manager and Policy Analyzer), ``stop()`` them."""

    def __init__(self, state: GcpFakeState | None = None) -> None:
        self.state = state or GcpFakeState()
        self.iam = FakeIamServer(self.state)
        self.rest = FakeRestServer(self.state)

    def start(self) -> FakeGcp:
        self.iam.start()
        try:
            self.rest.start()
        except BaseException:
            self.iam.stop()
            raise
        return self

    @property
    def iam_endpoint(self) -> str:
        return self.iam.endpoint

    @property
    def rest_url(self) -> str:
        return self.rest.url

    def source_table(self, name: str, **extra: Any) -> dict[str, Any]:
        """A ``[[sources]]`` table pointing at these servers."""
        table: dict[str, Any] = {
            "name": name,
            "type": "gcp_iam",
            "iam_endpoint": self.iam_endpoint,
            "resource_manager_endpoint": self.rest_url,
            "policy_analyzer_endpoint": self.rest_url,
        }
        table.update(extra)
        return table

    def stop(self) -> None:
        self.rest.stop()
        self.iam.stop()
