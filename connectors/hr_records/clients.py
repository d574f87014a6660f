"""The HTTP client of the ``hr_json`` source: an injected ``httpx.Client`` or one per read.

Tests inject a client (``ctx.clients[<source name>]``, e.g. one with a mock transport); the
source never closes an injected client. Without one, each read opens its own and closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from offboard_audit.core.protocols import SourceContext


def injected_client(ctx: SourceContext, name: str) -> httpx.Client | None:
    """The ``httpx.Client`` injected for source ``name``, if any (anything else is ignored)."""
    client = ctx.clients.get(name)
    return client if isinstance(client, httpx.Client) else None


@contextmanager
def http_client(injected: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """The injected client (left open: its owner closes it), or a new one closed afterwards."""
    if injected is not None:
        yield injected
        return
    with httpx.Client(timeout=timeout) as client:
        yield client
