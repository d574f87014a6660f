"""The demo's GitHub part runs in process on a loopback fake and is stopped by close()."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

from connectors.github import PLUGIN
from connectors.github.demo import ORG
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.demo import demo_people


def test_demo_part_serves_the_leavers_credentials_and_close_stops_it() -> None:
    assert PLUGIN.demo is not None
    part = PLUGIN.demo(demo_people(), datetime(2026, 11, 1, tzinfo=UTC))
    url = part.client.github.config.base_url
    port = url.port
    try:
        assert url.host == "127.0.0.1"
        ctx = SourceContext(base_dir=Path.cwd(), env={}, clients={"github": part.client})
        source = PLUGIN.make_source(SourceOptions(dict(part.source)), ctx)
        data = source.collect()  # type: ignore[union-attr]
        assert {a.username for a in data.accounts} >= {"bobthebuilder", "cgone", "gracehopper", "mallory-x"}
        bob = next(a for a in data.accounts if a.username == "bobthebuilder")
        assert bob.emails == ("bob@example.com",) and part.source["org"] == ORG
        assert data.warnings == ()
    finally:
        part.close()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
