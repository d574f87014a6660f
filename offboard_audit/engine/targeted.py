"""Targeted reconcile of one person (the HR webhook path).

1. The HR change from the event is decided (:func:`offboard_audit.core.people.decide_change`) and
   written to that one stored person (a person known by neither id nor email is added). The
   event's employee id decides who it is about: an email that belongs to somebody else is a
   conflict, and an event older than the person's last applied status change is superseded;
   either way nothing is written and no run starts (:class:`ChangeNotApplied`).
2. Every account source that implements ``TargetedSource.collect_for`` reads only what may
   belong to that person (AWS users by name/tag, an escaped LDAP filter, GCP bindings and keys
   of their emails); a source without it falls back to a full ``collect`` plus a detail pass.
3. The accounts are matched against *all* stored people (so ambiguity is still detected),
   only the links that include this person are kept and evaluated.
4. The findings are stored under a run of kind ``targeted`` without closing anybody else's
   findings: no (source, scope) is declared fresh, so nothing stored is resolved.

A failed source is recorded as failed and its stored data of this person is used, marked stale,
exactly as in the full pipeline. The HR circuit breaker still applies: with no stored HR read
at all, or with more webhook terminations since the last good HR read than
``policy.max_new_terminations`` of the workforce *and* ``policy.min_breaker_count``, the result
carries a breaker reason and the revocation engine must refuse to revoke.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.evaluate import EvalPolicy, evaluate
from offboard_audit.core.matching import match_all
from offboard_audit.core.people import ChangeDecision, ChangeOutcome, PersonChange, decide_change
from offboard_audit.core.protocols import AccountSource, HRSource, MatchSpec, SourceContext, TargetedSource
from offboard_audit.core.records import (
    Account,
    Credential,
    Link,
    Person,
    RunResult,
    SourceData,
    SourceRun,
    SourceStatus,
)
from offboard_audit.engine.pipeline import circuit_breaker_reason, exceeds, new_run_id
from offboard_audit.storage.store import Store, group_credentials
from offboard_audit.storage.webhook_store import WebhookStore

log = logging.getLogger(__name__)

RUN_KIND = "targeted"
FULL_HR_KINDS = ("audit", "hr_refresh")


@dataclass(frozen=True, slots=True)
class TargetedResult:
    run: RunResult
    person: Person
    # "targeted" when the source read only this person, "full" when it fell back to collect().
    read_modes: tuple[tuple[str, str], ...] = ()
    # What the HR event did to the stored person (None: reconciled as stored, no event).
    decision: ChangeDecision | None = None


@dataclass(frozen=True, slots=True)
class PersonUpdate:
    """The outcome of writing one HR event's change: everybody before and after, and the decision."""

    decision: ChangeDecision
    before: tuple[Person, ...]
    after: tuple[Person, ...]

    @property
    def applied(self) -> bool:
        return self.decision.outcome is ChangeOutcome.APPLY

    @property
    def person(self) -> Person | None:
        return self.decision.person


class ChangeNotApplied(Exception):
    """The HR event changed nothing: it was superseded, or it named somebody else's email."""

    def __init__(self, decision: ChangeDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


# Writing a person is conditional on their stored row; a row that keeps changing under us
# (another writer at the same moment) is retried this many times before giving up.
_WRITE_ATTEMPTS = 5


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _person_key(p: Person) -> tuple[str, str]:
    return (p.source, p.employee_id)


@dataclass
class _Read:
    source: SourceConfig
    mode: str = "targeted"
    data: SourceData | None = None
    error: str | None = None
    detail_error: str | None = None
    accounts: list[Account] | None = None
    credentials: list[Credential] | None = None
    stale_scopes: set[str] | None = None


class TargetedReconciler:
    """Reconciles one person. Source instances are built once and reused across runs.

    ``instances`` lets tests and the demo inject ready-made sources by name. The webhook
    store writes the single changed person and counts webhook terminations for the breaker.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        instances: Mapping[str, HRSource | AccountSource] | None = None,
        events: WebhookStore | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.ctx = ctx
        self._instances: dict[str, HRSource | AccountSource] = dict(instances or {})
        self.events = events or WebhookStore(store)

    def instance(self, source: SourceConfig) -> AccountSource:
        if source.name not in self._instances:
            self._instances[source.name] = source.plugin.make_source(source.options, self.ctx)
        inst = self._instances[source.name]
        assert isinstance(inst, AccountSource)
        return inst

    # --- HR -------------------------------------------------------------------------------

    def update_person(self, change: PersonChange, run_id: str) -> PersonUpdate:
        """Decide what ``change`` does (see :func:`offboard_audit.core.people.decide_change`) and, when
        it applies, write that one person (conditionally: a row changed meanwhile is re-read and
        decided again). A superseded or conflicting event writes nothing."""
        hr = self.config.hr_sources
        default_source = hr[0].name if hr else "webhook"
        for _ in range(_WRITE_ATTEMPTS):
            stored = self.store.load_person_states()
            before = tuple(s.person for s in stored)
            decision = decide_change(stored, change, default_source)
            if decision.outcome is not ChangeOutcome.APPLY:
                return PersonUpdate(decision, before, before)
            assert decision.after is not None
            person = decision.after.person
            # The event's employee id decides who it is about; an email never redirects it.
            assert person.employee_id == change.employee_id, (person.employee_id, change.employee_id)
            if self.store.save_person_state(decision.after, decision.before, run_id):
                after = (*(p for p in before if _person_key(p) != _person_key(person)), person)
                return PersonUpdate(decision, before, after)
            log.info(
                "person %s changed while an HR event was applied to them: deciding again", change.employee_id
            )
        raise RuntimeError(
            f"person {change.employee_id!r} kept changing while an HR event was applied; try again"
        )

    def _breaker(self, before: Sequence[Person], after: Sequence[Person], now: datetime) -> str | None:
        if not before:
            return "no HR read is stored yet: run a full reconcile before the webhook may revoke"
        policy = self.config.policy
        max_share, min_count = policy.max_new_terminations, policy.min_breaker_count
        reason = circuit_breaker_reason(before, after, [], max_share, now, min_count=min_count)
        if reason:
            return reason
        recent = self.events.terminations_since(self._last_hr_read())
        if exceeds(len(recent), len(after), max_share, min_count):
            return (
                f"{len(recent)} of {len(after)} people ({len(recent) / len(after):.1%}) terminated through "
                f"the HR webhook since the last good HR read, above policy.max_new_terminations = "
                f"{max_share:.1%} and policy.min_breaker_count = {min_count}"
            )
        return None

    def _last_hr_read(self) -> datetime | None:
        times = []
        for kind in FULL_HR_KINDS:
            row = self.store.latest_run(kind)
            if row is not None and row.get("status") in ("done", "degraded", "failed_sources"):
                times.append(row["started_at"])
        return max(times) if times else None

    # --- the run --------------------------------------------------------------------------

    def run(self, employee_id: str, now: datetime, change: PersonChange | None = None) -> TargetedResult:
        """Reconcile one person; with ``change`` the stored person is updated first.

        Raises :class:`ChangeNotApplied` (and writes nothing, starts no run) when the change is
        superseded by a newer one or names another person's email.
        """
        for src in self.config.account_sources:
            self.instance(src)  # a bad option is a config error before any I/O
        run_id = new_run_id(now)
        decision: ChangeDecision | None = None
        if change is not None:
            update = self.update_person(change, run_id)
            if not update.applied:
                raise ChangeNotApplied(update.decision)
            decision = update.decision
            before, people = list(update.before), list(update.after)
            assert update.person is not None
            person = update.person
        else:
            before = people = self.store.load_people()
            found = next((p for p in people if p.employee_id == employee_id), None)
            if found is None:
                raise ConfigError(f"no stored person with employee id {employee_id!r}")
            person = found
        self.store.start_run(run_id, now, RUN_KIND)
        try:
            return self._run(run_id, now, before, people, person, decision)
        except BaseException:
            self.store.finish_run(RunResult(run_id, now, max(now, datetime.now(UTC)), (), ()), "failed")
            raise

    def _run(
        self,
        run_id: str,
        now: datetime,
        before: Sequence[Person],
        people: Sequence[Person],
        person: Person,
        decision: ChangeDecision | None,
    ) -> TargetedResult:
        log.info(
            "targeted reconcile %s of %s/%s (%s)",
            run_id,
            person.source,
            person.employee_id,
            person.status.value,
        )
        breaker = self._breaker(before, people, now)

        reads = [self._read(src, person) for src in self.config.account_sources]
        specs: dict[str, MatchSpec] = {r.source.name: r.source.match for r in reads}
        accounts = [a for r in reads for a in (r.accounts or [])]
        key = _person_key(person)
        links = [
            link
            for link in match_all(accounts, specs, people, self.config.matching.username_rules)
            if any(_person_key(p) == key for p in link.people)
        ]
        self._detail(reads, links, now)
        credentials = group_credentials(c for r in reads for c in (r.credentials or []))
        mine = {(link.account.source, link.account.account_id) for link in links}
        credentials = {k: v for k, v in credentials.items() if k in mine}

        stale: set[tuple[str, str]] = set()
        for r in reads:
            if r.error is not None:
                stale.add((r.source.name, "*"))
            stale.update((r.source.name, s) for s in (r.stale_scopes or ()))
        policy = self.config.policy
        findings = evaluate(
            links,
            credentials,
            now,
            EvalPolicy.of(policy),
            self.store.list_exemptions(),
            self.store.finding_first_seen(),
            frozenset(stale),
        )
        # No (source, scope) is fresh: storing this person's findings closes nobody else's.
        self.store.save_findings(run_id, now, findings, set(), self.store.revoked_finding_ids())

        source_runs = tuple(self._source_run(r) for r in reads)
        finished = max(now, datetime.now(UTC))
        result = RunResult(run_id, now, finished, source_runs, tuple(findings), breaker)
        status = "done"
        if any(s.status is SourceStatus.FAILED or s.failed_scopes for s in source_runs):
            status = "failed_sources"
        self.store.finish_run(result, status)
        return TargetedResult(result, person, tuple((r.source.name, r.mode) for r in reads), decision)

    def _read(self, src: SourceConfig, person: Person) -> _Read:
        r = _Read(src)
        inst = self.instance(src)
        try:
            if isinstance(inst, TargetedSource):
                r.data = inst.collect_for(person)
            else:
                r.mode = "full"
                r.data = inst.collect()
        except ConfigError:
            raise
        except Exception as exc:
            r.error = _describe(exc)
            log.warning("targeted read of %s for %s failed: %s", src.name, person.employee_id, r.error)
        if r.data is None:
            snap = self.store.load_snapshot(src.name)
            r.accounts, r.credentials = list(snap.accounts), list(snap.credentials)
            r.stale_scopes = {a.scope for a in snap.accounts}
            return r
        failed = {f.scope for f in r.data.failed_scopes}
        r.accounts = [a for a in r.data.accounts if a.scope not in failed]
        r.credentials = [c for c in r.data.credentials if c.scope not in failed]
        r.stale_scopes = set(failed)
        if failed:
            snap = self.store.load_snapshot(src.name, failed)
            r.accounts.extend(snap.accounts)
            r.credentials.extend(snap.credentials)
        return r

    def _detail(self, reads: Sequence[_Read], links: Sequence[Link], now: datetime) -> None:
        """Detail pass, only for sources that fell back to a full collect (collect_for reads in full)."""
        for r in reads:
            if r.mode != "full" or r.data is None:
                continue
            wanted = [
                link.account
                for link in links
                if link.account.source == r.source.name
                and link.account.scope not in (r.stale_scopes or set())
                and (link.ambiguous or (link.person is not None and link.person.is_departed(now)))
            ]
            if not wanted:
                continue
            try:
                detail = self.instance(r.source).detail(wanted)
            except Exception as exc:
                r.detail_error = f"detail pass failed: {_describe(exc)}"
                log.warning("source %s: %s", r.source.name, r.detail_error)
                continue
            refined = {a.account_id: a for a in detail.accounts}
            replaced = {c.account_id for c in detail.credentials} | set(refined)
            assert r.accounts is not None and r.credentials is not None
            r.accounts = [refined.get(a.account_id, a) for a in r.accounts]
            r.credentials = [c for c in r.credentials if c.account_id not in replaced] + list(
                detail.credentials
            )

    @staticmethod
    def _source_run(r: _Read) -> SourceRun:
        counts = (("accounts", len(r.accounts or ())), ("credentials", len(r.credentials or ())))
        name, system = r.source.name, r.source.system
        if r.error is not None:
            return SourceRun(name, system, SourceStatus.FAILED, r.error, counts, stale=True)
        assert r.data is not None
        if r.detail_error is not None:
            return SourceRun(name, system, SourceStatus.FAILED, r.detail_error, counts, r.data.failed_scopes)
        failed = r.data.failed_scopes
        if failed:
            error = "; ".join(f"{f.scope}: {f.error}" for f in failed)
            return SourceRun(name, system, SourceStatus.FAILED, error, counts, failed, r.data.warnings, True)
        status = SourceStatus.DEGRADED if r.data.warnings else SourceStatus.OK
        return SourceRun(name, system, status, None, counts, (), r.data.warnings)
