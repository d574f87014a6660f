"""The exposure stage of a full run: read the ledger's sources, match actors, evaluate.

For every account source whose plugin builds an exposure reader (``ConnectorPlugin.make_exposure``,
e.g. the ``aws_iam`` source with a ``[sources.exposure]`` table):

1. **Events**, incrementally: each stream resumes after its stored checkpoint; every batch (one
   log object) is stored with its new checkpoint in one transaction before the next is read, so
   memory does not grow with the number of events and a crash neither skips nor doubles a batch.
   A batch that failed (a malformed object) fails the exposure scope of its account: the stream
   stops there (its checkpoint stays before the object) and nothing in that scope is resolved.
2. **Actors**: every distinct actor of the ledger is matched to people like an account
   (``core/exposure_rules.py``); only the departed people's events are loaded.
3. **Inventory**: the source lists its secrets and keys and checks the objects those events
   name; a scope that failed keeps its stored inventory, read back stale.
4. **Rules**: ``evaluate_exposure`` (pure) gives the findings.

What the pipeline gets back: the findings, the (source, exposure scope) pairs read well enough to
close findings in, the stale ones, and one :class:`SourceRun` per exposure reader (named
``<source>/exposure``). Ledger writes (events, checkpoints, inventory) are committed as they are
read, outside the run's transaction: they are facts about the systems, true whatever becomes of
the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.errors import OffboardError
from offboard_audit.core.exposure import (
    SECRET_KINDS,
    InventoryRead,
    ObjectRef,
    base_scope,
    exposure_scope,
)
from offboard_audit.core.exposure_actors import ActorIndex, departed_actors, link_actors, person_key
from offboard_audit.core.exposure_rules import (
    ExposureInputs,
    SecretIndex,
    evaluate_exposure,
    persistence_refs,
)
from offboard_audit.core.protocols import ExposureSource, SourceContext
from offboard_audit.core.records import Exemption, Finding, Link, Person, ScopeFailure
from offboard_audit.core.runs import SourceRun, SourceStatus
from offboard_audit.storage.store import Store

log = logging.getLogger(__name__)

Scope = tuple[str, str]


@dataclass(frozen=True)
class ExposureResult:
    """What the exposure stage of one run found (see the module docstring)."""

    findings: tuple[Finding, ...] = ()
    read: frozenset[Scope] = frozenset()
    stale: frozenset[Scope] = frozenset()
    runs: tuple[SourceRun, ...] = ()


@dataclass
class _Counts:
    objects: int = 0
    bytes: int = 0
    events_seen: int = 0
    new_events: int = 0
    failures: dict[str, ScopeFailure] = field(default_factory=dict)
    scopes: set[str] = field(default_factory=set)


class ExposureStage:
    """Builds each source's exposure reader once (they keep their clients) and runs the stage."""

    def __init__(self, config: Config, ctx: SourceContext, report: Callable[[str], None]) -> None:
        self.config = config
        self.ctx = ctx
        self.report = report
        self._readers: dict[str, ExposureSource | None] = {}

    def reader(self, source: SourceConfig) -> ExposureSource | None:
        """The exposure reader of ``source``, or None when its plugin or config has none."""
        if source.name not in self._readers:
            make = source.plugin.make_exposure
            self._readers[source.name] = make(source.options, self.ctx) if make is not None else None
        return self._readers[source.name]

    def run(
        self,
        sources: Sequence[SourceConfig],
        links: Sequence[Link],
        people: Sequence[Person],
        managers: Mapping[tuple[str, str], str],
        now: datetime,
        run_id: str,
        store: Store,
        exemptions: Sequence[Exemption] = (),
        first_seen: Mapping[str, datetime] | None = None,
    ) -> ExposureResult:
        """The stage for every source of ``sources`` that has an exposure reader."""
        readers = [(s, r) for s in sources if (r := self.reader(s)) is not None]
        if not readers:
            return ExposureResult()
        with_managers = [_with_manager(p, managers) for p in people]
        index = ActorIndex.build(links, with_managers, self.config.matching.username_rules)
        findings: list[Finding] = []
        read: set[Scope] = set()
        stale: set[Scope] = set()
        runs: list[SourceRun] = []
        for source, reader in readers:
            result = read_one(
                source.name, reader, store, index, now, run_id, self.report, exemptions, first_seen
            )
            findings.extend(result.findings)
            read |= result.read
            stale |= result.stale
            runs.extend(result.runs)
        return ExposureResult(tuple(findings), frozenset(read), frozenset(stale), tuple(runs))


def _with_manager(p: Person, managers: Mapping[tuple[str, str], str]) -> Person:
    manager = managers.get(person_key(p))
    return replace(p, manager_email=manager) if manager and not p.manager_email else p


def managers_of(people: Iterable[Person]) -> dict[tuple[str, str], str]:
    """The ``manager_email`` of everybody an HR read gave one, by (source, employee id)."""
    return {person_key(p): p.manager_email for p in people if p.manager_email}


def read_one(
    name: str,
    reader: ExposureSource,
    store: Store,
    index: ActorIndex,
    now: datetime,
    run_id: str,
    report: Callable[[str], None],
    exemptions: Sequence[Exemption] = (),
    first_seen: Mapping[str, datetime] | None = None,
) -> ExposureResult:
    """Events, actors, inventory and rules for one exposure reader."""
    run_name = f"{name}/exposure"
    counts = _Counts()
    total_failure: str | None = None
    report(f"{run_name}: reading events")
    try:
        for batch in reader.read_events(store.exposure_checkpoints(name), now):
            counts.scopes.add(batch.scope)
            if batch.failure is not None:
                scope = exposure_scope(batch.scope)
                counts.failures[scope] = ScopeFailure(scope, batch.failure.error)
                log.warning("%s: %s", run_name, batch.failure.error)
                continue
            counts.new_events += store.save_batch(name, batch, now)
            counts.objects += batch.objects_read
            counts.bytes += batch.bytes_read
            counts.events_seen += batch.events_seen
    except OffboardError as exc:
        total_failure = f"reading events: {exc}"

    actors = store.exposure_actors(name)
    links = link_actors(name, reader.system, actors, index)
    leavers = departed_actors(links, now)
    events = store.exposure_events(name, leavers.keys())
    wanted = [e.target for e in events]
    refs = persistence_refs(events, leavers)

    inventory = InventoryRead()
    if total_failure is None:
        report(f"{run_name}: reading the inventory ({len(wanted)} objects of leavers)")
        try:
            inventory = reader.inventory(_unique(wanted))
        except OffboardError as exc:
            total_failure = f"reading the inventory: {exc}"
    if total_failure is None:
        # A scope whose events failed keeps its stored inventory too: its findings are judged
        # on the data they were made from (stale), so a rotation seen now resolves nothing there.
        unread = tuple(ScopeFailure(base_scope(s), f.error) for s, f in counts.failures.items())
        store.save_inventory(name, replace(inventory, failed_scopes=inventory.failed_scopes + unread), run_id)
        for f in inventory.failed_scopes:
            scope = exposure_scope(f.scope)
            counts.failures.setdefault(scope, ScopeFailure(scope, f.error))

    failed = set(counts.failures)
    stale: set[Scope] = {(name, s) for s in failed}
    if total_failure is not None:
        stale.add((name, "*"))
    read: set[Scope] = set()
    if total_failure is None:
        for scope in (*inventory.scopes, *counts.scopes):
            es = exposure_scope(scope)
            if es not in failed:
                read.add((name, es))

    secrets = SecretIndex(store.exposure_secrets(name))
    objects = store.exposure_objects(name, refs)
    inputs = ExposureInputs(
        source=name,
        system=reader.system,
        events=events,
        links=links,
        secrets=secrets,
        objects=objects,
        index=index,
        stale_scopes=frozenset(stale),
    )
    findings, unlisted = _mark_unlisted(evaluate_exposure(inputs, now, exemptions, first_seen), inventory)
    warnings = inventory.warnings
    if unlisted:
        warnings += (
            f"{unlisted} secret finding(s) are judged on the inventory of an earlier run: their "
            "kind or region is not inventoried now (stale, never resolved)",
        )
    status = SourceStatus.FAILED if total_failure is not None else SourceStatus.OK
    run = SourceRun(
        name=run_name,
        system=reader.system,
        status=status,
        error=total_failure,
        counts=(
            ("log_objects", counts.objects),
            ("log_bytes", counts.bytes),
            ("events_read", counts.events_seen),
            ("events_new", counts.new_events),
            ("actors", len(actors)),
            ("departed_actors", len(leavers)),
            ("secrets", len(secrets.by_key)),
            ("findings", len(findings)),
        ),
        failed_scopes=tuple(counts.failures[k] for k in sorted(counts.failures)),
        warnings=warnings,
        stale=total_failure is not None,
    )
    # A wholly failed reader only marks its own findings stale; the pipeline gets no "*" (that
    # would hold back the account findings of the same source).
    pipeline_stale = frozenset(s for s in stale if s[1] != "*")
    return ExposureResult(tuple(findings), frozenset(read), pipeline_stale, (run,))


def _mark_unlisted(findings: Sequence[Finding], inventory: InventoryRead) -> tuple[list[Finding], int]:
    """The findings, those about a secret this run's inventory did not list marked stale (a
    service or region no longer inventoried: the stored state they are judged on is old), and
    how many those are."""
    out: list[Finding] = []
    unlisted = 0
    for f in findings:
        c = f.credential
        if c is not None and c.kind in SECRET_KINDS and not inventory.lists(c.kind, c.credential_id):
            unlisted += 1
            f = replace(f, stale=True)
        out.append(f)
    return out, unlisted


def _unique(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    return list(dict.fromkeys(refs))
