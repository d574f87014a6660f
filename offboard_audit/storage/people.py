"""Stored people: each HR source's people with their last HR row, last status change and a
version for conditional writes (a full HR read and a webhook job may write at once).

Every write also keeps ``person_keys``, the identifiers a person can be matched by (see
:func:`person_keys`), so that the HR webhook path looks up the few people it needs
(:meth:`PeopleStore.person_states_for`, :meth:`PeopleStore.people_with_keys`) instead of loading
everybody."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Insert, RowMapping, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from offboard_audit.core.records import Person, PersonStatus, identifier_key
from offboard_audit.core.stored import PersonState
from offboard_audit.storage.db import Database, chunks, is_postgres
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import PEOPLE, PERSON_KEYS


@dataclass(frozen=True)
class PeopleWrite:
    """What :meth:`PeopleStore.save_person_states` wrote, and the people it left alone because a
    webhook job changed them meanwhile."""

    written: int
    conflicts: tuple[str, ...] = ()


class PeopleStore(Database):
    def load_people(self, source: str | None = None) -> list[Person]:
        return [s.person for s in self.load_person_states(source)]

    def load_person_states(self, source: str | None = None) -> list[PersonState]:
        """Stored people with their last HR row, last status change and version."""
        q = select(PEOPLE)
        if source is not None:
            q = q.where(PEOPLE.c.source == source)
        with self.begin() as conn:
            rows = conn.execute(q.order_by(PEOPLE.c.source, PEOPLE.c.employee_id)).mappings()
            return [_person_state(r) for r in rows]

    def person_states_for(self, employee_id: str, email: str | None = None) -> list[PersonState]:
        """The stored people an HR event about ``employee_id`` (with ``email``) can concern: those
        with that employee id (in any HR source) and those whose email is ``email``, case
        insensitive. What ``core.people.decide_change`` needs, by index."""
        keys = [("id", employee_id)]
        if email and email.strip():
            keys.append(("email", email))
        return self.person_states_with_keys(keys)

    def people_with_keys(self, keys: Iterable[tuple[str, str]]) -> list[Person]:
        """The stored people having any of ``keys`` (kind, value): kinds ``id``, ``email``,
        ``alias`` (a username alias) and ``local`` (the part of the email before ``@``), values
        compared as matching compares them (``core.records.identifier_key``: one Unicode form,
        without invisible characters, trimmed, case insensitive)."""
        return [s.person for s in self.person_states_with_keys(keys)]

    def person_states_with_keys(self, keys: Iterable[tuple[str, str]]) -> list[PersonState]:
        wanted = sorted({_key(kind, value) for kind, value in keys if identifier_key(value)})
        if not wanted:
            return []
        found: set[tuple[str, str]] = set()
        with self.begin() as conn:
            for batch in chunks(wanted):
                found.update(
                    (r[0], r[1])
                    for r in conn.execute(
                        select(PERSON_KEYS.c.source, PERSON_KEYS.c.employee_id).where(
                            PERSON_KEYS.c.key.in_(list(batch))
                        )
                    )
                )
            states: list[PersonState] = []
            by_source: dict[str, list[str]] = {}
            for source, eid in found:
                by_source.setdefault(source, []).append(eid)
            for source, eids in sorted(by_source.items()):
                for batch in chunks(sorted(eids)):
                    rows = conn.execute(
                        select(PEOPLE).where(PEOPLE.c.source == source, PEOPLE.c.employee_id.in_(list(batch)))
                    ).mappings()
                    states.extend(_person_state(r) for r in rows)
        return sorted(states, key=lambda s: (s.person.source, s.person.employee_id))

    def count_people(self) -> int:
        """How many people are stored (every HR source)."""
        with self.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(PEOPLE)).scalar() or 0)

    def count_workforce(self, terminated_since: Iterable[str]) -> int:
        """The people stored not terminated, and the terminated ones among ``terminated_since``
        (employee ids terminated since some time: at work before it)."""
        terminated = PEOPLE.c.status == PersonStatus.TERMINATED.value
        count = select(func.count()).select_from(PEOPLE)
        with self.begin() as conn:
            n = int(conn.execute(count.where(~terminated)).scalar() or 0)
            for ids in chunks(sorted(set(terminated_since))):
                n += int(conn.execute(count.where(terminated, PEOPLE.c.employee_id.in_(ids))).scalar() or 0)
        return n

    def save_person_states(
        self,
        source: str,
        before: Sequence[PersonState],
        after: Sequence[PersonState],
        run_id: str,
    ) -> PeopleWrite:
        """Write one HR source's people as a diff of ``after`` against ``before`` (as loaded).

        Every update and delete is conditional on the row's version being the one loaded: a row
        a webhook job changed meanwhile is left alone (its change is newer than this read; the
        next read merges again) and reported in ``conflicts``. A new person that a webhook
        inserted meanwhile is skipped likewise.
        """
        old = {s.person.employee_id: s for s in before if s.person.source == source}
        new = {s.person.employee_id: s for s in after if s.person.source == source}
        inserts: list[dict[str, object]] = []
        conflicts: list[str] = []
        written = 0
        with self.begin() as conn:
            for eid, state in new.items():
                prev = old.get(eid)
                if prev is None:
                    inserts.append(_person_row(state, run_id))
                elif state != prev:
                    if _update_person(conn, state, prev.version, run_id):
                        _replace_keys(conn, state.person)
                        written += 1
                    else:
                        conflicts.append(eid)
            for eid, prev in old.items():
                if eid in new:
                    continue
                result = conn.execute(
                    delete(PEOPLE).where(
                        PEOPLE.c.source == source,
                        PEOPLE.c.employee_id == eid,
                        PEOPLE.c.row_hash == prev.version,
                    )
                )
                if result.rowcount:
                    _delete_keys(conn, source, eid)
                    written += 1
                else:
                    conflicts.append(eid)
            # Somebody (a webhook job) may have added one of them meanwhile: that row is left as
            # it is. ON CONFLICT rather than catching the error, which would abort the whole
            # transaction on PostgreSQL (a run stores its people in one with its findings).
            added: set[str] = set()
            for batch in chunks(inserts):
                added.update(
                    conn.execute(_insert_new(self).returning(PEOPLE.c.employee_id), list(batch)).scalars()
                )
            written += len(added)
            _insert_keys(conn, [new[eid].person for eid in sorted(added)])
            conflicts.extend(str(row["employee_id"]) for row in inserts if row["employee_id"] not in added)
        return PeopleWrite(written, tuple(sorted(conflicts)))

    def save_person_state(self, state: PersonState, before: PersonState | None, run_id: str) -> bool:
        """Write one person (the HR webhook path), only if their row is still ``before`` (as
        loaded; None: not stored yet). False when somebody changed it meanwhile: reload, decide
        again."""
        if before is None:
            try:
                with self.begin() as conn:
                    conn.execute(insert(PEOPLE).values(_person_row(state, run_id)))
                    _insert_keys(conn, [state.person])
            except IntegrityError:
                return False
            return True
        with self.begin() as conn:
            if not _update_person(conn, state, before.version, run_id):
                return False
            _replace_keys(conn, state.person)
            return True

    def save_people(self, source: str, people: Sequence[Person], run_id: str) -> int:
        """Replace the stored people of one HR source with ``people`` as read from it (seeding,
        tests); the pipeline merges reads with :func:`offboard_audit.core.people.merge_hr_read`."""
        before = self.load_person_states(source)
        kept = {s.person.employee_id: s for s in before}
        after = [PersonState(p, p, None, f"hr:{source} run {run_id}") for p in people]
        merged = [
            replace(s, changed_at=k.changed_at, version=k.version)
            if (k := kept.get(s.person.employee_id)) is not None
            else s
            for s in after
        ]
        return self.save_person_states(source, before, merged, run_id).written


# --- match keys -----------------------------------------------------------------------------


def _key(kind: str, value: str) -> str:
    # The very function matching compares with (``core.matching.normalized``): a key written in
    # another form than the lookup's finds nobody, and the webhook path then misses a person an
    # account's address belongs to. Migration 0014 rewrote the keys stored before.
    return f"{kind}:{identifier_key(value)}"[:700]


def person_keys(p: Person) -> set[str]:
    """The keys a person can be matched by (the identifiers ``core.matching`` compares, for the
    rules ``alias`` and ``email_local``; templates are not indexed)."""
    keys = {_key("id", p.employee_id)}
    emails = {p.email} if p.email else set()
    emails.update(a for a in p.aliases if "@" in a)
    keys.update(_key("email", e) for e in emails if identifier_key(e))
    keys.update(_key("alias", a) for a in p.aliases if "@" not in a and identifier_key(a))
    if p.email and identifier_key(p.email.split("@", 1)[0]):
        keys.add(_key("local", p.email.split("@", 1)[0]))
    return keys


def _insert_keys(conn: Connection, people: Sequence[Person]) -> None:
    rows = [
        {"key": k, "source": p.source, "employee_id": p.employee_id} for p in people for k in person_keys(p)
    ]
    for batch in chunks(rows):
        conn.execute(insert(PERSON_KEYS), list(batch))


def _delete_keys(conn: Connection, source: str, employee_id: str) -> None:
    conn.execute(
        delete(PERSON_KEYS).where(PERSON_KEYS.c.source == source, PERSON_KEYS.c.employee_id == employee_id)
    )


def _replace_keys(conn: Connection, person: Person) -> None:
    _delete_keys(conn, person.source, person.employee_id)
    _insert_keys(conn, [person])


# --- rows -----------------------------------------------------------------------------------


def _insert_new(db: Database) -> Insert:
    """INSERT of people that skips a row whose key exists already."""
    if is_postgres(db):
        return postgresql.insert(PEOPLE).on_conflict_do_nothing(index_elements=["source", "employee_id"])
    return sqlite.insert(PEOPLE).on_conflict_do_nothing()


def _iso_utc(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t is not None else None


def _hr_row_json(p: Person) -> str:
    """The HR row of a person, without its key (same format as migration 0006's backfill)."""
    row = {
        "email": p.email,
        "name": p.name,
        "status": p.status.value,
        "terminated_at": _iso_utc(p.terminated_at),
        "aliases": list(p.aliases),
    }
    return json.dumps(row, sort_keys=True)


def _hr_row(text: str | None, source: str, employee_id: str) -> Person | None:
    if text is None:
        return None
    d = json.loads(text)
    return Person(
        employee_id=employee_id,
        email=d["email"],
        name=d["name"],
        status=PersonStatus(d["status"]),
        terminated_at=datetime.fromisoformat(d["terminated_at"]) if d["terminated_at"] else None,
        aliases=tuple(d["aliases"]),
        source=source,
    )


def _person_version(state: PersonState) -> str:
    """A content hash of everything stored for a person (times in UTC, so a re-read equals it)."""
    p = state.person
    content = [
        p.source,
        p.employee_id,
        p.email,
        p.name,
        p.status.value,
        _iso_utc(p.terminated_at),
        list(p.aliases),
        _hr_row_json(state.hr_row) if state.hr_row is not None else None,
        _iso_utc(state.changed_at),
        state.changed_by,
        _iso_utc(state.missing_since),
    ]
    return hashlib.sha1(json.dumps(content).encode("utf-8"), usedforsecurity=False).hexdigest()


def _person_row(state: PersonState, run_id: str) -> dict[str, object]:
    return row_of(
        state.person,
        PEOPLE,
        aliases_json=json.dumps(list(state.person.aliases)),
        hr_row_json=_hr_row_json(state.hr_row) if state.hr_row is not None else None,
        changed_at=state.changed_at,
        changed_by=state.changed_by[:256],
        missing_since=state.missing_since,
        row_hash=_person_version(state),
        updated_run=run_id,
    )


def _update_person(conn: Connection, state: PersonState, version: str, run_id: str) -> bool:
    row = _person_row(state, run_id)
    source, employee_id = row.pop("source"), row.pop("employee_id")
    result = conn.execute(
        update(PEOPLE)
        .where(PEOPLE.c.source == source, PEOPLE.c.employee_id == employee_id, PEOPLE.c.row_hash == version)
        .values(row)
    )
    return bool(result.rowcount)


def _person_state(r: RowMapping) -> PersonState:
    return PersonState(
        person=record_of(Person, r, aliases=tuple(json.loads(r["aliases_json"]))),
        hr_row=_hr_row(r["hr_row_json"], r["source"], r["employee_id"]),
        changed_at=r["changed_at"],
        changed_by=r["changed_by"] or "",
        missing_since=r["missing_since"],
        version=r["row_hash"],
    )
