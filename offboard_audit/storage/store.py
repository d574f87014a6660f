"""The storage API: records in, records out. SQLModel rows never leave this package.

Snapshots (people, accounts, credentials) hold the current state per source and are written
as diffs: an unchanged re-run writes almost nothing. Findings keep their history as status
events. Data of a source (or scope) that failed in a run is left as it was and read back as
stale.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, RowMapping, and_, create_engine, delete, event, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from offboard_audit.core.people import PersonState
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    Exemption,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    RunResult,
    ScopeFailure,
    SourceRun,
    SourceStatus,
)
from offboard_audit.storage.models import (
    AccountRow,
    ActionRow,
    CredentialRow,
    ExemptionRow,
    FindingEventRow,
    FindingRow,
    PersonRow,
    RunRow,
    SourceRunRow,
)

_CHUNK = 5000

PEOPLE = PersonRow.__table__  # type: ignore[attr-defined]
ACCOUNTS = AccountRow.__table__  # type: ignore[attr-defined]
CREDENTIALS = CredentialRow.__table__  # type: ignore[attr-defined]
FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
FINDING_EVENTS = FindingEventRow.__table__  # type: ignore[attr-defined]
RUNS = RunRow.__table__  # type: ignore[attr-defined]
SOURCE_RUNS = SourceRunRow.__table__  # type: ignore[attr-defined]
EXEMPTIONS = ExemptionRow.__table__  # type: ignore[attr-defined]
ACTIONS = ActionRow.__table__  # type: ignore[attr-defined]


def _hash(record: object) -> str:
    return hashlib.sha1(repr(record).encode("utf-8"), usedforsecurity=False).hexdigest()


def _secs(delta: timedelta | None) -> float | None:
    return delta.total_seconds() if delta is not None else None


def _delta(secs: float | None) -> timedelta | None:
    return timedelta(seconds=secs) if secs is not None else None


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if in_memory else None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class PeopleWrite:
    """What :meth:`Store.save_person_states` wrote, and the people it left alone because a
    webhook job changed them meanwhile."""

    written: int
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """Accounts and credentials of one source as stored."""

    accounts: tuple[Account, ...]
    credentials: tuple[Credential, ...]


class Store:
    """Everything the pipeline, CLI, daemon and webhook persist goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, upgrade: bool = True) -> Store:
        """Open the database; with ``upgrade`` bring the schema to the newest migration."""
        store = cls(make_engine(url))
        if upgrade:
            from offboard_audit.storage.migrate import upgrade_head

            upgrade_head(store.engine)
        return store

    def create_all(self) -> None:
        """Create tables straight from the models (tests of pure storage logic only)."""
        SQLModel.metadata.create_all(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # --- runs ------------------------------------------------------------------------

    def start_run(self, run_id: str, started_at: datetime, kind: str = "audit") -> None:
        with self.begin() as conn:
            conn.execute(
                insert(RUNS).values(
                    run_id=run_id, kind=kind, started_at=started_at, status="running", summary_json="{}"
                )
            )

    def finish_run(self, result: RunResult, status: str = "done") -> None:
        with self.begin() as conn:
            conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == result.run_id)
                .values(
                    finished_at=result.finished_at,
                    status=status,
                    circuit_breaker=result.circuit_breaker,
                    summary_json=json.dumps(result.summary()),
                )
            )
            for s in result.sources:
                conn.execute(
                    insert(SOURCE_RUNS).values(
                        run_id=result.run_id,
                        name=s.name,
                        system=s.system,
                        status=s.status.value,
                        error=s.error,
                        stale=s.stale,
                        counts_json=json.dumps(dict(s.counts)),
                        failed_scopes_json=json.dumps([[f.scope, f.error] for f in s.failed_scopes]),
                        warnings_json=json.dumps(list(s.warnings)),
                    )
                )

    def latest_run(self, kind: str | None = None) -> dict[str, Any] | None:
        """The newest finished run as a plain summary (for health checks and the CLI)."""
        with self.begin() as conn:
            q = select(RUNS).where(RUNS.c.finished_at.is_not(None))
            if kind:
                q = q.where(RUNS.c.kind == kind)
            row = conn.execute(q.order_by(RUNS.c.started_at.desc()).limit(1)).mappings().first()
            return dict(row) if row else None

    def source_runs(self, run_id: str) -> list[SourceRun]:
        with self.begin() as conn:
            rows = conn.execute(select(SOURCE_RUNS).where(SOURCE_RUNS.c.run_id == run_id)).mappings().all()
        return [
            SourceRun(
                name=r["name"],
                system=r["system"],
                status=SourceStatus(r["status"]),
                error=r["error"],
                counts=tuple(json.loads(r["counts_json"]).items()),
                failed_scopes=tuple(ScopeFailure(s, e) for s, e in json.loads(r["failed_scopes_json"])),
                warnings=tuple(json.loads(r["warnings_json"])),
                stale=r["stale"],
            )
            for r in rows
        ]

    # --- people ----------------------------------------------------------------------

    def load_people(self, source: str | None = None) -> list[Person]:
        return [s.person for s in self.load_person_states(source)]

    def load_person_states(self, source: str | None = None) -> list[PersonState]:
        """Stored people with their last HR row, last status change and version."""
        with self.begin() as conn:
            q = select(PEOPLE)
            if source is not None:
                q = q.where(PEOPLE.c.source == source)
            return [
                _person_state(r)
                for r in conn.execute(q.order_by(PEOPLE.c.source, PEOPLE.c.employee_id)).mappings()
            ]

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
        inserts: list[dict[str, Any]] = []
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
        try:
            with self.begin() as conn:
                for batch in _chunks(inserts):
                    conn.execute(insert(PEOPLE), list(batch))
            written += len(inserts)
        except IntegrityError:
            # Somebody (a webhook job) added one of them meanwhile: insert the others one by one.
            for row in inserts:
                try:
                    with self.begin() as conn:
                        conn.execute(insert(PEOPLE).values(**row))
                    written += 1
                except IntegrityError:
                    conflicts.append(row["employee_id"])
        return PeopleWrite(written, tuple(sorted(conflicts)))

    def save_person_state(self, state: PersonState, before: PersonState | None, run_id: str) -> bool:
        """Write one person (the HR webhook path), only if their row is still ``before`` (as
        loaded; None: not stored yet). False when somebody changed it meanwhile: reload, decide
        again."""
        if before is None:
            try:
                with self.begin() as conn:
                    conn.execute(insert(PEOPLE).values(**_person_row(state, run_id)))
            except IntegrityError:
                return False
            return True
        with self.begin() as conn:
            return _update_person(conn, state, before.version, run_id)

    def save_people(self, source: str, people: Sequence[Person], run_id: str) -> int:
        """Replace the stored people of one HR source with ``people`` as read from it (seeding,
        tests); the pipeline merges reads with :func:`offboard_audit.core.people.merge_hr_read`."""
        before = self.load_person_states(source)
        after = [PersonState(p, p, None, f"hr:{source} run {run_id}") for p in people]
        kept = {s.person.employee_id: s for s in before}
        merged = [
            replace(
                a,
                changed_at=kept[a.person.employee_id].changed_at,
                version=kept[a.person.employee_id].version,
            )
            if a.person.employee_id in kept
            else a
            for a in after
        ]
        return self.save_person_states(source, before, merged, run_id).written

    # --- accounts and credentials ----------------------------------------------------

    def load_snapshot(self, source: str, scopes: Iterable[str] | None = None) -> Snapshot:
        """Stored accounts and credentials of a source (optionally only some scopes)."""
        scope_list = list(scopes) if scopes is not None else None
        with self.begin() as conn:
            qa = select(ACCOUNTS).where(ACCOUNTS.c.source == source)
            qc = select(CREDENTIALS).where(CREDENTIALS.c.source == source)
            if scope_list is not None:
                qa = qa.where(ACCOUNTS.c.scope.in_(scope_list))
                qc = qc.where(CREDENTIALS.c.scope.in_(scope_list))
            accounts = tuple(_account(r) for r in conn.execute(qa).mappings())
            creds = tuple(_credential(r) for r in conn.execute(qc).mappings())
        return Snapshot(accounts, creds)

    def stored_scopes(self, source: str) -> set[str]:
        with self.begin() as conn:
            return set(
                conn.execute(select(ACCOUNTS.c.scope).where(ACCOUNTS.c.source == source).distinct()).scalars()
            )

    def save_snapshot(
        self,
        source: str,
        accounts: Sequence[Account],
        credentials: Sequence[Credential],
        run_id: str,
        keep_scopes: Iterable[str] = (),
    ) -> int:
        """Write one source's fresh accounts and credentials as a diff against what is stored.

        Rows in ``keep_scopes`` (scopes that failed this run) are left untouched.
        """
        keep = set(keep_scopes)
        written = 0
        with self.begin() as conn:
            written += self._diff(
                conn,
                ACCOUNTS,
                source,
                {a.account_id: a for a in accounts if a.scope not in keep},
                lambda a: (a.account_id,),
                ("account_id",),
                _account_row,
                run_id,
                keep,
            )
            written += self._diff(
                conn,
                CREDENTIALS,
                source,
                {(c.account_id, c.credential_id): c for c in credentials if c.scope not in keep},
                lambda c: (c.account_id, c.credential_id),
                ("account_id", "credential_id"),
                _credential_row,
                run_id,
                keep,
            )
        return written

    def _diff(
        self,
        conn: Connection,
        table: Any,
        source: str,
        new: Mapping[Any, Any],
        keyfn: Any,
        key_cols: tuple[str, ...],
        to_row: Any,
        run_id: str,
        keep: set[str],
    ) -> int:
        cols = [table.c[k] for k in key_cols]
        q = select(*cols, table.c.row_hash, table.c.scope).where(table.c.source == source)
        old: dict[Any, str] = {}
        for row in conn.execute(q):
            *key, row_hash, scope = row
            if scope in keep:
                continue
            old[key[0] if len(key) == 1 else tuple(key)] = row_hash
        inserts = []
        stale_keys = []
        for key, record in new.items():
            h = _hash(record)
            prev = old.get(key)
            if prev == h:
                continue
            if prev is not None:
                stale_keys.append(key)
            inserts.append(to_row(record, h, run_id))
        stale_keys.extend(k for k in old if k not in new)
        for batch in _chunks(stale_keys, 500):
            if len(key_cols) == 1:
                cond = cols[0].in_(list(batch))
            else:
                cond = or_(*[and_(*[c == v for c, v in zip(cols, k, strict=True)]) for k in batch])
            conn.execute(delete(table).where(table.c.source == source, cond))
        for ins_batch in _chunks(inserts):
            conn.execute(insert(table), list(ins_batch))
        return len(inserts) + len(stale_keys)

    # --- findings --------------------------------------------------------------------

    def finding_first_seen(self) -> dict[str, datetime]:
        with self.begin() as conn:
            return dict(conn.execute(select(FINDINGS.c.finding_id, FINDINGS.c.first_seen)).all())

    def save_findings(
        self,
        run_id: str,
        now: datetime,
        findings: Sequence[Finding],
        fresh: set[tuple[str, str]],
        revoked_ids: set[str] | None = None,
    ) -> dict[str, int]:
        """Store this run's findings and resolve the ones that disappeared.

        A stored open finding that this run did not produce is closed only when its source and
        scope were read successfully now (``fresh``); if an applied action revoked it, it
        becomes ``revoked``, else ``resolved``. Returns counts of new/changed/closed findings.
        """
        revoked_ids = revoked_ids or set()
        counts = {"new": 0, "changed": 0, "closed": 0}
        current = {f.finding_id: f for f in findings}
        with self.begin() as conn:
            stored = {
                r["finding_id"]: r
                for r in conn.execute(
                    select(
                        FINDINGS.c.finding_id,
                        FINDINGS.c.status,
                        FINDINGS.c.reason,
                        FINDINGS.c.stale,
                        FINDINGS.c.exemption_id,
                        FINDINGS.c.due_at,
                        FINDINGS.c.source,
                        FINDINGS.c.scope,
                        FINDINGS.c.account_uid,
                    )
                ).mappings()
            }
            inserts: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for fid, f in current.items():
                old = stored.get(fid)
                if old is None:
                    inserts.append(_finding_row(f, run_id, now))
                    events.append(_event(fid, run_id, now, None, f.status.value))
                    counts["new"] += 1
                    continue
                unchanged = (
                    old["status"] == f.status.value
                    and old["reason"] == f.reason
                    and old["stale"] == f.stale
                    and old["exemption_id"] == f.exemption_id
                    and old["due_at"] == f.due_at
                    and old["account_uid"] == f.account.uid
                )
                if unchanged:
                    continue
                row = _finding_row(f, run_id, now)
                row.pop("finding_id")
                row.pop("first_seen")
                conn.execute(update(FINDINGS).where(FINDINGS.c.finding_id == fid).values(**row))
                if old["status"] != f.status.value:
                    events.append(_event(fid, run_id, now, old["status"], f.status.value))
                counts["changed"] += 1
            for fid, old in stored.items():
                if fid in current or old["status"] not in (
                    FindingStatus.OPEN.value,
                    FindingStatus.EXEMPTED.value,
                ):
                    continue
                if (old["source"], old["scope"]) not in fresh:
                    continue
                to = FindingStatus.REVOKED if fid in revoked_ids else FindingStatus.RESOLVED
                conn.execute(
                    update(FINDINGS)
                    .where(FINDINGS.c.finding_id == fid)
                    .values(status=to.value, resolved_at=now, run_id=run_id, stale=False)
                )
                events.append(_event(fid, run_id, now, old["status"], to.value))
                counts["closed"] += 1
            for batch in _chunks(inserts):
                conn.execute(insert(FINDINGS), list(batch))
            for batch in _chunks(events):
                conn.execute(insert(FINDING_EVENTS), list(batch))
        return counts

    def list_findings(
        self,
        statuses: Sequence[str] | None = None,
        person: str | None = None,
        finding_ids: Sequence[str] | None = None,
    ) -> list[Finding]:
        with self.begin() as conn:
            q = select(FINDINGS)
            if statuses:
                q = q.where(FINDINGS.c.status.in_(list(statuses)))
            if person:
                q = q.where(FINDINGS.c.person_employee_id == person)
            if finding_ids:
                q = q.where(FINDINGS.c.finding_id.in_(list(finding_ids)))
            q = q.order_by(FINDINGS.c.severity, FINDINGS.c.source, FINDINGS.c.account_id)
            return [_finding(r) for r in conn.execute(q).mappings()]

    def finding_history(self, finding_id: str) -> list[tuple[datetime, str | None, str, str]]:
        with self.begin() as conn:
            rows = conn.execute(
                select(FINDING_EVENTS)
                .where(FINDING_EVENTS.c.finding_id == finding_id)
                .order_by(FINDING_EVENTS.c.id)
            ).mappings()
            return [(r["at"], r["from_status"], r["to_status"], r["run_id"]) for r in rows]

    def revoked_finding_ids(self) -> set[str]:
        """Findings whose credential an applied (and not undone) action revoked."""
        with self.begin() as conn:
            rows = conn.execute(
                select(ACTIONS.c.finding_id).where(
                    ACTIONS.c.status.in_(["applied", "noop"]), ACTIONS.c.finding_id.is_not(None)
                )
            ).scalars()
            return set(rows)

    def actions_by_finding(self, finding_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Actions per finding, oldest first, as plain data for reports."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if not finding_ids:
            return {}
        with self.begin() as conn:
            for batch in _chunks(list(finding_ids), 500):
                rows = conn.execute(
                    select(ACTIONS)
                    .where(ACTIONS.c.finding_id.in_(list(batch)))
                    .order_by(ACTIONS.c.created_at)
                ).mappings()
                for r in rows:
                    out[r["finding_id"]].append(
                        {
                            "id": r["action_id"],
                            "action": r["action"],
                            "stage": r["stage"],
                            "status": r["status"],
                            "actor": r["actor"],
                            "error": r["error"],
                            "created_at": r["created_at"].isoformat(),
                            "updated_at": r["updated_at"].isoformat(),
                        }
                    )
        return dict(out)

    # --- exemptions ------------------------------------------------------------------

    def add_exemption(self, exemption: Exemption) -> None:
        with self.begin() as conn:
            conn.execute(
                insert(EXEMPTIONS).values(
                    exemption_id=exemption.exemption_id,
                    selector=exemption.selector,
                    reason=exemption.reason,
                    until=exemption.until,
                    created_by=exemption.created_by,
                    created_at=exemption.created_at,
                )
            )

    def remove_exemption(self, exemption_id: str, now: datetime) -> bool:
        with self.begin() as conn:
            result = conn.execute(
                update(EXEMPTIONS)
                .where(EXEMPTIONS.c.exemption_id == exemption_id, EXEMPTIONS.c.removed_at.is_(None))
                .values(removed_at=now)
            )
            return bool(result.rowcount)

    def list_exemptions(self, include_removed: bool = False) -> list[Exemption]:
        with self.begin() as conn:
            q = select(EXEMPTIONS)
            if not include_removed:
                q = q.where(EXEMPTIONS.c.removed_at.is_(None))
            return [
                Exemption(
                    exemption_id=r["exemption_id"],
                    selector=r["selector"],
                    reason=r["reason"],
                    until=r["until"],
                    created_by=r["created_by"],
                    created_at=r["created_at"],
                )
                for r in conn.execute(q.order_by(EXEMPTIONS.c.created_at)).mappings()
            ]


# --- mapping between rows and records ----------------------------------------------------


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


def _person_row(state: PersonState, run_id: str) -> dict[str, Any]:
    p = state.person
    return {
        "source": p.source,
        "employee_id": p.employee_id,
        "email": p.email,
        "name": p.name,
        "status": p.status.value,
        "terminated_at": p.terminated_at,
        "aliases_json": json.dumps(list(p.aliases)),
        "hr_row_json": _hr_row_json(state.hr_row) if state.hr_row is not None else None,
        "changed_at": state.changed_at,
        "changed_by": state.changed_by[:256],
        "missing_since": state.missing_since,
        "row_hash": _person_version(state),
        "updated_run": run_id,
    }


def _update_person(conn: Connection, state: PersonState, version: str, run_id: str) -> bool:
    row = _person_row(state, run_id)
    key = (row.pop("source"), row.pop("employee_id"))
    result = conn.execute(
        update(PEOPLE)
        .where(PEOPLE.c.source == key[0], PEOPLE.c.employee_id == key[1], PEOPLE.c.row_hash == version)
        .values(**row)
    )
    return bool(result.rowcount)


def _person_state(r: RowMapping) -> PersonState:
    person = Person(
        employee_id=r["employee_id"],
        email=r["email"],
        name=r["name"],
        status=PersonStatus(r["status"]),
        terminated_at=r["terminated_at"],
        aliases=tuple(json.loads(r["aliases_json"])),
        source=r["source"],
    )
    return PersonState(
        person=person,
        hr_row=_hr_row(r["hr_row_json"], r["source"], r["employee_id"]),
        changed_at=r["changed_at"],
        changed_by=r["changed_by"] or "",
        missing_since=r["missing_since"],
        version=r["row_hash"],
    )


def _account_row(a: Account, h: str, run_id: str) -> dict[str, Any]:
    return {
        "source": a.source,
        "account_id": a.account_id,
        "system": a.system,
        "scope": a.scope,
        "username": a.username,
        "display_name": a.display_name,
        "kind": a.kind.value,
        "enabled": a.enabled,
        "emails_json": json.dumps(list(a.emails)),
        "attributes_json": json.dumps([list(x) for x in a.attributes]),
        "last_login_at": a.last_login_at,
        "last_login_precision_s": _secs(a.last_login_precision),
        "uid": a.uid,
        "row_hash": h,
        "updated_run": run_id,
    }


def _account(r: RowMapping) -> Account:
    return Account(
        source=r["source"],
        system=r["system"],
        account_id=r["account_id"],
        username=r["username"],
        enabled=r["enabled"],
        kind=AccountKind(r["kind"]),
        emails=tuple(json.loads(r["emails_json"])),
        display_name=r["display_name"],
        last_login_at=r["last_login_at"],
        last_login_precision=_delta(r["last_login_precision_s"]),
        attributes=tuple((k, v) for k, v in json.loads(r["attributes_json"])),
        scope=r["scope"],
        uid=r["uid"],
    )


def _credential_row(c: Credential, h: str, run_id: str) -> dict[str, Any]:
    return {
        "source": c.source,
        "account_id": c.account_id,
        "credential_id": c.credential_id,
        "scope": c.scope,
        "kind": c.kind.value,
        "active": c.active,
        "detail": c.detail,
        "created_at": c.created_at,
        "last_used_at": c.last_used_at,
        "observed_at": c.observed_at,
        "last_used_precision_s": _secs(c.last_used_precision),
        "provisional": c.provisional,
        "row_hash": h,
        "updated_run": run_id,
    }


def _credential(r: RowMapping) -> Credential:
    return Credential(
        source=r["source"],
        account_id=r["account_id"],
        credential_id=r["credential_id"],
        kind=CredentialKind(r["kind"]),
        active=r["active"],
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        detail=r["detail"],
        observed_at=r["observed_at"],
        last_used_precision=_delta(r["last_used_precision_s"]),
        scope=r["scope"],
        provisional=bool(r["provisional"]),
    )


def _event(fid: str, run_id: str, at: datetime, from_status: str | None, to_status: str) -> dict[str, Any]:
    return {"finding_id": fid, "run_id": run_id, "at": at, "from_status": from_status, "to_status": to_status}


def _finding_row(f: Finding, run_id: str, now: datetime) -> dict[str, Any]:
    c = f.credential
    p = f.person
    return {
        "finding_id": f.finding_id,
        "rule": f.rule.value,
        "severity": f.severity.value,
        "status": f.status.value,
        "source": f.account.source,
        "system": f.account.system,
        "scope": f.account.scope,
        "account_id": f.account.account_id,
        "account_name": f.account.username,
        "account_kind": f.account.kind.value,
        "account_uid": f.account.uid,
        "credential_id": c.credential_id if c else None,
        "credential_kind": c.kind.value if c else None,
        "credential_active": c.active if c else None,
        "credential_detail": c.detail if c else "",
        "credential_created_at": c.created_at if c else None,
        "credential_last_used_at": c.last_used_at if c else None,
        "person_source": p.source if p else None,
        "person_employee_id": p.employee_id if p else None,
        "person_email": p.email if p else None,
        "person_name": p.name if p else None,
        "person_status": p.status.value if p else None,
        "person_terminated_at": p.terminated_at if p else None,
        "candidates_json": json.dumps([[c2.employee_id, c2.email, c2.name] for c2 in f.candidates]),
        "reason": f.reason,
        "first_seen": f.first_seen,
        "last_seen": now,
        "due_at": f.due_at,
        "resolved_at": None,
        "exemption_id": f.exemption_id,
        "stale": f.stale,
        "run_id": run_id,
    }


def _finding(r: RowMapping) -> Finding:
    from offboard_audit.core.records import Rule, Severity

    account = Account(
        source=r["source"],
        system=r["system"],
        account_id=r["account_id"],
        username=r["account_name"],
        enabled=True,
        kind=AccountKind(r["account_kind"]),
        scope=r["scope"],
        uid=r["account_uid"],
    )
    person = None
    if r["person_employee_id"] is not None:
        person = Person(
            employee_id=r["person_employee_id"],
            email=r["person_email"],
            name=r["person_name"] or "",
            status=PersonStatus(r["person_status"]),
            terminated_at=r["person_terminated_at"],
            source=r["person_source"] or "",
        )
    credential = None
    if r["credential_id"] is not None:
        credential = Credential(
            source=r["source"],
            account_id=r["account_id"],
            credential_id=r["credential_id"],
            kind=CredentialKind(r["credential_kind"]),
            active=bool(r["credential_active"]),
            created_at=r["credential_created_at"],
            last_used_at=r["credential_last_used_at"],
            detail=r["credential_detail"],
            scope=r["scope"],
        )
    candidates = tuple(
        Person(employee_id=e, email=m, name=n or "", status=PersonStatus.ACTIVE)
        for e, m, n in json.loads(r["candidates_json"])
    )
    return Finding(
        finding_id=r["finding_id"],
        rule=Rule(r["rule"]),
        severity=Severity(r["severity"]),
        status=FindingStatus(r["status"]),
        account=account,
        person=person,
        credential=credential,
        first_seen=r["first_seen"],
        due_at=r["due_at"],
        reason=r["reason"],
        candidates=candidates,
        exemption_id=r["exemption_id"],
        stale=r["stale"],
    )


def group_credentials(credentials: Iterable[Credential]) -> dict[tuple[str, str], list[Credential]]:
    grouped: dict[tuple[str, str], list[Credential]] = defaultdict(list)
    for c in credentials:
        grouped[(c.source, c.account_id)].append(c)
    return grouped
