"""The ``github`` revoker: takes a leaver's way into the organisation away, credential by
credential, then (in the delete stage) the membership itself.

The actions (one class each, with their calls and permissions) are in ``actions.py``; the engine
runs their steps (read, identity and no-op checks, change, re-read and verify). This class is what
every action goes through: the refusals made before any call (a target of another organisation, a
login in ``protected_logins``, compared case-insensitively as GitHub compares logins; selectors of
``policy.protected`` such as ``github:breakglass`` are the core's and work with logins too), the
user's identity (``GET /users/{login}`` -> the numeric id) and errors that name the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar

from connectors._shared.actions import bind, definitions
from connectors.github.actions import ACTIONS
from connectors.github.clients import GitHubApi, GitHubCallError, OrgAccess
from connectors.github.settings import GitHubSettings
from offboard_audit.core.actions import ActionDef, ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import ActionSpec


class GitHubRevoker(OrgAccess):
    """Applies revocations in one GitHub organisation, one spec per action (``actions.py``)."""

    actions: ClassVar[Mapping[str, ActionDef]] = definitions(ACTIONS)

    def __init__(self, settings: GitHubSettings, api: GitHubApi) -> None:
        super().__init__(settings, api)
        self.specs: Mapping[str, ActionSpec] = bind(ACTIONS, self)

    def guard(self, target: ActionTarget) -> None:
        if target.scope and target.scope.casefold() != self.org.casefold():
            raise RevokeError(
                f"{target.credential_id} belongs to organisation {target.scope!r}, not {self.org!r} "
                f"(the organisation source {self.settings.name!r} reads)"
            )
        if target.username and self.settings.is_protected(target.username):
            raise RevokeError(
                f"refusing to touch protected GitHub login {target.username!r} (protected_logins)"
            )

    def user_id(self, login: str) -> str | None:
        user = self.api.found(f"GET /users/{login}", lambda: self.api.rest.users.get_by_username(login))
        return None if user is None else str(user.id)

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        try:
            with self.api.session():
                yield
        except RevokeError:
            raise
        except GitHubCallError as exc:
            raise RevokeError(f"{what}: {exc}") from exc


__all__ = ["GitHubRevoker"]
