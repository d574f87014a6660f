"""The interfaces between the core and the connectors.

A connector package exposes one :class:`ConnectorPlugin` (see ``registry.py``). Its
source reads and translates; its revoker writes. The two are separate classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState
from offboard_audit.core.exposure import Checkpoint, EventBatch, InventoryRead, ObjectRef
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.records import Account, HRRead, Person, SourceData


class SourceKind(StrEnum):
    HR = "hr"
    ACCOUNTS = "accounts"


@runtime_checkable
class HRSource(Protocol):
    """Reads people from an HR system. Raises ``SourceError`` when it cannot (never returns [])."""

    name: str

    def read_people(self) -> HRRead: ...


@runtime_checkable
class AccountSource(Protocol):
    """Reads accounts and credentials from one system in two passes.

    ``collect`` is the cheap bulk pass over everything. ``detail`` is called only for the
    accounts the core cares about (matched to departed or ambiguous people); the
    credentials it returns replace the bulk-pass credentials of those accounts. A source
    with nothing more to say returns ``SourceData()``.
    """

    name: str
    system: str

    def collect(self) -> SourceData: ...

    def detail(self, accounts: Sequence[Account]) -> SourceData: ...


@runtime_checkable
class TargetedSource(Protocol):
    """Optional: read only what belongs to one person (used by the HR webhook)."""

    def collect_for(self, person: Person) -> SourceData: ...


@runtime_checkable
class ExposureSource(Protocol):
    """Reads what identities did to secrets and keys, and what those are now (core/exposure.py).

    ``read_events(checkpoints, now)`` yields one :class:`EventBatch` per log object (or page),
    streamed: each stream (a trail prefix, an audit-log file, a log filter) resumes after its
    stored :class:`Checkpoint` (``checkpoints`` by stream name; none: from ``now`` minus the
    configured lookback). Only the events that matter are kept; failed calls are not events. A
    stream that cannot be read yields one batch with ``failure`` (naming the object) and stops;
    the engine stores each other batch with its checkpoint before asking for the next.

    ``inventory(wanted)`` lists the secrets and keys of every scope (:class:`SecretState`; the
    per-secret details such as version dates may be read for the ``wanted`` ones only) and checks
    the objects in ``wanted`` of the persistence kinds (:class:`PersistenceState`). ``wanted`` are
    the targets of the departed people's events. A scope that fails is a ``ScopeFailure`` of its
    own. Never reads a secret value.
    """

    name: str
    system: str

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]: ...

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead: ...


# What a reversible action's ``restore`` is: (target, current state, prior state) -> None.
Restore = Callable[[ActionTarget, ResourceState, ResourceState], None]


@runtime_checkable
class ActionSpec(Protocol):
    """One action of one revoker: its definition and its three system calls, in one class.

    The engine (``offboard_audit.engine.steps``) composes them the same way for every connector:
    ``read`` before (identity and no-op checks), ``change``, ``read`` after (verify); an undo is
    ``read``, ``restore``, ``read``. A spec never verifies its own change and never reads more
    than its write needs.

    - ``definition``: name, credential kind, stage, reversible, permissions, description (what
      the plan and ``config check`` print).
    - ``read(target)``: the object's state now. ``identity`` is the account's immutable
      identity as the system reports it (None when the account is gone); ``active`` means "not
      yet in the action's target state" (for a delete: still there). Refusals (protected
      accounts, root, targets outside the configured scope) raise ``RevokeError`` here, before
      any call to the system.
    - ``change(target, before)``: move the object to the target state. ``before`` is the state
      the engine just read, identity-checked and active. A spec whose system has no
      conditional write may re-check the identity immediately before writing (and raise
      ``TargetChanged``); it says so in its docstring.
    - ``restore``: None for an irreversible action; else puts ``prior`` (the state read before
      the action) back, given ``current``.
    - ``restored(state, prior)``: whether ``state`` holds what ``restore`` puts back beyond
      ``exists`` and ``active`` (which the engine compares itself), e.g. every group-membership
      value of ``prior``.
    """

    @property
    def definition(self) -> ActionDef: ...

    def read(self, target: ActionTarget) -> ResourceState: ...

    def change(self, target: ActionTarget, before: ResourceState) -> None: ...

    @property
    def restore(self) -> Restore | None: ...

    def restored(self, state: ResourceState, prior: ResourceState) -> bool: ...


@runtime_checkable
class Revoker(Protocol):
    """Changes credentials in one system, one :class:`ActionSpec` per action.

    ``actions`` are the definitions as class-level data (the plugin's ``revoker_actions``:
    the plan and ``config check`` need no instance); ``specs`` are the same actions bound to
    this revoker's clients, by name.
    """

    actions: ClassVar[Mapping[str, ActionDef]]

    @property
    def specs(self) -> Mapping[str, ActionSpec]: ...


@dataclass(frozen=True)
class SourceContext:
    """What a connector factory may use besides its own options.

    ``env`` is where secrets come from (``password_env`` names a variable in it);
    ``base_dir`` resolves relative paths (the config file's folder); ``clients`` lets
    tests and the demo inject ready-made API clients instead of real ones.
    """

    base_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    clients: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchSpec:
    """Which account attributes carry an employee id or an email, for one source."""

    employee_id_attributes: tuple[str, ...] = ()
    email_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoPart:
    """A connector's share of ``offboard-audit demo``: a source table and an injected client.

    ``source`` is the ``[[sources]]`` table to add (its ``name`` is the key under which
    ``client`` is put into ``SourceContext.clients``); ``close`` stops any in-process fake.
    Everything must run in process and need no config or account: no external network; an
    in-process fake listening on 127.0.0.1 (as the Google Cloud demo's gRPC/REST fakes do)
    is fine, as long as ``close`` stops it.
    """

    source: Mapping[str, Any]
    client: Any = None
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class ConnectorPlugin:
    """How the core knows a connector: one of these per source type, named in the registry.

    ``options`` documents every config key (``key -> help``) for ``config check`` and the
    README; ``read_permissions`` lists what the read path needs.
    """

    type_name: str
    kind: SourceKind
    system: str
    make_source: Callable[[SourceOptions, SourceContext], HRSource | AccountSource]
    make_revoker: Callable[[SourceOptions, SourceContext], Revoker] | None = None
    revoker_actions: Mapping[str, ActionDef] = field(default_factory=dict)
    read_permissions: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    match: MatchSpec = MatchSpec()
    # Builds this connector's part of the demo organisation from the demo's HR people.
    demo: Callable[[Sequence[Person], datetime], DemoPart] | None = None
    # The source's exposure reader (design.md "Exposure"), or None when its config enables none
    # (e.g. no ``[sources.exposure]`` table); what it needs to read (``config check``).
    make_exposure: Callable[[SourceOptions, SourceContext], ExposureSource | None] | None = None
    exposure_permissions: tuple[str, ...] = ()
