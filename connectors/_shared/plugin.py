"""How an account connector declares its plugin.

Every account connector builds its source, its revoker and (if it has one) its exposure reader
from the same pair: the settings parsed from the ``[[sources]]`` table and the clients, injected
through ``ctx.clients[<source name>]`` or built on first use. Each connector writes that one
``wire`` function and hands it to :func:`account_plugin` with its classes; :func:`wired` turns
``wire`` and a constructor into a factory, so the factories cannot drift apart in which options
they read or which injected client they take, and the revoker's actions are read from the very
class the revoker factory builds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar, cast

from offboard_audit.core.actions import ActionDef
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import (
    AccountSource,
    ConnectorPlugin,
    DemoPart,
    ExposureSource,
    MatchSpec,
    Revoker,
    SourceContext,
    SourceKind,
)
from offboard_audit.core.records import Person

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")
S_contra = TypeVar("S_contra", contravariant=True)
C_contra = TypeVar("C_contra", contravariant=True)

DemoHook = Callable[[Sequence[Person], datetime], DemoPart]
ExposureFactory = Callable[[SourceOptions, SourceContext], ExposureSource | None]


class RevokerClass(Protocol[S_contra, C_contra]):
    """A revoker class (or :class:`RevokerChoice`): built from the wired settings and clients, with
    its ``actions`` at class level (the plan and ``config check`` need no instance)."""

    @property
    def actions(self) -> Mapping[str, ActionDef]: ...

    def __call__(self, settings: S_contra, clients: C_contra, /) -> Revoker: ...


@dataclass(frozen=True)
class RevokerChoice(Generic[S, C]):
    """A revoker class picked per source when it is built (LDAP: by dialect), in the shape of a
    revoker class: ``actions`` declares what any of the choices may do, ``choose`` builds one."""

    actions: Mapping[str, ActionDef]
    choose: Callable[[S, C], Revoker]

    def __call__(self, settings: S, clients: C, /) -> Revoker:
        return self.choose(settings, clients)


def wired(
    wire: Callable[[SourceOptions, SourceContext], tuple[S, C]],
    build: Callable[[S, C], T],
) -> Callable[[SourceOptions, SourceContext], T]:
    """A plugin factory: ``wire`` (settings and clients from the config table), then ``build``."""

    def make(options: SourceOptions, ctx: SourceContext) -> T:
        settings, clients = wire(options, ctx)
        return build(settings, clients)

    return make


def account_plugin(
    type_name: str,
    system: str,
    wire: Callable[[SourceOptions, SourceContext], tuple[S, C]],
    *,
    source: Callable[[S, C], AccountSource],
    revoker: RevokerClass[S, C],
    read_permissions: tuple[str, ...],
    options: Mapping[str, str],
    match: MatchSpec,
    demo: DemoHook | None = None,
    make_exposure: ExposureFactory | None = None,
    exposure_permissions: tuple[str, ...] = (),
) -> ConnectorPlugin:
    """The plugin of an account source type: ``source`` and ``revoker`` are built from ``wire``'s
    settings and clients, and the plugin's ``revoker_actions`` are ``revoker.actions``.

    ``make_exposure`` is the exposure reader's factory: ``wired(wire, build)`` when the reader
    takes the same settings and clients, its own ``(options, ctx)`` factory when it reads more
    of the table (AWS and GCP parse ``[sources.exposure]`` and build their own clients).
    """
    return ConnectorPlugin(
        type_name=type_name,
        kind=SourceKind.ACCOUNTS,
        system=system,
        make_source=wired(wire, source),
        make_revoker=wired(wire, revoker),
        revoker_actions=revoker.actions,
        read_permissions=read_permissions,
        options=options,
        match=match,
        demo=demo,
        make_exposure=make_exposure,
        exposure_permissions=exposure_permissions,
    )


def lazy_demo(ref: str) -> DemoHook:
    """The demo hook at ``ref`` (``"package.module:function"``, as in the registry), imported
    only when the demo runs: it pulls in a fake (moto, a local server) an audit never needs."""
    module, _, name = ref.partition(":")

    def demo(people: Sequence[Person], now: datetime) -> DemoPart:
        hook = cast(DemoHook, getattr(importlib.import_module(module), name))
        return hook(people, now)

    return demo
