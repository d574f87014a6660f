"""GitHub App installation tokens stay with the client that fetched them: two sources with the
same app id and installation id on two servers (a GitHub Enterprise Server's app numbered like
github.com's) each fetch their own token, and neither server is sent the other's. githubkit's
default token cache is one per process, keyed by app id and installation id only.

Against two local fake GitHub servers; each issues tokens with its own mark and records the
Authorization header of every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.github import PLUGIN
from connectors.github.demo_fake import GitHubFakeState
from offboard_audit.core.protocols import SourceContext
from tests.support.github import NOW, ORG, GitHubWorld, MeteredGitHubServer, Sleeps


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def second_world() -> Iterator[GitHubWorld]:
    state = GitHubFakeState(ORG)
    server = MeteredGitHubServer(state).start()
    try:
        yield GitHubWorld(state, server, Sleeps(), lambda: NOW, app_token=True)
    finally:
        server.stop()


def _collect_with_app_auth(world: GitHubWorld, pem: str) -> None:
    world.state.add_member("BobL")
    # app_id 42, installation 7 on both servers; no injected client: the real githubkit client.
    source = PLUGIN.make_source(world.options(), SourceContext(base_dir=Path.cwd(), env={"GH_APP_KEY": pem}))
    data = source.collect()
    assert [a.username for a in data.accounts] == ["BobL"]


def test_two_servers_with_the_same_app_and_installation_ids_each_get_only_their_own_token(
    github_world: GitHubWorld, second_world: GitHubWorld
) -> None:
    github_world.app_token = True
    pem = _pem()
    _collect_with_app_auth(github_world, pem)
    _collect_with_app_auth(second_world, pem)
    for world, other in ((github_world, second_world), (second_world, github_world)):
        server = world.server
        assert server.calls["POST /app/installations/7/access_tokens"] >= 1
        tokens = {a for a in server.authorizations if a.startswith("token ")}
        assert tokens and all(t.endswith(f"-{server.mark}") for t in tokens), tokens
        assert not any(other.server.mark in a for a in server.authorizations)
