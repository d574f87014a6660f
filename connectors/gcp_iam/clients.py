"""The API clients of the Google Cloud IAM connector: injected ones (tests) or built from settings.

Clients are built on first use (never at import time) from the source's options:
``iam_endpoint`` (plaintext gRPC ``host:port``) and ``resource_manager_endpoint`` /
``policy_analyzer_endpoint`` (HTTP URLs) point at private or local endpoints; without
them the libraries use Application Default Credentials against Google's endpoints.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

from connectors.gcp_iam.settings import GcpSettings
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

POLICY_ANALYZER_URL = "https://policyanalyzer.googleapis.com"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class ActivityQueryError(Exception):
    """The Policy Analyzer activity query failed (API disabled, permission missing, ...)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class ActivityClient:
    """Policy Analyzer ``activities:query`` over REST.

    API call: ``GET /v1/projects/{project}/locations/global/activityTypes/{type}/activities:query``
    (paged). Permissions: ``policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query``
    and ``policyanalyzer.serviceAccountLastAuthenticationActivities.query``. No client library
    for this API ships with the project's dependencies, so it goes through a ``requests``
    session (an ``AuthorizedSession`` with Application Default Credentials in production).
    """

    def __init__(self, session: Any, base_url: str, timeout: float = 30.0) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def query(self, project: str, activity_type: str) -> list[dict[str, Any]]:
        url = (
            f"{self.base_url}/v1/projects/{project}/locations/global/activityTypes/"
            f"{activity_type}/activities:query"
        )
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"pageSize": "1000"}
            if token:
                params["pageToken"] = token
            resp = self.session.get(url, params=params, timeout=self.timeout)
            if resp.status_code != 200:
                message = resp.text[:300]
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    message = resp.json()["error"]["message"]
                raise ActivityQueryError(resp.status_code, message)
            body = resp.json()
            found.extend(body.get("activities") or [])
            token = body.get("nextPageToken") or ""
            if not token:
                return found

    def close(self) -> None:
        self.session.close()


def api_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this call failed" (as opposed to a bug in this code)."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, GoogleAuthError, requests.RequestException)


def describe_error(exc: BaseException) -> str:
    """A one-line message for a failed call (no secrets ever travel in these)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class GcpClients:
    """The API clients a ``gcp_iam`` source and revoker use.

    - ``iam``: ``google.cloud.iam_admin_v1.IAMClient`` (gRPC)
    - ``projects``: ``google.cloud.resourcemanager_v3.ProjectsClient``
    - ``folders``: ``google.cloud.resourcemanager_v3.FoldersClient`` (folder traversal and
      folder IAM policies)
    - ``organizations``: ``google.cloud.resourcemanager_v3.OrganizationsClient`` (the
      organization IAM policy; only needed with ``organization``)
    - ``activity``: :class:`ActivityClient` (only with ``key_last_auth``)
    """

    iam: Any
    projects: Any
    folders: Any = None
    activity: ActivityClient | None = None
    organizations: Any = None

    def close(self) -> None:
        for client in (self.iam, self.projects, self.folders, self.organizations):
            transport = getattr(client, "transport", None)
            if transport is not None:
                transport.close()
        if self.activity is not None:
            self.activity.close()


class LazyClients:
    """The injected clients, or real ones built from the settings on first use: one build
    however many threads ask at once. ``close`` closes only clients that exist."""

    def __init__(self, config: GcpSettings, injected: GcpClients | None = None) -> None:
        self._config = config
        self._clients = injected
        self._lock = threading.Lock()

    def get(self) -> GcpClients:
        with self._lock:
            if self._clients is None:
                self._clients = build_clients(self._config)
            return self._clients

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()


def build_clients(config: GcpSettings) -> GcpClients:
    """Real clients for ``config``: local endpoints when given, otherwise ADC."""
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import iam_admin_v1, resourcemanager_v3
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    if config.iam_endpoint:
        # A private/local endpoint speaks plaintext gRPC: no TLS, no credentials.
        channel = grpc.insecure_channel(config.iam_endpoint)
        iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
    else:
        iam = iam_admin_v1.IAMClient()
    if config.resource_manager_endpoint:
        opts = {"api_endpoint": config.resource_manager_endpoint}
        anon = AnonymousCredentials()  # type: ignore[no-untyped-call]
        projects = resourcemanager_v3.ProjectsClient(transport="rest", credentials=anon, client_options=opts)
        folders = resourcemanager_v3.FoldersClient(transport="rest", credentials=anon, client_options=opts)
        organizations = resourcemanager_v3.OrganizationsClient(
            transport="rest", credentials=anon, client_options=opts
        )
    else:
        projects = resourcemanager_v3.ProjectsClient()
        folders = resourcemanager_v3.FoldersClient()
        organizations = resourcemanager_v3.OrganizationsClient()
    activity = None
    if config.key_last_auth:
        activity = build_activity_client(config)
    return GcpClients(
        iam=iam, projects=projects, folders=folders, activity=activity, organizations=organizations
    )


def build_activity_client(config: GcpSettings) -> ActivityClient:
    if config.policy_analyzer_endpoint:
        import requests

        return ActivityClient(requests.Session(), config.policy_analyzer_endpoint, config.timeout)
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    return ActivityClient(session, POLICY_ANALYZER_URL, config.timeout)


def bounded_retry(timeout: float) -> Any:
    """Retry transient errors (UNAVAILABLE, DEADLINE_EXCEEDED) within ``timeout`` seconds in all.

    The libraries' default retries run for up to 60 s per call, whatever ``timeout`` says;
    one slow project must not hold a whole scan that long.
    """
    from google.api_core import exceptions, retry

    return retry.Retry(
        initial=0.1,
        maximum=min(5.0, timeout),
        multiplier=1.3,
        predicate=retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded),
        timeout=timeout,
    )


def injected_clients(options: SourceOptions, ctx: SourceContext) -> GcpClients | None:
    """``ctx.clients[<source name>]`` when tests injected clients; otherwise None (built on first use)."""
    client = ctx.clients.get(options.string("name"))
    if client is not None and not isinstance(client, GcpClients):
        raise TypeError(
            f"injected client for {options.string('name')} must be a GcpClients, got {type(client)}"
        )
    return client
