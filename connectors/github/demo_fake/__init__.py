"""A lean in-process fake GitHub (REST + GraphQL on 127.0.0.1) for ``offboard-audit demo``; the
tests' knobs (call counters, failure injection) are in ``tests/support/github.py``."""

from __future__ import annotations

from typing import Any

from connectors.github.demo_fake.server import APP_TOKEN_PREFIX, FakeGitHubServer
from connectors.github.demo_fake.state import (
    FakeApiError,
    FakeAuditEvent,
    FakeCredentialAuthorization,
    FakeDeployKey,
    FakeInvitation,
    FakePatGrant,
    FakeRepo,
    FakeUser,
    GitHubFakeState,
)


def fake_github_client(server: FakeGitHubServer, token: str = "ghp_demo", **kw: Any) -> Any:  # noqa: S107
    """A githubkit client talking to ``server`` (retries off: the connector's wrapper retries)."""
    from githubkit import GitHub

    return GitHub(token, base_url=server.url, auto_retry=False, http_cache=False, **kw)


__all__ = [
    "APP_TOKEN_PREFIX",
    "FakeApiError",
    "FakeAuditEvent",
    "FakeCredentialAuthorization",
    "FakeDeployKey",
    "FakeGitHubServer",
    "FakeInvitation",
    "FakePatGrant",
    "FakeRepo",
    "FakeUser",
    "GitHubFakeState",
    "fake_github_client",
]
