"""People as the store keeps them, and the pure rules by which HR information changes them.

Two things change a stored person: a full HR read (a file or an HR API) and a signed HR
webhook event. Both are HR information of different ages, so neither simply overwrites:

* **A full HR read changes only what changed in it.** Every person keeps the row the HR
  source gave last time (``PersonState.hr_row``). A new read is merged field group by field
  group (status with termination date, email, name, aliases): a group whose value in the
  source differs from the previous row takes the new value; a group the source did not change
  keeps the stored value, which a webhook event may have set since. So an unchanged, stale
  row never undoes a newer webhook change, while a row that did change (newer information)
  wins. A person the source lists for the first time takes the row as it is.
* **Terminations are sticky.** A person missing from a read who is stored as terminated stays,
  terminated (``missing_since`` records when they dropped out): HR exports drop leavers after a
  while, and their open findings must not turn into orphans and be resolved. Only an explicit
  row (a rehire: the source lists them again with another status) changes them. People with
  another status who are missing are removed once the read is accepted.
* **A bad row never replaces the last good record**: the employee id of an unusable row
  (a ``RowProblem`` naming an employee id) keeps its stored record.
* **Webhook events are ordered by ``effective_at``.** ``changed_at`` is the effective time of
  the last applied status change (a webhook event's ``effective_at``, or the time of the HR
  read that changed the status). A status event older than that is *superseded* and changes
  nothing (a retried ``employee.terminated`` never undoes a later ``employee.rehired``).
* **An event never changes a person it does not name.** An event whose email belongs to a
  stored person with another employee id (as their email or an email alias) is a conflict;
  nothing changes. So is an event whose employee id differs from a stored one only in case or
  surrounding spaces (matching would take them for one person).
* **The HR circuit breaker** (:func:`circuit_breaker_reason`, :func:`webhook_breaker_reason`)
  says when a read, or the webhook terminations since the last good read, look like a broken
  feed rather than real departures: then nothing is revoked.

Everything here is pure: no I/O, times come in as arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from offboard_audit.core.matching import normalized
from offboard_audit.core.records import HRRead, Person, PersonStatus, require_aware_fields
from offboard_audit.core.stored import PersonState

# Field groups a full HR read merges one by one; status and termination date go together.
FIELD_GROUPS: tuple[tuple[str, ...], ...] = (
    ("status", "terminated_at"),
    ("email",),
    ("name",),
    ("aliases",),
)


@dataclass(frozen=True, slots=True)
class HRMerge:
    """One HR source's read merged into its stored people (the source is the caller's)."""

    states: tuple[PersonState, ...]  # the source's people once this read is accepted
    dropped: tuple[PersonState, ...]  # in the last read, missing now, not terminated: removed
    kept_terminated: tuple[str, ...]  # employee ids missing now but kept (sticky terminations)
    kept_bad_rows: tuple[str, ...]  # employee ids whose row was bad: last good record kept
    missing: int  # people of the last read missing from this one
    previous_read: int  # people in the last read

    @property
    def people(self) -> tuple[Person, ...]:
        return tuple(s.person for s in self.states)


def _differs(a: Person, b: Person, fields: Sequence[str]) -> bool:
    return any(getattr(a, f) != getattr(b, f) for f in fields)


def merge_row(state: PersonState, row: Person, now: datetime, changed_by: str) -> PersonState:
    """``state`` after the HR source listed ``row`` for that person (see the module docstring)."""
    base = state.hr_row
    if base == row:
        return state if state.missing_since is None else replace(state, missing_since=None)
    current = state.person
    updates: dict[str, Any] = {}
    for group in FIELD_GROUPS:
        if base is None or _differs(row, base, group):
            updates.update({f: getattr(row, f) for f in group})
    person = replace(current, **updates)
    status_changed = _differs(person, current, FIELD_GROUPS[0])
    return replace(
        state,
        person=person,
        hr_row=row,
        changed_at=now if status_changed else state.changed_at,
        changed_by=changed_by if status_changed else state.changed_by,
        missing_since=None,
    )


def merge_hr_read(
    source: str, stored: Sequence[PersonState], read: HRRead, now: datetime, changed_by: str
) -> HRMerge:
    """Merge one HR source's read into its stored people (``stored`` may hold other sources)."""
    rows = {p.employee_id: p for p in read.people}
    bad = {p.employee_id for p in read.problems if p.employee_id} - rows.keys()
    mine = [s for s in stored if s.person.source == source]
    states: list[PersonState] = []
    dropped: list[PersonState] = []
    kept_terminated: list[str] = []
    kept_bad: list[str] = []
    missing = 0
    for st in mine:
        eid = st.person.employee_id
        row = rows.get(eid)
        if row is not None:
            states.append(merge_row(st, row, now, changed_by))
        elif eid in bad:
            kept_bad.append(eid)
            states.append(st)
        elif not st.in_last_read:
            states.append(st)  # known only from a webhook event, or already missing and kept
        else:
            missing += 1
            if st.person.status is PersonStatus.TERMINATED:
                kept_terminated.append(eid)
                states.append(replace(st, missing_since=now))
            else:
                dropped.append(st)
    known = {s.person.employee_id for s in mine}
    states.extend(PersonState(row, row, None, changed_by) for eid, row in rows.items() if eid not in known)
    return HRMerge(
        states=tuple(states),
        dropped=tuple(dropped),
        kept_terminated=tuple(sorted(kept_terminated)),
        kept_bad_rows=tuple(sorted(kept_bad)),
        missing=missing,
        previous_read=sum(1 for s in mine if s.in_last_read),
    )


# --- HR webhook events ---------------------------------------------------------------------


class ChangeOutcome(StrEnum):
    APPLY = "apply"
    SUPERSEDED = "superseded"  # older than the last applied status change: nothing changes
    CONFLICT = "conflict"  # names one person, its email belongs to another: nothing changes
    UNKNOWN = "unknown"  # an update for somebody not stored: nothing to do


@dataclass(frozen=True, slots=True)
class PersonChange:
    """What one HR event says about one person.

    ``status`` None keeps the status (``employee.updated`` changes the email only).
    ``effective_at`` orders status changes (None: never superseded). ``origin`` says what made
    the change ("webhook evt-1 (employee.terminated)"); it is stored as ``changed_by``.
    """

    employee_id: str
    status: PersonStatus | None
    terminated_at: datetime | None = None
    email: str | None = None
    effective_at: datetime | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        require_aware_fields(self, "terminated_at", "effective_at")


@dataclass(frozen=True, slots=True)
class ChangeDecision:
    outcome: ChangeOutcome
    reason: str
    before: PersonState | None = None  # the stored person the event resolved to (None: unknown)
    after: PersonState | None = None  # what to store (APPLY only)

    @property
    def person(self) -> Person | None:
        state = self.after or self.before
        return state.person if state is not None else None


def _same_id(a: str, b: str) -> bool:
    """Whether two employee ids are one to matching (its own comparison: one Unicode form, trimmed,
    any case)."""
    return normalized(a) == normalized(b)


def _addresses(person: Person) -> set[str]:
    """The addresses matching links ``person``'s accounts by: the email and the email aliases,
    compared as matching compares them."""
    return {normalized(a) for a in (person.email or "", *person.aliases) if "@" in a}


def decide_change(stored: Sequence[PersonState], change: PersonChange, default_source: str) -> ChangeDecision:
    """Which stored person ``change`` is about, and what becomes of them (pure).

    The employee id decides who the event is about; the email never redirects it to somebody
    else. An unknown employee id whose email belongs to a stored person with another id is a
    conflict, as is a known id with somebody else's email. A person known by neither is
    recorded from the event (an ``employee.updated`` for nobody does nothing).
    """
    eid = change.employee_id
    # In the form matching compares (and HR sources store) addresses: an event's address typed
    # decomposed is still the one stored person's.
    email = (normalized(change.email) or None) if change.email else None
    same_id = sorted(
        (s for s in stored if s.person.employee_id == eid),
        key=lambda s: (s.person.source != default_source, s.person.source),
    )
    found = same_id[0] if same_id else None
    if email is not None:
        owner = next(
            (s.person for s in stored if s.person.employee_id != eid and email in _addresses(s.person)),
            None,
        )
        if owner is not None:
            return ChangeDecision(
                ChangeOutcome.CONFLICT,
                f"the event names employee {eid!r} but its email {email} belongs to employee "
                f"{owner.employee_id!r} (HR source {owner.source}): nothing changed; "
                "correct the event or the HR record",
                before=found,
            )
    if found is None:
        # Matching and the people index compare ids trimmed and case insensitively: recorded from
        # the event, "e2" would be a second E2, leaving E2 as they were and their accounts
        # ambiguous between the two for good.
        namesake = next((s.person for s in stored if _same_id(s.person.employee_id, eid)), None)
        if namesake is not None:
            return ChangeDecision(
                ChangeOutcome.CONFLICT,
                f"the event names employee {eid!r} but the stored person is {namesake.employee_id!r} "
                f"(HR source {namesake.source}): employee ids that differ only in case or spaces are "
                "not told apart; nothing changed; correct the event or the HR record",
            )
        if change.status is None:
            return ChangeDecision(
                ChangeOutcome.UNKNOWN, f"no stored person with employee id {eid!r}: nothing to update"
            )
        person = Person(
            employee_id=eid,
            email=email,
            name="",
            status=change.status,
            terminated_at=change.terminated_at,
            source=default_source,
        )
        return ChangeDecision(
            ChangeOutcome.APPLY,
            f"employee {eid!r} was not known: recorded from the event",
            after=PersonState(person, None, change.effective_at, change.origin),
        )
    if change.status is None:
        person = replace(found.person, email=email or found.person.email)
        return ChangeDecision(ChangeOutcome.APPLY, "email updated", found, replace(found, person=person))
    if (
        change.effective_at is not None
        and found.changed_at is not None
        and change.effective_at < found.changed_at
    ):
        return ChangeDecision(
            ChangeOutcome.SUPERSEDED,
            f"superseded: effective_at {change.effective_at.isoformat()} is before the last applied status "
            f"change of employee {eid!r} at {found.changed_at.isoformat()} ({found.changed_by or 'unknown'}); "
            "nothing changed",
            before=found,
        )
    person = replace(
        found.person,
        status=change.status,
        terminated_at=change.terminated_at,
        email=email or found.person.email,
    )
    after = replace(
        found,
        person=person,
        changed_at=change.effective_at if change.effective_at is not None else found.changed_at,
        changed_by=change.origin,
    )
    return ChangeDecision(ChangeOutcome.APPLY, f"{change.status.value} from the event", found, after)


# --- the HR circuit breaker ----------------------------------------------------------------

DEFAULT_MIN_BREAKER_COUNT = 3
NO_HR_READ = "no HR read is stored yet: run a full reconcile before the webhook may revoke"


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
    max_rehires: float | None = 0.05,
    total: int | None = None,
) -> str | None:
    """Why revocations must not run on this HR read, or None when it looks sane.

    Trips when an HR source failed, when the read is empty, when the people newly terminated
    since the last good read (at any termination date: a future one counts when it first appears)
    exceed both ``max_share`` of the workforce (the people not terminated in the last good read,
    and newcomers) and ``min_count``, or
    when the people of the last good read (``previous_read`` of them) missing from this one,
    ``missing`` (the caller leaves out terminated people, who are kept), exceed both
    ``max_missing`` and ``min_count``, or when the people terminated in the last good read who
    are not terminated in this one (rehires) exceed both ``max_rehires`` of the people terminated
    in the last good read and ``min_count`` (None: not counted). The first read is the baseline.
    """
    if hr_failed:
        return f"HR source failed: {', '.join(hr_failed)}"
    if not current:
        return "HR read returned nobody"
    reasons: list[str] = []
    if previous:
        before = {(p.source, p.employee_id): p for p in previous}
        newly = 0
        # Leavers listed as not terminated again. The share is of the leavers, not of the
        # workforce: a feed that resets every status to 'active' brings back all of them (100%),
        # however few they are beside the people at work, while a rehire or two stays under
        # ``min_count``.
        rehired = 0
        leavers = sum(1 for p in previous if p.status is PersonStatus.TERMINATED)
        # The workforce: everybody but those already terminated in the last good read. Kept
        # leavers (terminations are sticky, exports list leavers for years) would otherwise
        # dilute the share more every year.
        workforce = 0
        for p in current:
            old = before.get((p.source, p.employee_id))
            if old is not None and old.status is PersonStatus.TERMINATED:
                if p.status is not PersonStatus.TERMINATED:
                    rehired += 1
                continue
            workforce += 1
            # Counted when the termination first appears, whatever its date: counted only once
            # departed, a termination dated in the future never was (nobody had left on the read
            # that brought it, and the next read found it in the baseline already).
            if p.status is PersonStatus.TERMINATED:
                newly += 1
        # ``total``: the workforce, when ``previous``/``current`` hold only the people that changed.
        size = workforce if total is None else total
        if exceeds(newly, size, max_share, min_count):
            reasons.append(
                f"{newly} of {size} people ({newly / size:.1%}) newly terminated since the "
                f"last good HR read, above policy.max_new_terminations = {max_share:.1%} "
                f"and policy.min_breaker_count = {min_count}"
            )
        if max_rehires is not None and exceeds(rehired, leavers, max_rehires, min_count):
            reasons.append(
                f"{rehired} of {leavers} people terminated in the last good HR read ({rehired / leavers:.1%}) "
                f"are active again in this one (not terminated), above policy.max_rehires = {max_rehires:.1%} "
                f"and policy.min_breaker_count = {min_count}"
            )
    if exceeds(missing, previous_read, max_missing, min_count):
        reasons.append(
            f"{missing} of the {previous_read} people in the last good HR read ({missing / previous_read:.1%}) "
            f"are missing from this one and not terminated, above policy.max_missing_people = {max_missing:.1%} "
            f"and policy.min_breaker_count = {min_count}"
        )
    return "; ".join(reasons) or None


def webhook_breaker_reason(
    before: Sequence[Person],
    after: Sequence[Person],
    webhook_terminations: int,
    max_share: float,
    now: datetime,
    *,
    min_count: int = DEFAULT_MIN_BREAKER_COUNT,
    workforce: int | None = None,
) -> str | None:
    """Why a reconcile of one person (an HR webhook event, no HR read) must not revoke.

    ``before`` and ``after`` are everybody before and after the event's change;
    ``webhook_terminations`` counts the people terminated through the webhook since the last
    good HR read. Trips with no stored HR read at all, like :func:`circuit_breaker_reason` on
    the change, or when the webhook terminations exceed both ``max_share`` of the workforce and
    ``min_count``. With ``workforce`` (everybody stored after the change), ``before`` and
    ``after`` may hold only the people the change concerns.
    """
    size = len(after) if workforce is None else workforce
    if size - (len(after) - len(before)) <= 0:
        return NO_HR_READ
    # A rehire event names one person and is signed: no feed that flips leavers back, and
    # judged as a share of the leavers among the people it concerns, it would be 1 of 1.
    reason = circuit_breaker_reason(
        before, after, [], max_share, now, min_count=min_count, max_rehires=None, total=size
    )
    if reason:
        return reason
    n = webhook_terminations
    if exceeds(n, size, max_share, min_count):
        return (
            f"{n} of {size} people ({n / size:.1%}) terminated through "
            f"the HR webhook since the last good HR read, above policy.max_new_terminations = "
            f"{max_share:.1%} and policy.min_breaker_count = {min_count}"
        )
    return None
