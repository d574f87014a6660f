"""A lean in-process Google Cloud for ``offboard-audit demo``: the real client libraries talk to
two local servers over one in-memory state.

- :class:`GcpFakeState` (``state.py``): organizations, folders, projects and their IAM
  policies (with etags), service accounts, keys and last-authentication activity.
- :class:`FakeIamServer` (``iam_server.py``): ``google.iam.admin.v1.IAM`` over plaintext gRPC.
- :class:`FakeRestServer` (``rest_server.py``): Resource Manager v3 and Policy Analyzer REST.

Both bind to 127.0.0.1 on a port the OS picks and are stopped by ``stop()``. Test-only
controls (failure injection, call counters, hooks between a read and a write, latency) are
not here: ``tests/support/gcp.py`` subclasses these classes.
"""

from __future__ import annotations

from typing import Any, Self

from connectors.gcp_iam.demo_fake.iam_server import FakeIamServer
from connectors.gcp_iam.demo_fake.rest_server import FakeRestServer
from connectors.gcp_iam.demo_fake.state import (
    FakeApiError,
    FakeFolder,
    FakeKey,
    FakeOrganization,
    FakePolicyHolder,
    FakeProject,
    FakeServiceAccount,
    GcpFakeState,
)

__all__ = [
    "FakeApiError",
    "FakeFolder",
    "FakeGcp",
    "FakeIamServer",
    "FakeKey",
    "FakeOrganization",
    "FakePolicyHolder",
    "FakeProject",
    "FakeRestServer",
    "FakeServiceAccount",
    "GcpFakeState",
]


class FakeGcp:
    """Both fake servers over one state: ``start()`` them, point a source at ``iam_endpoint``
    and ``rest_url`` (Resource Manager and Policy Analyzer), ``stop()`` them."""

    # Tests swap these for subclasses (tests/support/gcp.py).
    iam_server_class: type[FakeIamServer] = FakeIamServer
    rest_server_class: type[FakeRestServer] = FakeRestServer

    def __init__(self, state: GcpFakeState | None = None) -> None:
        self.state = state or GcpFakeState()
        self.iam = self.iam_server_class(self.state)
        self.rest = self.rest_server_class(self.state)

    def start(self) -> Self:
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
