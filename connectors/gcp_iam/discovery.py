"""Which projects and which organization / folder IAM policies a ``gcp_iam`` source scans.

API calls (read-only), only with ``organization`` / ``folders``: Resource Manager
``projects.search`` (``resourcemanager.projects.get``) with ``parent:X state:ACTIVE`` for each
parent, and ``folders.list`` (``resourcemanager.folders.list``) to descend into sub-folders
(search matches direct children only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from connectors.gcp_iam.clients import GcpClients, api_errors, bounded_retry, describe_error
from connectors.gcp_iam.settings import GcpSettings
from offboard_audit.core.errors import SourceError


def discover(config: GcpSettings, clients_of: Callable[[], GcpClients]) -> tuple[list[str], list[str]]:
    """(projects, organization and folders whose IAM policies are read).

    The projects are the configured ones plus every active project under ``organization`` /
    ``folders``; the second list holds the configured organization and folders and every
    active sub-folder found below them. ``clients_of`` is called only when there is a parent to
    search. A parent that cannot be searched, or no active project at all, is a
    :class:`SourceError`.
    """
    found: list[str] = list(config.projects)
    parents = [p for p in ([config.organization] if config.organization else [])]
    parents += list(config.folders)
    if not parents:
        return _unique(found), []
    clients = clients_of()
    retry = bounded_retry(config.timeout)
    visited: list[str] = []
    queue = list(parents)
    try:
        while queue:
            parent = queue.pop(0)
            if parent in visited:
                continue
            visited.append(parent)
            pager = clients.projects.search_projects(
                request={"query": f"parent:{parent} state:ACTIVE"},
                retry=retry,
                timeout=config.timeout,
            )
            found.extend(p.project_id for p in pager if p.state.name == "ACTIVE")
            if clients.folders is None:
                continue
            folders = clients.folders.list_folders(
                request={"parent": parent}, retry=retry, timeout=config.timeout
            )
            queue.extend(f.name for f in folders if f.state.name == "ACTIVE")
    except api_errors() as exc:
        raise SourceError(
            f"{config.name}: cannot list projects under {parent}: {describe_error(exc)}"
        ) from exc
    projects = _unique(found)
    if not projects:
        raise SourceError(f"{config.name}: no active project found under {', '.join(parents)}")
    return projects, visited


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
