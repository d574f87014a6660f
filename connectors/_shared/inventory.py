"""One exposure inventory read scope by scope (AWS accounts, GCP projects, Vault mounts).

Every exposure source reads its inventory the same way: each scope on its own, a scope that
fails becomes a :class:`ScopeFailure` of that scope while the others report, and what the
scopes found is gathered into one :class:`InventoryRead`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from offboard_audit.core.exposure import InventoryRead, PersistenceState, SecretState
from offboard_audit.core.records import ScopeFailure


@dataclass
class ScopeFound:
    """What the inventory of one scope found."""

    secrets: list[SecretState] = field(default_factory=list)
    objects: list[PersistenceState] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def inventory_by_scope(
    scopes: Sequence[str],
    read: Callable[[str], ScopeFound | ScopeFailure],
    *,
    workers: int = 1,
    warnings: Sequence[str] = (),
    thread_name_prefix: str = "",
) -> InventoryRead:
    """``read`` each scope, ``workers`` at a time (1: in order, in this thread), and gather what
    they found after the ``warnings`` the caller already has. ``read`` returns a failure rather
    than raising: only it knows which errors fail a scope and which are bugs."""
    found: list[ScopeFound | ScopeFailure]
    if workers <= 1 or len(scopes) <= 1:
        found = [read(scope) for scope in scopes]
    else:
        with ThreadPoolExecutor(
            max_workers=min(workers, len(scopes)), thread_name_prefix=thread_name_prefix
        ) as pool:
            found = list(pool.map(read, scopes))
    secrets: list[SecretState] = []
    objects: list[PersistenceState] = []
    failures: list[ScopeFailure] = []
    notes = list(warnings)
    for result in found:
        if isinstance(result, ScopeFailure):
            failures.append(result)
            continue
        secrets.extend(result.secrets)
        objects.extend(result.objects)
        notes.extend(result.warnings)
    return InventoryRead(tuple(secrets), tuple(objects), tuple(scopes), tuple(failures), tuple(notes))
