"""Who a run is about: the HR side of a reconcile.

A full run reads every HR source and merges each read into the stored people
(:func:`offboard_audit.core.people.merge_hr_read`): only what changed in the export since its
previous read changes a person, terminations are sticky, a bad row keeps the last good record.
The HR circuit breaker (:func:`offboard_audit.core.people.circuit_breaker_reason`) is decided
from the HR read alone; a read that trips it is not stored, removes nobody and resolves nothing
until an operator accepts it.

A run about one person (the HR webhook) reads no HR source: the event's change is decided
against the stored people (:func:`offboard_audit.core.people.decide_change`) and written to that
one person; its breaker also counts the webhook terminations since the last good HR read
(:func:`offboard_audit.core.people.webhook_breaker_reason`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.people import (
    NO_HR_READ,
    ChangeDecision,
    ChangeOutcome,
    HRMerge,
    PersonChange,
    circuit_breaker_reason,
    decide_change,
    merge_hr_read,
    webhook_breaker_reason,
)
from offboard_audit.core.protocols import HRSource
from offboard_audit.core.records import HRRead, Person
from offboard_audit.core.runs import SourceRun, SourceStatus
from offboard_audit.core.stored import PersonState, RunKind
from offboard_audit.engine.collect import Reporter, describe
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

log = logging.getLogger(__name__)

# Runs that read every HR source (a targeted run reads none).
FULL_HR_KINDS = (RunKind.AUDIT, RunKind.HR_REFRESH)
# Writing a person is conditional on their stored row; a row that keeps changing under us
# (another writer at the same moment) is retried this many times before giving up.
_WRITE_ATTEMPTS = 5


def _ids(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


# --- a full HR read -------------------------------------------------------------------------


@dataclass
class HRState:
    """One HR source in one full run."""

    source: SourceConfig
    read: HRRead | None = None
    error: str | None = None
    people: tuple[Person, ...] = ()
    # The read merged into the stored people of this source (a good read only).
    merge: HRMerge | None = None
    before: tuple[PersonState, ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass
class HRRound:
    """Every HR source of one full run: the people the run uses and whether to trust them."""

    states: list[HRState]
    people: list[Person]
    breaker: str | None
    # The breaker reason that ``accept_hr`` released, for the caller to report.
    accepted_breaker: str | None
    # A tripped, not accepted read: the previous read stays the baseline (nothing stored).
    keep_baseline: bool

    @property
    def failed(self) -> list[str]:
        return [s.source.name for s in self.states if s.error is not None]

    @property
    def trusted(self) -> bool:
        """Without a good (or accepted) HR read nothing can be called resolved."""
        return not self.failed and not self.keep_baseline


def read_hr(src: SourceConfig, instance: HRSource, store: Store, report: Reporter) -> HRState:
    state = HRState(src)
    report(f"reading HR source {src.name}")
    try:
        state.read = instance.read_people()
        state.people = state.read.people
    except ConfigError:
        raise
    except Exception as exc:  # any failure of a source is recorded, never fatal, never "empty"
        state.error = describe(exc)
        state.people = tuple(store.load_people(src.name))
        log.warning("HR source %s failed: %s", src.name, state.error)
    return state


def hr_round(
    states: list[HRState], store: Store, config: Config, now: datetime, run_id: str, accept_hr: bool
) -> HRRound:
    """Merge the HR reads into the stored people and decide the circuit breaker.

    Accepting (``accept_hr``) releases a tripped breaker for this run; a failed HR source can
    never be accepted.
    """
    stored = store.load_person_states()
    for hs in states:
        if hs.read is not None:
            name = hs.source.name
            hs.before = tuple(s for s in stored if s.person.source == name)
            hs.merge = merge_hr_read(name, hs.before, hs.read, now, f"hr:{name} run {run_id}")
            hs.people = hs.merge.people
    people = [p for s in states for p in s.people]
    failed = [s.source.name for s in states if s.error is not None]
    policy = config.policy
    merges = [hs.merge for hs in states if hs.merge is not None]
    breaker = circuit_breaker_reason(
        [s.person for s in stored],
        people,
        failed,
        policy.max_new_terminations,
        now,
        min_count=policy.min_breaker_count,
        # A terminated person missing from the read is kept as terminated (exports drop leavers
        # after a while): harmless, so only the others count towards the breaker.
        missing=sum(len(m.dropped) for m in merges),
        previous_read=sum(m.previous_read for m in merges),
        max_missing=policy.max_missing_people,
        max_rehires=policy.max_rehires,
    )
    accepted = None
    if breaker is not None and accept_hr and not failed:
        accepted, breaker = breaker, None
        for hs in states:
            if hs.merge is not None:
                hs.notes.append(f"circuit breaker released by --accept-hr for this run: {accepted}")
    keep_baseline = breaker is not None and not failed
    if breaker is not None and keep_baseline:
        breaker += (
            "; the previous HR read stays the baseline until this one is accepted "
            "(offboard-audit audit --accept-hr)"
        )
        # Not accepted: nobody leaves the stored people on the word of this read.
        people = people + [s.person for m in merges for s in m.dropped]
    return HRRound(states, people, breaker, accepted, keep_baseline)


def save_people(hr: HRRound, store: Store, run_id: str) -> None:
    """Store the merged people of every good read (unless the breaker keeps the baseline)."""
    if hr.keep_baseline:
        return
    for hs in hr.states:
        if hs.merge is None:
            continue
        wrote = store.save_person_states(hs.source.name, hs.before, hs.merge.states, run_id)
        if wrote.conflicts:
            hs.notes.append(
                f"left {_ids(wrote.conflicts)} as an HR webhook event changed them during this read"
            )


def hr_source_run(s: HRState) -> SourceRun:
    if s.error is not None:
        counts = (("people", len(s.people)),)
        if not s.people:
            # A first run (nothing stored from an earlier read): no stale data is used, as
            # collect.source_run says for an account source.
            error = s.error + " (failed, no earlier data: this source contributes no people)"
            return SourceRun(s.source.name, s.source.system, SourceStatus.FAILED, error, counts)
        return SourceRun(s.source.name, s.source.system, SourceStatus.FAILED, s.error, counts, stale=True)
    assert s.read is not None and s.merge is not None
    problems = s.read.problems
    m = s.merge
    counts_list: list[tuple[str, int]] = [("people", len(s.read.people)), ("bad_rows", len(problems))]
    notes = [p.message for p in problems]
    if m.missing:
        counts_list.append(("missing", m.missing))
    if m.kept_terminated:
        counts_list.append(("kept_terminated", len(m.kept_terminated)))
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
        tuple(counts_list),
        warnings=tuple(notes),
    )


# --- one person's change (an HR webhook event) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonUpdate:
    """The outcome of writing one HR event's change: the people it concerned (same employee id or
    email) before and after, and the decision."""

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


def _key(p: Person) -> tuple[str, str]:
    return (p.source, p.employee_id)


def update_person(store: Store, change: PersonChange, default_source: str, run_id: str) -> PersonUpdate:
    """Decide what ``change`` does (:func:`offboard_audit.core.people.decide_change`) and, when it
    applies, write that one person (conditionally: a row changed meanwhile is re-read and
    decided again). A superseded or conflicting event writes nothing."""
    for _ in range(_WRITE_ATTEMPTS):
        # Only the people the event can concern (its employee id, its email), by index: a webhook
        # job must not cost a load of the whole workforce.
        stored = store.person_states_for(change.employee_id, change.email)
        before = tuple(s.person for s in stored)
        decision = decide_change(stored, change, default_source)
        if decision.outcome is not ChangeOutcome.APPLY:
            return PersonUpdate(decision, before, before)
        assert decision.after is not None
        person = decision.after.person
        # The event's employee id decides who it is about; an email never redirects it.
        assert person.employee_id == change.employee_id, (person.employee_id, change.employee_id)
        if store.save_person_state(decision.after, decision.before, run_id):
            after = (*(p for p in before if _key(p) != _key(person)), person)
            return PersonUpdate(decision, before, after)
        log.info(
            "person %s changed while an HR event was applied to them: deciding again", change.employee_id
        )
    raise RuntimeError(
        f"person {change.employee_id!r} kept changing while an HR event was applied; try again"
    )


def last_hr_read(store: Store) -> datetime | None:
    """When the newest full run that read HR (and finished reading) started."""
    newest = store.latest_completed_run(FULL_HR_KINDS)
    return newest.started_at if newest is not None else None


def last_good_hr_read(store: Store) -> datetime | None:
    """When the newest full run that stored its HR read (finished reading, no breaker held) started:
    what the stored people say is as of then."""
    newest = store.latest_completed_run(FULL_HR_KINDS, untripped=True)
    return newest.started_at if newest is not None else None


def held_hr_breaker(store: Store) -> str | None:
    """Why the newest full HR read tripped the circuit breaker, when it did and was not accepted.

    Such a read is not stored, so until an operator accepts it (``audit --accept-hr``) the HR
    feed is in doubt: a run about one person may not revoke either. A full run that failed
    (raised) since releases nothing.
    """
    # The newest full run that finished reading: one that raised afterwards (a config error, a
    # crash) stored nothing and accepted nothing, so the verdict before it still holds.
    newest = store.latest_completed_run(FULL_HR_KINDS)
    if newest is None:
        return None
    if newest.circuit_breaker:
        return f"the HR circuit breaker holds since run {newest.run_id}: {newest.circuit_breaker}"
    return None


def webhook_breaker(
    store: Store, before: Sequence[Person], after: Sequence[Person], config: Config, now: datetime
) -> str | None:
    """The breaker of a run about one person: the held HR breaker, no full HR read finished yet,
    else ``webhook_breaker_reason``."""
    held = held_hr_breaker(store)
    if held is not None:
        return held
    since = last_hr_read(store)
    if since is None:
        # People recorded from earlier events are stored, but no HR read: judged by the number of
        # people stored, the second event would count as having a workforce behind it.
        return NO_HR_READ
    recent = WebhookStore(store).terminations_since(since)
    policy = config.policy
    # The workforce: the people not terminated, and those the webhook terminated since the last
    # HR read (they were at work then). Leavers kept from earlier reads (terminations are sticky)
    # would dilute the share more every year.
    workforce = store.count_workforce(recent)
    return webhook_breaker_reason(
        before,
        after,
        len(recent),
        policy.max_new_terminations,
        now,
        min_count=policy.min_breaker_count,
        workforce=workforce,
    )
