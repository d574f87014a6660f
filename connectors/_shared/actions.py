"""What the connectors' actions share: how a definition is stated, the state of an object that is
gone, and the steps the GCP and GitHub actions take around their API calls.

Every action's definition is built by ``define`` (or ``irreversible``), so the rule for which
actions can be undone is stated once. The GCP and GitHub actions refuse a target before any call
(the revoker's guard), then make their calls inside ``calling``, which turns the client library's
error into a ``RevokeError`` naming the action and the credential. The engine composes ``read``
and ``change`` (``engine/steps.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from functools import partial
from types import MappingProxyType
from typing import ClassVar, Protocol, TypeVar

from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import TargetChanged
from offboard_audit.core.protocols import ActionSpec, Restore
from offboard_audit.core.records import CredentialKind

A = TypeVar("A")

# No object there (any more), and no identity to compare: what a read returns for a user, entry or
# object that is gone.
GONE = ResourceState(exists=False, active=False)


class Defined(Protocol):
    """An action class: its definition is class-level data (the plan needs no instance)."""

    definition: ClassVar[ActionDef]


def define(
    name: str,
    kind: CredentialKind,
    permissions: tuple[str, ...],
    description: str,
    stage: Stage = Stage.DISABLE,
    *,
    reversible: bool | None = None,
) -> ActionDef:
    """An action's definition; unless said otherwise it is reversible exactly when it only
    disables (a deletion cannot be undone)."""
    return ActionDef(
        name=name,
        credential_kind=kind,
        stage=stage,
        reversible=stage is Stage.DISABLE if reversible is None else reversible,
        permissions=permissions,
        description=description,
    )


# The definition of an action this tool cannot undo in any stage (its description says why).
irreversible = partial(define, reversible=False)


class NoUndo:
    """An action this tool cannot undo (its definition says ``reversible=False`` and why): it has
    no restore, and no state counts as restored."""

    @property
    def restore(self) -> Restore | None:
        return None

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return False


def recorded_group_identity(prior: ResourceState, key: str, id_name: str, group: str) -> str:
    """The group identity (``prior``'s ``key``) an undo re-checks before it adds a member back.

    An action applied before group identities were kept has none: re-adding by name (or DN) could
    grant a group deleted and re-created under it since, so that undo is refused
    (``TargetChanged``), never done by name."""
    value = prior.value(key)
    if value is None:
        raise TargetChanged(
            f"no {id_name} was recorded for group {group} when this action was applied (an action "
            f"from before group identities were kept): refusing to add the member back by name, "
            "which could grant a group re-created under it; check the group and add the member "
            "back by hand if it is the same one"
        )
    return value


def definitions(actions: Iterable[type[Defined]]) -> Mapping[str, ActionDef]:
    """A revoker's ``actions``: each action's definition by name, read-only, in plan order."""
    return MappingProxyType({a.definition.name: a.definition for a in actions})


def bind(actions: Iterable[Callable[[A], ActionSpec]], access: A) -> Mapping[str, ActionSpec]:
    """A revoker's ``specs``: each action bound to ``access`` (the revoker), by name, read-only."""
    specs = [make(access) for make in actions]
    return MappingProxyType({spec.definition.name: spec for spec in specs})


class GuardedAction(ABC):
    """Read = guard + ``read_object``; change = guard + ``revoke``; each under ``calling``."""

    definition: ClassVar[ActionDef]
    # How a failed read is worded after "<action> <credential id>: " in the RevokeError.
    read_failure: ClassVar[str] = "reading its state"

    def read(self, target: ActionTarget) -> ResourceState:
        self.guard(target)
        with self.calling(f"{self.definition.name} {target.credential_id}: {self.read_failure}"):
            return self.read_object(target)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        self.guard(target)
        with self.calling(f"{self.definition.name} {target.credential_id}"):
            self.revoke(target, before)

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        # The restore (where there is one) is verified by the engine's re-read alone.
        return True

    @abstractmethod
    def guard(self, target: ActionTarget) -> None:
        """``RevokeError`` for a target this revoker must not touch, before any call."""

    @abstractmethod
    def calling(self, what: str) -> AbstractContextManager[None]:
        """Turn a failed API call into a ``RevokeError`` that starts with ``what``."""

    @abstractmethod
    def read_object(self, target: ActionTarget) -> ResourceState: ...

    @abstractmethod
    def revoke(self, target: ActionTarget, before: ResourceState) -> None: ...
