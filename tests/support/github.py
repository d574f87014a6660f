"""A fake GitHub (REST + GraphQL on 127.0.0.1) with the tests' knobs: call counters, queued
failures (a 403 secondary rate limit, a 404 on one repository's keys, a 5xx) and a sleeper that
records waits instead of sleeping. The server is the demo's (``connectors/github/demo_fake``);
nothing test-only lives in the connector.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.github import PLUGIN, GitHubClients, GitHubExposure, GitHubRevoker, GitHubSource
from connectors.github.demo_fake import FakeGitHubServer, GitHubFakeState, fake_github_client
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

ORG = "acme"


@dataclass
class Failure:
    """One injected answer: ``status``, extra ``headers`` and GitHub's error ``message``."""

    status: int
    message: str = "failure"
    headers: dict[str, str] = field(default_factory=dict)


class MeteredGitHubServer(FakeGitHubServer):
    """The fake with a call counter (by ``METHOD /path``, query left out) and failures queued per
    path pattern, served before the real answer (each is used once)."""

    def __init__(self, state: GitHubFakeState) -> None:
        super().__init__(state)
        self.calls: Counter[str] = Counter()
        self.queries: list[tuple[str, dict[str, list[str]]]] = []
        self._failures: list[tuple[str, re.Pattern[str], Failure]] = []
        self._meter = threading.Lock()
        # The Authorization header of every request, in order; installation tokens this server
        # issues carry its own mark, so a token another server issued is told apart.
        self.authorizations: list[str] = []
        self.mark = f"srv{id(self)}"

    def fail(self, method: str, path: str, *failures: Failure) -> None:
        """Answer the next requests to ``path`` (a regex, anchored) with ``failures``, in order."""
        with self._meter:
            for f in failures:
                self._failures.append((method, re.compile(f"^{path}$"), f))

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        key = f"{method} {path}"
        with self._meter:
            self.calls[key] += 1
            self.authorizations.append({k.lower(): v for k, v in headers.items()}.get("authorization", ""))
            self.queries.append((key, query))
            for i, (m, pattern, failure) in enumerate(self._failures):
                if m == method and pattern.match(path):
                    del self._failures[i]
                    return (
                        failure.status,
                        failure.headers,
                        {"message": failure.message, "documentation_url": ""},
                    )
        return super().route(method, path, query, body, headers)

    def installation_token(self, installation_id: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, body = super().installation_token(installation_id, **kwargs)
        return status, headers, {**body, "token": f"{body['token']}-{self.mark}"}

    def count(self, prefix: str) -> int:
        """Calls whose ``METHOD /path`` starts with ``prefix``."""
        with self._meter:
            return sum(n for k, n in self.calls.items() if k.startswith(prefix))

    def total(self) -> int:
        with self._meter:
            return sum(self.calls.values())

    def reset_calls(self) -> None:
        with self._meter:
            self.calls.clear()
            self.queries.clear()


class Sleeps:
    """Records every wait the connector asks for; never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class GitHubWorld:
    state: GitHubFakeState
    server: MeteredGitHubServer
    sleeps: Sleeps
    clock: Callable[[], datetime]
    app_token: bool = False

    def client(self) -> GitHubClients:
        token = "ghs_installation" if self.app_token else "ghp_owner"
        return GitHubClients(fake_github_client(self.server, token), sleep=self.sleeps, clock=self.clock)

    def options(self, name: str = "gh", **extra: Any) -> SourceOptions:
        raw: dict[str, Any] = {"name": name, "type": "github", "org": ORG, "api_url": self.server.url}
        if self.app_token:
            raw |= {"app_id": 42, "private_key_env": "GH_APP_KEY", "installation_id": 7}
        else:
            raw["token_env"] = "GH_TOKEN"
        raw.update(extra)
        return SourceOptions(raw)

    def context(self, name: str = "gh") -> SourceContext:
        return SourceContext(base_dir=Path.cwd(), env={}, clients={name: self.client()})

    def source(self, **extra: Any) -> GitHubSource:
        source = PLUGIN.make_source(self.options(**extra), self.context())
        assert isinstance(source, GitHubSource)
        return source

    def revoker(self, **extra: Any) -> GitHubRevoker:
        assert PLUGIN.make_revoker is not None
        revoker = PLUGIN.make_revoker(self.options(**extra), self.context())
        assert isinstance(revoker, GitHubRevoker)
        return revoker

    def exposure(self, **extra: Any) -> GitHubExposure:
        assert PLUGIN.make_exposure is not None
        reader = PLUGIN.make_exposure(self.options(**extra), self.context())
        assert isinstance(reader, GitHubExposure)
        return reader


NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def github_world() -> Iterator[GitHubWorld]:
    """An empty organisation ``acme`` on a fresh fake server, stopped after the test. The clock
    is fixed at ``NOW``; waits are recorded in ``sleeps``."""
    state = GitHubFakeState(ORG)
    server = MeteredGitHubServer(state).start()
    try:
        yield GitHubWorld(state, server, Sleeps(), lambda: NOW)
    finally:
        server.stop()
