"""The wiring of a connector's plugin factories.

Every account connector builds its source, its revoker and (if it has one) its exposure reader
from the same pair: the settings parsed from the ``[[sources]]`` table and the clients, injected
through ``ctx.clients[<source name>]`` or built on first use. Each connector writes that one
``wire`` function; :func:`wired` turns it and a constructor into a factory, so the three factories
cannot drift apart in which options they read or which injected client they take.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar, cast

from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import DemoPart, SourceContext
from offboard_audit.core.records import Person

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")

DemoHook = Callable[[Sequence[Person], datetime], DemoPart]


def wired(
    wire: Callable[[SourceOptions, SourceContext], tuple[S, C]],
    build: Callable[[S, C], T],
) -> Callable[[SourceOptions, SourceContext], T]:
    """A plugin factory: ``wire`` (settings and clients from the config table), then ``build``."""

    def make(options: SourceOptions, ctx: SourceContext) -> T:
        settings, clients = wire(options, ctx)
        return build(settings, clients)

    return make


def lazy_demo(ref: str) -> DemoHook:
    """The demo hook at ``ref`` (``"package.module:function"``, as in the registry), imported
    only when the demo runs: it pulls in a fake (moto, a local server) an audit never needs."""
    module, _, name = ref.partition(":")

    def demo(people: Sequence[Person], now: datetime) -> DemoPart:
        hook = cast(DemoHook, getattr(importlib.import_module(module), name))
        return hook(people, now)

    return demo
