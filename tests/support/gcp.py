"""The local Google Cloud fakes with the tests' controls, and their fixtures.

The connector ships a lean fake for the demo (``connectors.gcp_iam.demo_fake``: a gRPC IAM
Admin server and a REST Resource Manager / Policy Analyzer server over one in-memory state).
Here it gets what only tests need, through the state's hooks: per-resource call counters,
failure injection (per project / organization / folder, per API), hooks that let "someone
else" act between a client's read and its write, and simulated REST latency with an
in-flight gauge. :class:`GcpFakeState` and :class:`FakeGcp` keep the names tests used before.

The servers are started per test (starting both takes a few milliseconds) so that every
test gets a fresh fake cloud it can seed through ``gcp_fake.state``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.gcp_iam import demo_fake
from connectors.gcp_iam.clients import GcpClients, build_clients
from connectors.gcp_iam.demo_fake import FakeApiError, FakePolicyHolder, FakeServiceAccount
from connectors.gcp_iam.settings import parse_settings
from connectors.gcp_iam.translate import binding_credential_id, principal_uid
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind

_POLICY_CALLS = ("rm.GetIamPolicy", "rm.SetIamPolicy")


class GcpFakeState(demo_fake.GcpFakeState):
    """The fake cloud plus the tests' knobs (all keyed by project id, ``organizations/N`` or
    ``folders/F`` unless said otherwise)."""

    def __init__(self, page_size: int = 100) -> None:
        super().__init__(page_size)
        # (api method, resource) -> number of calls
        self.calls: Counter[tuple[str, str]] = Counter()
        # resource -> status name (PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...) for every call on it
        self.failures: dict[str, str] = {}
        # resource -> status name for its getIamPolicy/setIamPolicy only
        self.policy_failures: dict[str, str] = {}
        # project -> (status name, message) for IAM Admin (gRPC) calls only
        self.iam_failures: dict[str, tuple[str, str]] = {}
        # project ("*" for all) -> (HTTP status, message) for Policy Analyzer queries
        self.activity_failures: dict[str, tuple[int, str]] = {}
        # resource -> hooks run (one per setIamPolicy call, first in first out) before the etag check
        self.before_set_policy: dict[str, list[Callable[[Any], None]]] = {}
        # IAM Admin method ("iam.DisableServiceAccount", ...) -> hooks run (one per call, first in
        # first out) before the call looks its service account or key up: something that
        # happens between a client's read and its write.
        self.before_iam_call: dict[str, list[Callable[[], None]]] = {}
        # Seconds each REST call takes (simulated network latency) and the most calls seen in flight.
        self.rest_latency = 0.0
        self.rest_in_flight = 0
        self.rest_max_in_flight = 0

    # --- the lean fake's hooks ----------------------------------------------------------------

    def on_call(self, method: str, resource: str) -> None:
        with self.lock:
            self.calls[(method, resource)] += 1
            if method == "rm.ListFolders":
                return
            failure = self.failures.get(resource)
            if method == "rm.SearchProjects":
                if failure:
                    raise FakeApiError("PERMISSION_DENIED", f"caller cannot search under {resource}", 403)
                return
            if method.startswith("pa."):
                activity = self.activity_failures.get(resource) or self.activity_failures.get("*")
                if activity:
                    raise FakeApiError("PERMISSION_DENIED", activity[1], activity[0])
                return
            iam = method.startswith("iam.")
            if failure:
                where = f"injected failure on project {resource}"
                raise FakeApiError(failure, f"{failure}: {where}" if iam else where)
            if iam and resource in self.iam_failures:
                code, message = self.iam_failures[resource]
                raise FakeApiError(code, message)
            if method in _POLICY_CALLS and resource in self.policy_failures:
                code = self.policy_failures[resource]
                raise FakeApiError(code, f"injected policy failure on {resource}")

    def before_lookup(self, method: str) -> None:
        with self.lock:
            hooks = self.before_iam_call.get(method)
            hook = hooks.pop(0) if hooks else None
        if hook is not None:
            hook()

    def before_policy_write(self, holder: FakePolicyHolder) -> None:
        hooks = self.before_set_policy.get(holder.policy_key)
        if hooks:
            # A concurrent writer got in between our client's read and its write.
            hooks.pop(0)(holder)
            holder.revision += 1

    # --- counters and test-only changes ---------------------------------------------------------

    def calls_for(self, resource: str) -> int:
        with self.lock:
            return sum(n for (_m, r), n in self.calls.items() if r == resource)

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def members(self, resource: str, role: str) -> list[str]:
        with self.lock:
            return [
                m for b in self.policy_holder(resource).bindings if b["role"] == role for m in b["members"]
            ]

    def delete_service_account(self, email: str) -> FakeServiceAccount:
        """Delete a service account and its keys; its email can then be used again."""
        with self.lock:
            return self.service_accounts.pop(email.lower())


class _MeteredRestServer(demo_fake.FakeRestServer):
    """Adds the state's simulated latency to every REST call and records the most in flight."""

    state: GcpFakeState

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.state.lock:
            self.state.rest_in_flight += 1
            self.state.rest_max_in_flight = max(self.state.rest_max_in_flight, self.state.rest_in_flight)
        try:
            if self.state.rest_latency:
                time.sleep(self.state.rest_latency)
            return super().route(method, path, body)
        finally:
            with self.state.lock:
                self.state.rest_in_flight -= 1


class FakeGcp(demo_fake.FakeGcp):
    """Both fake servers over a :class:`GcpFakeState` with the tests' knobs."""

    rest_server_class = _MeteredRestServer
    state: GcpFakeState

    def __init__(self, state: GcpFakeState | None = None) -> None:
        super().__init__(state or GcpFakeState())


@pytest.fixture
def gcp_fake() -> Iterator[FakeGcp]:
    fake = FakeGcp().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gcp_options(gcp_fake: FakeGcp) -> Callable[..., SourceOptions]:
    """``gcp_options(projects=[...], **more)``: a source table pointing at the fakes."""

    def make(name: str = "gcp", **extra: Any) -> SourceOptions:
        return SourceOptions(gcp_fake.source_table(name, **extra), prefix="sources[0]")

    return make


@pytest.fixture
def gcp_clients_for(gcp_fake: FakeGcp) -> Iterator[Callable[..., GcpClients]]:
    """Real client libraries pointed at the fakes; closed after the test."""
    made: list[GcpClients] = []

    def make(options: SourceOptions) -> GcpClients:
        clients = build_clients(parse_settings(options))
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()


@pytest.fixture
def gcp_context(tmp_path: Path) -> SourceContext:
    return SourceContext(base_dir=tmp_path)


@pytest.fixture
def gcp_source(
    gcp_options: Callable[..., SourceOptions], gcp_context: SourceContext
) -> Iterator[Callable[..., Any]]:
    """``gcp_source(projects=[...], **more)``: a source built through the plugin, closed afterwards."""
    from connectors.gcp_iam import PLUGIN, GcpIamSource

    made: list[GcpIamSource] = []

    def make(**extra: Any) -> GcpIamSource:
        source = PLUGIN.make_source(gcp_options(**extra), gcp_context)
        assert isinstance(source, GcpIamSource)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


@pytest.fixture
def gcp_revoker(
    gcp_options: Callable[..., SourceOptions], gcp_context: SourceContext
) -> Iterator[Callable[..., Any]]:
    """``gcp_revoker(projects=[...], **more)``: a revoker built through the plugin, closed afterwards."""
    from connectors.gcp_iam import PLUGIN, GcpIamRevoker

    made: list[GcpIamRevoker] = []

    def make(**extra: Any) -> GcpIamRevoker:
        assert PLUGIN.make_revoker is not None
        revoker = PLUGIN.make_revoker(gcp_options(**extra), gcp_context)
        assert isinstance(revoker, GcpIamRevoker)
        made.append(revoker)
        return revoker

    yield make
    for revoker in made:
        revoker.close()


# --- action targets as the planner builds them -------------------------------------------------


def key_target(email: str, key_name: str, uid: str, project: str = "acme-prod") -> ActionTarget:
    """A service-account key of ``email`` (immutable ``uid``) in ``project``."""
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=email,
        username=email,
        credential_id=key_name,
        credential_kind=CredentialKind.SERVICE_ACCOUNT_KEY,
        scope=project,
        account_uid=uid,
    )


def sa_target(email: str, uid: str, project: str = "acme-prod") -> ActionTarget:
    """The service account ``email`` itself (immutable ``uid``) in ``project``."""
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=email,
        username=email,
        credential_id=email,
        credential_kind=CredentialKind.ACCOUNT,
        scope=project,
        account_uid=uid,
    )


def planned_binding_target(scope: str, role: str, member: str, expression: str = "") -> ActionTarget:
    """The binding credential the audit plans for: account = resource/principal, where the
    resource is the project, organization or folder ``scope`` names."""
    resource = scope if scope.startswith(("organizations/", "folders/")) else f"projects/{scope}"
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=f"{resource}/{principal_uid(member)}",
        username=member,
        credential_id=binding_credential_id(scope, role, member, expression),
        credential_kind=CredentialKind.IAM_BINDING,
        scope=scope,
        account_uid=principal_uid(member),
    )
