"""Stored people: each HR source's people with their last HR row, last status change and a
version for conditional writes (a full HR read and a webhook job may write at once)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Insert, RowMapping, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from offboard_audit.core.records import Person, PersonStatus
from offboard_audit.core.stored import PersonState
from offboard_audit.storage.db import Database, chunks, is_postgres
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import PEOPLE


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
            except IntegrityError:
                return False
            return True
        with self.begin() as conn:
            return _update_person(conn, state, before.version, run_id)

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
