"""The reconcile pipeline: who -> collect -> match -> detail -> evaluate -> store.

One pipeline, two scopes:

* **everybody** (:meth:`Pipeline.run`, CLI ``audit``, the daemon's schedule): every HR source is
  read and merged into the stored people (``engine/hr.py``) while every account source is
  collected (on a thread pool: they meet only at matching); snapshots are stored and findings
  whose scope was read and that were not found again close. A person an HR webhook event
  changes while the run reads is left to the next run (none of their findings is stored, closed
  or returned for revocation: the run judged them on the record loaded before the event).
* **one person** (:meth:`Pipeline.run_person`, the HR webhook): an event's change is written to
  that person first; each account source reads only what may be theirs
  (``TargetedSource.collect_for``) or, without it, collects everything; only the links that
  include the person are kept. No HR source is read, no snapshot stored and nobody's findings
  close (a partial read proves nothing about the rest).

Both settle and detail the same way (``engine/collect.py``): a source, a scope or a detail pass
that fails is recorded as failed, its last good data is used marked stale, and nothing of it
is resolved; an unreachable source is never taken as clean. Both record their run with the
status of :func:`offboard_audit.core.runs.run_status`. I/O happens in the sources and the
store; matching, evaluation and the finding lifecycle are pure.

What survives a crash: a run stores everything it stores (people, snapshots, findings) and its
own finished record (status, circuit breaker) in one transaction (``Store.atomic``), so a run
killed or blocked before that commit leaves nothing of itself behind but a ``running`` row; the
revocation engine reads the findings of finished runs only, with their breaker. While a run goes
on, a thread renews its lease on the run row; a run whose process is gone is marked ``abandoned``
(``storage/runs.py``: at once when that process ran on this host, else once the lease runs out),
and can no longer finish (the run's own record: ``engine/run_record.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.evaluate import EvalPolicy, evaluate
from offboard_audit.core.lifecycle import Scope, unproven_ids, update_findings
from offboard_audit.core.matching import match_all
from offboard_audit.core.people import ChangeDecision, PersonChange
from offboard_audit.core.protocols import AccountSource, HRSource, MatchSpec, SourceContext, SourceKind
from offboard_audit.core.records import Account, Finding, Link, Person
from offboard_audit.core.runs import RunResult
from offboard_audit.core.stored import RunKind
from offboard_audit.engine.collect import (
    AccountRead,
    Reporter,
    collect,
    detail_pass,
    group_credentials,
    keep_last_known,
    read_scopes,
    settle,
    source_run,
    unenriched,
)
from offboard_audit.engine.exposure import ExposureResult, ExposureStage, managers_of
from offboard_audit.engine.hr import (
    ChangeNotApplied,
    HRRound,
    HRState,
    PersonUpdate,
    hr_round,
    hr_source_run,
    read_hr,
    save_people,
    update_person,
    webhook_breaker,
)
from offboard_audit.engine.run_record import FaultPoints, finish, new_run_id, recorded
from offboard_audit.storage.store import Store

log = logging.getLogger(__name__)


def _quiet(_message: str) -> None:
    pass


def _key(p: Person) -> tuple[str, str]:
    return (p.source, p.employee_id)


@dataclass(frozen=True, slots=True)
class TargetedResult:
    run: RunResult
    person: Person
    # Per source: "targeted" when it read only this person, "full" when it fell back to collect().
    read_modes: tuple[tuple[str, str], ...] = ()
    # What the HR event did to the stored person (None: reconciled as stored, no event).
    decision: ChangeDecision | None = None


@dataclass(frozen=True)
class _Reconciled:
    reads: list[AccountRead]
    findings: list[Finding]
    stale: frozenset[Scope]
    # Stored findings this run cannot disprove (an optional enrichment failed): never closed.
    keep_open: frozenset[str] = frozenset()
    # Every account's link (the exposure stage matches actors with them).
    links: tuple[Link, ...] = ()


class Pipeline:
    """Runs reconciles for one config against one store. Sources are built once and reused."""

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        reporter: Reporter | None = None,
        max_workers: int = 4,
        instances: Mapping[str, HRSource | AccountSource] | None = None,
        faults: FaultPoints | None = None,
    ) -> None:
        """``instances`` injects ready-made sources by name (tests, the daemon's cached sources);
        ``faults``, the fault-test points (default: as the process environment names them)."""
        self.config = config
        self.store = store
        self.ctx = ctx
        self.report = reporter or _quiet
        self.max_workers = max_workers
        self._instances: dict[str, HRSource | AccountSource] = dict(instances or {})
        self._instances_lock = threading.Lock()  # the daemon runs reconciles on several threads
        self.faults = faults if faults is not None else FaultPoints.from_env()
        # The breaker reason that ``run(accept_hr=True)`` released, for the caller to report.
        self.accepted_breaker: str | None = None
        # What leavers could carry away (engine/exposure.py): sources with an exposure reader.
        self.exposure = ExposureStage(config, ctx, self.report)

    # --- building sources ----------------------------------------------------------------

    def instance(self, source: SourceConfig) -> HRSource | AccountSource:
        with self._instances_lock:
            if source.name not in self._instances:
                self._instances[source.name] = source.plugin.make_source(source.options, self.ctx)
            return self._instances[source.name]

    def _hr_source(self, source: SourceConfig) -> HRSource:
        instance = self.instance(source)
        assert isinstance(instance, HRSource)
        return instance

    def _account_source(self, source: SourceConfig) -> AccountSource:
        instance = self.instance(source)
        assert isinstance(instance, AccountSource)
        return instance

    def selected_account_sources(self, only: Sequence[str]) -> list[SourceConfig]:
        if not only:
            return list(self.config.account_sources)
        chosen = [self.config.source(name) for name in only]
        return [src for src in chosen if src.kind is SourceKind.ACCOUNTS]

    # --- everybody -----------------------------------------------------------------------

    def run(
        self, now: datetime, only: Sequence[str] = (), kind: str = RunKind.AUDIT, accept_hr: bool = False
    ) -> RunResult:
        """One full reconcile. ``only`` limits the account sources (HR is always read).

        When the HR read trips the circuit breaker it is *not* stored as the new baseline and
        nothing is resolved from it, so the breaker keeps tripping on later runs until an
        operator accepts the read (``accept_hr=True``, CLI ``audit --accept-hr``). Accepting
        releases the breaker for this run (``accepted_breaker`` says what it would have been);
        a failed HR source can never be accepted.
        """
        if not self.config.hr_sources:
            raise ConfigError("no HR source configured: add a [[sources]] table with type hr_csv or hr_json")
        sources = self.selected_account_sources(only)
        # Build every source first: a bad option is a config error (exit 2) before any I/O.
        for src in (*self.config.hr_sources, *sources):
            self.instance(src)
        run_id = new_run_id(now)
        self.accepted_breaker = None
        with recorded(self.store, run_id, now, kind):
            return self._run_everybody(run_id, now, sources, accept_hr)

    def _run_everybody(
        self, run_id: str, now: datetime, sources: Sequence[SourceConfig], accept_hr: bool
    ) -> RunResult:
        # The account sources are read while HR is read and merged: the two do not depend on
        # each other until matching, and each can take seconds (paged APIs). Only this thread
        # uses the store; the collecting threads talk to their systems only.
        reads = self._account_reads(sources)
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(reads)))) as pool:
            collecting = [pool.submit(collect, r, None, self.report) for r in reads]
            states = [
                read_hr(src, self._hr_source(src), self.store, self.report) for src in self.config.hr_sources
            ]
            hr = hr_round(states, self.store, self.config, now, run_id, accept_hr)
            collected = [future.result() for future in collecting]
        self.accepted_breaker = hr.accepted_breaker
        done = self._reconcile(collected, hr.people, now)
        exposed = self._exposure(sources, hr.states, hr.people, done, now, run_id)
        done = replace(done, findings=[*done.findings, *exposed.findings], stale=done.stale | exposed.stale)

        self.report("storing results")
        self.faults.hit("before-commit")
        with self.store.atomic():
            save_people(hr, self.store, run_id)
            read: set[Scope] = set()
            for r in done.reads:
                if r.data is None:
                    continue
                read |= read_scopes(r, self.store)  # before the snapshot changes the stored scopes
                self.store.save_snapshot(
                    r.name, r.fresh_accounts(), r.fresh_credentials(), run_id, r.stale_scopes
                )
            read |= exposed.read
            done = self._without_changed_meanwhile(hr, done)
            # Without a good (or accepted) HR read nothing can be called resolved.
            self._save_findings(run_id, now, done, read if hr.trusted else set())
            runs = [hr_source_run(s) for s in hr.states] + [source_run(r) for r in done.reads]
            runs += exposed.runs
            return finish(self.store, run_id, now, runs, done.findings, hr.breaker)

    def _without_changed_meanwhile(self, hr: HRRound, done: _Reconciled) -> _Reconciled:
        """``done`` less what it says about the people an HR webhook event changed (or recorded)
        while this run read: it judged them on the record it had loaded before the event (a
        rehired person as a leaver, a leaver as active), so it proves nothing about them. Their
        findings of this run are neither stored nor returned (so not revoked), and none of their
        stored findings closes; the next run judges them."""
        if not hr.trusted:
            # It closes and revokes nothing anyway; and a tripped read's people differ from the
            # stored ones on purpose (it is not stored), which is no webhook event.
            return done
        judged = {_key(p): p for p in hr.people}
        moved = {s.key for s in self.store.load_person_states() if judged.get(s.key) != s.person}
        if not moved:
            return done
        for key in sorted(moved):
            log.info("%s/%s changed during this run (an HR webhook event): left to the next run", *key)
        return replace(
            done,
            findings=[f for f in done.findings if f.person is None or _key(f.person) not in moved],
            keep_open=done.keep_open | self.store.finding_ids_of_people(moved),
        )

    # --- one person ----------------------------------------------------------------------

    def update_person(self, change: PersonChange, run_id: str) -> PersonUpdate:
        """Write one HR event's change to the stored person it names (see ``engine/hr.py``)."""
        hr = self.config.hr_sources
        return update_person(self.store, change, hr[0].name if hr else "webhook", run_id)

    def run_person(
        self, employee_id: str, now: datetime, change: PersonChange | None = None
    ) -> TargetedResult:
        """Reconcile one person; with ``change`` the stored person is updated first.

        Raises :class:`~offboard_audit.engine.hr.ChangeNotApplied` (and writes nothing, starts no
        run) when the change is superseded by a newer one or names another person's email.
        """
        sources = list(self.config.account_sources)
        for src in sources:
            self.instance(src)  # a bad option is a config error before any I/O
        run_id = new_run_id(now)
        decision: ChangeDecision | None = None
        if change is not None:
            update = self.update_person(change, run_id)
            if not update.applied or update.person is None:
                raise ChangeNotApplied(update.decision)
            decision = update.decision
            before, people, person = list(update.before), list(update.after), update.person
        else:
            before = people = [s.person for s in self.store.person_states_for(employee_id)]
            same = [p for p in people if p.employee_id == employee_id]
            # Several HR sources: an id can name one person in each. The job is about the one who
            # left (an HR refresh's new leaver), never an active namesake of another source.
            found = next((p for p in same if p.is_departed(now)), same[0] if same else None)
            if found is None:
                raise ConfigError(f"no stored person with employee id {employee_id!r}")
            person = found
        with recorded(self.store, run_id, now, RunKind.TARGETED):
            log.info("targeted reconcile %s of %s/%s (%s)", run_id, *_key(person), person.status.value)
            breaker = webhook_breaker(self.store, before, people, self.config, now)
            done = self._reconcile(self._collect(sources, person), people, now, person)
            self.faults.hit("before-commit")
            with self.store.atomic():
                # A read of one person proves nothing about anybody else: no scope counts as read,
                # so storing this person's findings closes none.
                self._save_findings(run_id, now, done, set())
                runs = [source_run(r) for r in done.reads]
                result = finish(self.store, run_id, now, runs, done.findings, breaker)
        modes = tuple((r.name, r.mode.value) for r in done.reads)
        return TargetedResult(result, person, modes, decision)

    # --- shared ----------------------------------------------------------------------------

    def _candidates(
        self, accounts: Sequence[Account], specs: Mapping[str, MatchSpec], person: Person
    ) -> list[Person]:
        """The stored people ``accounts`` can match, looked up by the identifiers matching
        compares (``storage/people.py``, ``person_keys``); everybody when a username rule is a
        template (those usernames are not indexed)."""
        if any(rule not in ("alias", "email_local") for rule in self.config.matching.username_rules):
            return self.store.load_people()
        keys: set[tuple[str, str]] = set()
        default = MatchSpec()
        for a in accounts:
            spec = specs.get(a.source, default)
            keys.update(("id", v) for attr in spec.employee_id_attributes for v in a.attribute_values(attr))
            emails = [*a.emails, *(v for attr in spec.email_attributes for v in a.attribute_values(attr))]
            username = a.username.strip()
            names = [username, username.rsplit("\\", 1)[-1], username.split("@", 1)[0]]
            if "@" in username:
                emails.append(username)
            keys.update(("email", e) for e in emails if "@" in e)
            keys.update((kind, n) for n in names if n for kind in ("alias", "local"))
        found = {_key(p): p for p in self.store.people_with_keys(keys)}
        found[_key(person)] = person
        return list(found.values())

    def _account_reads(self, sources: Sequence[SourceConfig]) -> list[AccountRead]:
        return [AccountRead(src, self._account_source(src)) for src in sources]

    def _collect(self, sources: Sequence[SourceConfig], person: Person | None) -> list[AccountRead]:
        """Read what may be ``person``'s from each source (on a pool when there are several)."""
        reads = self._account_reads(sources)
        if len(reads) <= 1:
            return [collect(r, person, self.report) for r in reads]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(reads))) as pool:
            return list(pool.map(lambda r: collect(r, person, self.report), reads))

    def _reconcile(
        self,
        reads: list[AccountRead],
        people: Sequence[Person],
        now: datetime,
        person: Person | None = None,
    ) -> _Reconciled:
        """Settle, match, detail and evaluate what was collected, for everybody or for ``person``."""
        for r in reads:
            settle(r, self.store)
        specs: dict[str, MatchSpec] = {r.name: r.source.match for r in reads}
        links = self._match(reads, specs, people, person)
        detail_pass(reads, links, now, self.store, self.report)
        if any(r.detail_failures for r in reads):
            # A failed detail read replaced its scope's fresh accounts with the stored (stale)
            # ones: match again, so that no finding rests on accounts the run could not confirm
            # (an unowned account of the failed bulk read) and the stored ones are still judged.
            links = self._match(reads, specs, people, person)
        keep_last_known(reads, self.store)
        credentials = group_credentials(c for r in reads for c in r.credentials)
        if person is not None:
            mine = {(link.account.source, link.account.account_id) for link in links}
            credentials = {k: v for k, v in credentials.items() if k in mine}
        stale = frozenset(pair for r in reads for pair in r.stale)
        findings = evaluate(
            links,
            credentials,
            now,
            EvalPolicy.of(self.config.policy),
            self.store.list_exemptions(),
            self.store.finding_first_seen(),
            stale,
        )
        return _Reconciled(reads, findings, stale, unproven_ids(*unenriched(reads)), tuple(links))

    def _match(
        self,
        reads: Sequence[AccountRead],
        specs: Mapping[str, MatchSpec],
        people: Sequence[Person],
        person: Person | None,
    ) -> list[Link]:
        """The links of the accounts ``reads`` hold now, for everybody or for ``person``."""
        accounts = [a for r in reads for a in r.accounts]
        if person is not None:
            # Everybody these accounts could match (so ambiguity is still seen), by index.
            people = self._candidates(accounts, specs, person)
        links = match_all(accounts, specs, people, self.config.matching.username_rules)
        if person is not None:
            # Matched against everybody (so ambiguity is still seen), kept for this person only.
            links = [link for link in links if any(_key(p) == _key(person) for p in link.people)]
        return links

    def _exposure(
        self,
        sources: Sequence[SourceConfig],
        hr_states: Sequence[HRState],
        people: Sequence[Person],
        done: _Reconciled,
        now: datetime,
        run_id: str,
    ) -> ExposureResult:
        """The exposure stage (engine/exposure.py); managers come from this run's HR reads."""
        managers = managers_of(p for s in hr_states if s.read is not None for p in s.read.people)
        return self.exposure.run(
            sources,
            done.links,
            people,
            managers,
            now,
            run_id,
            self.store,
            self.store.list_exemptions(),
            self.store.finding_first_seen(),
        )

    def _save_findings(self, run_id: str, now: datetime, done: _Reconciled, read: set[Scope]) -> None:
        changes = update_findings(
            self.store.stored_findings(),
            done.findings,
            read,
            self.store.revoked_finding_ids(),
            done.stale,
            done.keep_open,
        )
        self.store.save_findings(run_id, now, changes)
        self.faults.hit("findings-stored")


def run_audit(
    config: Config,
    store: Store,
    now: datetime,
    only: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    clients: Mapping[str, object] | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Convenience wrapper: build a pipeline for ``config`` and run one audit."""
    ctx = SourceContext(base_dir=config.base_dir, env=dict(env or {}), clients=dict(clients or {}))
    return Pipeline(config, store, ctx, reporter).run(now, only)
