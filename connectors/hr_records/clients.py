"""The HTTP client of the ``hr_json`` source: an injected ``httpx.Client`` or one per read.

Tests inject a client (``ctx.clients[<source name>]``, e.g. one with a mock transport); the
source never closes an injected client. Without one, each read opens its own and closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from offboard_audit.core.protocols import SourceContext

# httpx is imported where a JSON source uses it: a CSV-only audit does not pay its import
# (a tenth of a second, most of the HR source's start-up).
if TYPE_CHECKING:
    import httpx


def injected_client(ctx: SourceContext, name: str) -> httpx.Client | None:
    """The ``httpx.Client`` injected for source ``name``, if any (anything else is ignored)."""
    client = ctx.clients.get(name)
    if client is None:
        return None
    import httpx

    return client if isinstance(client, httpx.Client) else None


@contextmanager
def http_client(injected: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """The injected client (left open: its owner closes it), or a new one closed afterwards."""
    if injected is not None:
        yield injected
        return
    import httpx

    with httpx.Client(timeout=timeout) as client:
        yield client
