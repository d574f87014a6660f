"""The ``vault`` revoker: disables identity entities, revokes their tokens, deletes userpass
logins, and (with ``policy.auto_rotate_secrets``) rotates transit keys whose rotation is set.

The actions are in ``actions.py``; the engine runs their steps. This class is what every action
goes through: the same :class:`VaultApi` as the source, the refusals made before any call
(``protected_entities``, compared without case with the entity's name, id and login name), the
entity read by id (``GET identity/entity/id/<id>``: the id is ``Account.uid``), and errors that
name the Vault call that failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from connectors.vault.actions import ACTIONS
from connectors.vault.clients import VaultApi, VaultCallError
from connectors.vault.settings import VaultSettings
from offboard_audit.core.actions import ActionDef, ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import ActionSpec


@dataclass(eq=False)  # one revoker per source: compared by identity, as before
class VaultRevoker:
    """Applies and undoes the vault actions, one spec per action (``actions.py``)."""

    actions: ClassVar[Mapping[str, ActionDef]] = MappingProxyType(
        {a.definition.name: a.definition for a in ACTIONS}
    )

    settings: VaultSettings
    api: VaultApi
    # Each action gets this revoker as its VaultAccess.
    specs: Mapping[str, ActionSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = MappingProxyType({a.definition.name: a(self) for a in ACTIONS})

    def refuse(self, target: ActionTarget, *names: str) -> None:
        if self.settings.is_protected(target.username, target.account_id, target.account_uid, *names):
            who = next((n for n in (*names, target.username, target.account_id) if n), "?")
            raise RevokeError(f"refusing to touch protected Vault entity {who!r} (protected_entities)")

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        if not entity_id or "/" in entity_id:
            return None  # a userpass login without an entity has no entity to read
        return self.api.read(f"identity/entity/id/{entity_id}")

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except RevokeError:
            raise
        except VaultCallError as exc:
            raise RevokeError(f"{self.settings.name}: {exc}") from exc
        except Exception as exc:
            raise RevokeError(f"{self.settings.name}: vault {what}: {type(exc).__name__}: {exc}") from exc
