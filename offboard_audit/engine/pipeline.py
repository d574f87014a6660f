"""The audit pipeline: collect -> match -> detail -> evaluate -> store.

I/O happens in ``collect`` (connectors) and in the store; matching and evaluation are pure.
A source that fails is recorded as failed, its last good data is used marked stale, and
nothing of it is resolved: an unreachable source is never taken as clean.

An HR read is merged into the stored people (:func:`offboard_audit.core.people.merge_hr_read`):
only what changed in the export since its previous read changes a person, terminations are
sticky, a bad row keeps the last good record. The HR circuit breaker
(:func:`circuit_breaker_reason`) is decided from the HR read alone, before any account source
is read; a read that trips it is not stored, removes nobody and resolves nothing until an
operator accepts it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.evaluate import EvalPolicy, evaluate
from offboard_audit.core.matching import match_all
from offboard_audit.core.people import HRMerge, PersonState, merge_hr_read
from offboard_audit.core.protocols import AccountSource, HRSource, MatchSpec, SourceContext
from offboard_audit.core.records import (
    Account,
    Credential,
    Finding,
    HRRead,
    Link,
    Person,
    RunResult,
    ScopeFailure,
    SourceData,
    SourceRun,
    SourceStatus,
)
from offboard_audit.storage.store import Store, group_credentials

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _quiet(_message: str) -> None:
    pass


def _ids(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _HRState:
    source: SourceConfig
    read: HRRead | None = None
    error: str | None = None
    people: tuple[Person, ...] = ()
    # The read merged into the stored people of this source (a good read only).
    merge: HRMerge | None = None
    before: tuple[PersonState, ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass
class _AccountState:
    source: SourceConfig
    instance: AccountSource | None = None
    data: SourceData | None = None
    error: str | None = None
    accounts: list[Account] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    stale_scopes: set[str] = field(default_factory=set)
    fresh_scopes: set[str] = field(default_factory=set)
    # Scopes whose detail pass failed: their bulk data was dropped for the stored (stale) data.
    detail_failures: list[ScopeFailure] = field(default_factory=list)
    # Failed scopes (or the whole source, "*") for which nothing was stored before.
    no_earlier_data: set[str] = field(default_factory=set)

    @property
    def failed(self) -> bool:
        return self.error is not None or bool(self.detail_failures)


DEFAULT_MIN_BREAKER_COUNT = 3


def exceeds(count: int, total: int, max_share: float, min_count: int) -> bool:
    """Whether ``count`` of ``total`` trips the breaker: above ``max_share`` of ``total`` *and*
    above ``min_count`` (so one termination in a small organisation is not a broken feed)."""
    return total > 0 and count > min_count and count / total > max_share


def circuit_breaker_reason(
    previous: Sequence[Person],
    current: Sequence[Person],
    hr_failed: Sequence[str],
    max_share: float,
    now: datetime,
    *,
    min_count: int = DEFAULT_MIN_BREAKER_COUNT,
    missing: int = 0,
    previous_read: int = 0,
    max_missing: float = 0.05,
) -> str | None:
    """Why revocations must not run on this HR read, or None when it looks sane (pure).

    Trips when an HR source failed, when the read is empty, when the people newly departed
    since the last good read exceed both ``max_share`` of the workforce and ``min_count``, or
    when the people of the last good read (``previous_read`` of them) missing from this one
    exceed both ``max_missing`` and ``min_count``. The first read is the baseline.
    """
    if hr_failed:
        return f"HR source failed: {', '.join(hr_failed)}"
    if not current:
        return "HR read returned nobody"
    reasons: list[str] = []
    if previous:
        before = {(p.source, p.employee_id): p for p in previous}
        newly = 0
        for p in current:
            if not p.is_departed(now):
                continue
            old = before.get((p.source, p.employee_id))
            if old is None or not old.is_departed(now):
                newly += 1
        if exceeds(newly, len(current), max_share, min_count):
            reasons.append(
                f"{newly} of {len(current)} people ({newly / len(current):.1%}) newly terminated since the "
                f"last good HR read, above policy.max_new_terminations = {max_share:.1%} "
                f"and policy.min_breaker_count = {min_count}"
            )
    if exceeds(missing, previous_read, max_missing, min_count):
        reasons.append(
            f"{missing} of the {previous_read} people in the last good HR read ({missing / previous_read:.1%}) "
            f"are missing from this one, above policy.max_missing_people = {max_missing:.1%} "
            f"and policy.min_breaker_count = {min_count}"
        )
    return "; ".join(reasons) or None


class Pipeline:
    """Runs audits for one config against one store. Sources are built once and reused."""

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        reporter: Reporter | None = None,
        max_workers: int = 4,
        instances: Mapping[str, HRSource | AccountSource] | None = None,
    ) -> None:
        """``instances`` injects ready-made sources by name (tests, the webhook's cached sources)."""
        self.config = config
        self.store = store
        self.ctx = ctx
        self.report = reporter or _quiet
        self.max_workers = max_workers
        self._instances: dict[str, HRSource | AccountSource] = dict(instances or {})
        # The breaker reason that ``run(accept_hr=True)`` released, for the caller to report.
        self.accepted_breaker: str | None = None

    # --- building sources ----------------------------------------------------------

    def instance(self, source: SourceConfig) -> HRSource | AccountSource:
        if source.name not in self._instances:
            self._instances[source.name] = source.plugin.make_source(source.options, self.ctx)
        return self._instances[source.name]

    def selected_account_sources(self, only: Sequence[str]) -> list[SourceConfig]:
        if not only:
            return list(self.config.account_sources)
        chosen = []
        for name in only:
            src = self.config.source(name)
            if src.kind.value == "accounts":
                chosen.append(src)
        return chosen

    # --- the run ---------------------------------------------------------------------

    def run(
        self, now: datetime, only: Sequence[str] = (), kind: str = "audit", accept_hr: bool = False
    ) -> RunResult:
        """One full audit. ``only`` limits the account sources (HR is always read).

        When the HR read trips the circuit breaker it is *not* stored as the new baseline and
        nothing is resolved from it, so the breaker keeps tripping on later runs until an
        operator accepts the read (``accept_hr=True``, CLI ``audit --accept-hr``). Accepting
        releases the breaker for this run (``accepted_breaker`` says what it would have been);
        a failed HR source can never be accepted.
        """
        if not self.config.hr_sources:
            raise ConfigError("no HR source configured: add a [[sources]] table with type hr_csv or hr_json")
        account_sources = self.selected_account_sources(only)
        # Build every source first: a bad option is a config error (exit 2) before any I/O.
        for src in (*self.config.hr_sources, *account_sources):
            self.instance(src)

        run_id = new_run_id(now)
        self.accepted_breaker = None
        self.store.start_run(run_id, now, kind)
        try:
            return self._run(run_id, now, account_sources, accept_hr)
        except BaseException:
            self.store.finish_run(RunResult(run_id, now, datetime.now(UTC), (), ()), status="failed")
            raise

    def _run(
        self, run_id: str, now: datetime, account_sources: Sequence[SourceConfig], accept_hr: bool
    ) -> RunResult:
        hr_states = [self._read_hr(src) for src in self.config.hr_sources]
        stored = self.store.load_person_states()
        for hs in hr_states:
            if hs.read is not None:
                name = hs.source.name
                hs.before = tuple(s for s in stored if s.person.source == name)
                hs.merge = merge_hr_read(name, hs.before, hs.read, now, f"hr:{name} run {run_id}")
                hs.people = hs.merge.people
        people = self._merge_people(hr_states)
        hr_failed = [s.source.name for s in hr_states if s.error is not None]

        policy = self.config.policy
        merges = [hs.merge for hs in hr_states if hs.merge is not None]
        breaker = circuit_breaker_reason(
            [s.person for s in stored],
            people,
            hr_failed,
            policy.max_new_terminations,
            now,
            min_count=policy.min_breaker_count,
            missing=sum(m.missing for m in merges),
            previous_read=sum(m.previous_read for m in merges),
            max_missing=policy.max_missing_people,
        )
        if breaker is not None and accept_hr and not hr_failed:
            self.accepted_breaker = breaker
            breaker = None
            for hs in hr_states:
                if hs.merge is not None:
                    hs.notes.append(
                        f"circuit breaker released by --accept-hr for this run: {self.accepted_breaker}"
                    )
        keep_baseline = breaker is not None and not hr_failed
        if breaker is not None and keep_baseline:
            breaker += (
                "; the previous HR read stays the baseline until this one is accepted "
                "(offboard-audit audit --accept-hr)"
            )
            # Not accepted: nobody leaves the stored people on the word of this read.
            people = people + [s.person for m in merges for s in m.dropped]

        states = self._collect_all(account_sources)
        for st in states:
            self._settle(st)

        specs: dict[str, MatchSpec] = {st.source.name: st.source.match for st in states}
        all_accounts = [a for st in states for a in st.accounts]
        links = match_all(all_accounts, specs, people, self.config.matching.username_rules)

        self._detail_pass(states, links, now)
        credentials = group_credentials(c for st in states for c in st.credentials)

        stale: set[tuple[str, str]] = set()
        for st in states:
            if st.error is not None:
                stale.add((st.source.name, "*"))
            stale.update((st.source.name, scope) for scope in st.stale_scopes)

        findings = evaluate(
            links,
            credentials,
            now,
            EvalPolicy.of(policy),
            self.store.list_exemptions(),
            self.store.finding_first_seen(),
            frozenset(stale),
        )

        # Without a good (or accepted) HR read nothing can be called resolved.
        trusted_hr = not hr_failed and not keep_baseline
        self._save(run_id, now, hr_states, states, findings, trusted_hr, save_people=not keep_baseline)

        source_runs = [self._hr_source_run(s) for s in hr_states] + [
            self._account_source_run(s) for s in states
        ]
        finished = datetime.now(UTC)
        if finished < now:
            finished = now
        result = RunResult(run_id, now, finished, tuple(source_runs), tuple(findings), breaker)
        status = "done"
        if any(s.status is SourceStatus.FAILED or s.failed_scopes for s in source_runs):
            status = "failed_sources"
        elif any(s.status is SourceStatus.DEGRADED for s in source_runs):
            status = "degraded"
        self.store.finish_run(result, status)
        return result

    # --- HR ----------------------------------------------------------------------------

    def _read_hr(self, src: SourceConfig) -> _HRState:
        state = _HRState(src)
        self.report(f"reading HR source {src.name}")
        instance = self.instance(src)
        assert isinstance(instance, HRSource)
        try:
            state.read = instance.read_people()
            state.people = state.read.people
        except ConfigError:
            raise
        except Exception as exc:  # any failure of a source is recorded, never fatal, never "empty"
            state.error = _describe(exc) if not isinstance(exc, SourceError) else str(exc)
            state.people = tuple(self.store.load_people(src.name))
            log.warning("HR source %s failed: %s", src.name, state.error)
        return state

    @staticmethod
    def _merge_people(states: Iterable[_HRState]) -> list[Person]:
        return [p for s in states for p in s.people]

    def _hr_source_run(self, s: _HRState) -> SourceRun:
        if s.error is not None:
            return SourceRun(
                s.source.name,
                s.source.system,
                SourceStatus.FAILED,
                s.error,
                (("people", len(s.people)),),
                stale=True,
            )
        assert s.read is not None and s.merge is not None
        problems = s.read.problems
        m = s.merge
        counts: list[tuple[str, int]] = [("people", len(s.read.people)), ("bad_rows", len(problems))]
        notes = [p.message for p in problems]
        if m.missing:
            counts.append(("missing", m.missing))
        if m.kept_terminated:
            counts.append(("kept_terminated", len(m.kept_terminated)))
            notes.append(
                f"{len(m.kept_terminated)} terminated people missing from this read were kept as "
                f"terminated (terminations are sticky): {_ids(m.kept_terminated)}"
            )
        if m.kept_bad_rows:
            notes.append(f"kept the last good record of {_ids(m.kept_bad_rows)} (their rows are bad)")
        notes.extend(s.notes)
        return SourceRun(
            s.source.name,
            s.source.system,
            SourceStatus.DEGRADED if problems else SourceStatus.OK,
            None,
            tuple(counts),
            warnings=tuple(notes),
        )

    # --- account sources ---------------------------------------------------------------

    def _collect_one(self, st: _AccountState) -> _AccountState:
        instance = self.instance(st.source)
        assert isinstance(instance, AccountSource)
        st.instance = instance
        self.report(f"collecting {st.source.name} ({st.source.system})")
        try:
            st.data = instance.collect()
        except ConfigError:
            raise
        except Exception as exc:
            st.error = str(exc) if isinstance(exc, SourceError) else _describe(exc)
            log.warning("source %s failed: %s", st.source.name, st.error)
        return st

    def _collect_all(self, sources: Sequence[SourceConfig]) -> list[_AccountState]:
        states = [_AccountState(src) for src in sources]
        if len(states) <= 1:
            return [self._collect_one(st) for st in states]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(states))) as pool:
            return list(pool.map(self._collect_one, states))

    def _settle(self, st: _AccountState) -> None:
        """Decide which data of a source is fresh and fill the gaps with stale stored data."""
        name = st.source.name
        if st.data is None:
            snap = self.store.load_snapshot(name)
            st.accounts = list(snap.accounts)
            st.credentials = list(snap.credentials)
            st.stale_scopes = {a.scope for a in snap.accounts}
            if not snap.accounts:
                st.no_earlier_data.add("*")
            return
        failed = {f.scope for f in st.data.failed_scopes}
        st.accounts = [a for a in st.data.accounts if a.scope not in failed]
        st.credentials = [c for c in st.data.credentials if c.scope not in failed]
        if failed:
            snap = self.store.load_snapshot(name, failed)
            st.accounts.extend(snap.accounts)
            st.credentials.extend(snap.credentials)
            st.stale_scopes = set(failed)
            st.no_earlier_data |= failed - {a.scope for a in snap.accounts}
        seen_scopes = (
            set(st.data.scopes) | {a.scope for a in st.data.accounts} | self.store.stored_scopes(name)
        )
        if not seen_scopes:
            seen_scopes = {""}
        st.fresh_scopes = seen_scopes - failed

    def _detail_pass(self, states: Sequence[_AccountState], links: Sequence[Link], now: datetime) -> None:
        """Ask each source for detail on the accounts of departed or ambiguous people only.

        A detail read that fails (the call raises, or the source reports a failed scope) fails
        that scope exactly like a failed bulk read: its fresh data is dropped for the stored,
        stale data, and nothing in it is resolved or planned. Bulk data without its detail is
        incomplete (placeholder ids, missing keys), never "clean".
        """
        wanted: dict[str, list[Account]] = {}
        for link in links:
            person = link.person
            if link.ambiguous or (person is not None and person.is_departed(now)):
                wanted.setdefault(link.account.source, []).append(link.account)
        for st in states:
            accounts = [a for a in wanted.get(st.source.name, []) if a.scope not in st.stale_scopes]
            if not accounts or st.instance is None or st.data is None:
                continue
            self.report(f"detail pass on {len(accounts)} accounts in {st.source.name}")
            try:
                detail = st.instance.detail(accounts)
            except Exception as exc:
                error = f"detail pass failed: {exc if isinstance(exc, SourceError) else _describe(exc)}"
                log.warning("source %s: %s", st.source.name, error)
                self._fail_scopes(
                    st, [ScopeFailure(scope, error) for scope in sorted({a.scope for a in accounts})]
                )
                continue
            self._merge_detail(st, detail)

    def _merge_detail(self, st: _AccountState, detail: SourceData) -> None:
        failed = {f.scope for f in detail.failed_scopes}
        refined = {a.account_id: a for a in detail.accounts if a.scope not in failed}
        replaced = {c.account_id for c in detail.credentials if c.scope not in failed} | set(refined)
        if refined:
            st.accounts = [refined.get(a.account_id, a) for a in st.accounts]
        if replaced:
            st.credentials = [c for c in st.credentials if c.account_id not in replaced]
            st.credentials.extend(c for c in detail.credentials if c.scope not in failed)
        if detail.failed_scopes:
            self._fail_scopes(
                st, [ScopeFailure(f.scope, f"detail pass failed: {f.error}") for f in detail.failed_scopes]
            )

    def _fail_scopes(self, st: _AccountState, failures: Sequence[ScopeFailure]) -> None:
        """Replace the fresh data of ``failures``' scopes with the stored data, marked stale."""
        scopes = {f.scope for f in failures} - st.stale_scopes
        if not scopes:
            return
        st.accounts = [a for a in st.accounts if a.scope not in scopes]
        st.credentials = [c for c in st.credentials if c.scope not in scopes]
        snap = self.store.load_snapshot(st.source.name, scopes)
        st.accounts.extend(snap.accounts)
        st.credentials.extend(snap.credentials)
        st.stale_scopes |= scopes
        st.fresh_scopes -= scopes
        st.no_earlier_data |= scopes - {a.scope for a in snap.accounts}
        st.detail_failures.extend(f for f in failures if f.scope in scopes)

    def _account_source_run(self, st: _AccountState) -> SourceRun:
        counts = (
            ("accounts", len(st.accounts)),
            ("credentials", len(st.credentials)),
        )
        if st.error is not None:
            error = st.error
            if "*" in st.no_earlier_data:
                error += " (failed, no earlier data: this source contributes no findings)"
            return SourceRun(st.source.name, st.source.system, SourceStatus.FAILED, error, counts, stale=True)
        assert st.data is not None
        failed = tuple(
            ScopeFailure(f.scope, f.error + (" (no earlier data)" if f.scope in st.no_earlier_data else ""))
            for f in (*st.data.failed_scopes, *st.detail_failures)
        )
        if failed:
            return SourceRun(
                st.source.name,
                st.source.system,
                SourceStatus.FAILED,
                "; ".join(f"{f.scope or st.source.name}: {f.error}" for f in failed),
                counts,
                failed,
                st.data.warnings,
                stale=True,
            )
        status = SourceStatus.DEGRADED if st.data.warnings else SourceStatus.OK
        return SourceRun(st.source.name, st.source.system, status, None, counts, (), st.data.warnings)

    # --- storing -----------------------------------------------------------------------

    def _save(
        self,
        run_id: str,
        now: datetime,
        hr_states: Sequence[_HRState],
        states: Sequence[_AccountState],
        findings: Sequence[Finding],
        trusted_hr: bool,
        save_people: bool = True,
    ) -> None:
        self.report("storing results")
        for hs in hr_states:
            if hs.merge is not None and save_people:
                wrote = self.store.save_person_states(hs.source.name, hs.before, hs.merge.states, run_id)
                if wrote.conflicts:
                    hs.notes.append(
                        f"left {_ids(wrote.conflicts)} as an HR webhook event changed them during this read"
                    )
        fresh: set[tuple[str, str]] = set()
        for st in states:
            if st.data is None:
                continue
            fresh_accounts = [a for a in st.accounts if a.scope not in st.stale_scopes]
            fresh_creds = [c for c in st.credentials if c.scope not in st.stale_scopes]
            self.store.save_snapshot(st.source.name, fresh_accounts, fresh_creds, run_id, st.stale_scopes)
            fresh.update((st.source.name, scope) for scope in st.fresh_scopes)
        if not trusted_hr:
            fresh = set()
        self.store.save_findings(run_id, now, findings, fresh, self.store.revoked_finding_ids())


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
