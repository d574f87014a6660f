"""Fixtures for the local Google Cloud fakes: a gRPC IAM Admin server and a REST Resource Manager /
Policy Analyzer server, both on 127.0.0.1 ports the OS picks, both stopped after each test.

The servers are started per test (starting both takes a few milliseconds) so that every
test gets a fresh fake cloud it can seed through ``gcp_fake.state``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.gcp_iam.clients import GcpClients, build_clients
from connectors.gcp_iam.fakes import FakeGcp
from connectors.gcp_iam.settings import parse_settings
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext


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
