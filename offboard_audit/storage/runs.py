"""Runs and how each source fared in them.

A run row is ``running`` from :meth:`RunStore.start_run` until :meth:`RunStore.finish_run`, which
a run calls in the same transaction as the rest of what it stores (``Store.atomic``). While it
runs, its process renews a lease on the row (:meth:`RunStore.renew_run`). A run whose process is
gone is marked ``abandoned`` by the next run that starts, or by anyone calling
:meth:`RunStore.abandon_dead_runs`: at once when its owner was a process on this host that no
longer exists (like the SQLite locks of ``storage/locks.py``), else once its lease ran out (its
process killed on another host, its machine lost). Nothing of an abandoned run was stored, and an
abandoned run can no longer finish: it is never the run whose verdict (its circuit breaker) the
revocation engine reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, RowMapping, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

from offboard_audit.core.records import ScopeFailure
from offboard_audit.core.runs import RunResult, RunStatus, SourceRun, SourceStatus
from offboard_audit.core.stored import RunInfo, RunKind
from offboard_audit.storage.db import Database
from offboard_audit.storage.locks import holder_dead, holder_id
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import RUNS, SOURCE_RUNS

# A source counts as read when it was read with or without warnings (not when it failed).
_READ = (SourceStatus.OK.value, SourceStatus.DEGRADED.value)
_RUNNING = RunStatus.RUNNING.value

# How long a run stays ``running`` without its process renewing the lease. Its process renews it
# every quarter of that (``run_renew_every``), so a renewal may wait out a full SQLite busy
# timeout (30 s) twice before anybody can take the run for dead.
RUN_LEASE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class RunOverview:
    """A stored run as ``offboard-audit runs`` lists it."""

    info: RunInfo
    # Its open findings per severity, as it counted them when it finished (``RunResult.summary``).
    summary: tuple[tuple[str, int], ...]
    # The sources that failed in it, or a scope of which failed (what makes it ``failed_sources``).
    failed_sources: tuple[str, ...]


def _wall_clock() -> datetime:
    # Leases are about processes being alive: wall-clock time, never a run's logical ``now``.
    return datetime.now(UTC)


class RunStore(Database):
    # Instances may shorten it (tests); every process sharing a database should use the same.
    run_lease: timedelta = RUN_LEASE

    @property
    def run_renew_every(self) -> float:
        """Seconds between two renewals of a running run's lease."""
        return self.run_lease.total_seconds() / 4

    @property
    def private_database(self) -> bool:
        """An in-memory database: one connection shared by every thread and seen by no other
        process, so there is nobody to tell a lease to (and no second connection to renew on)."""
        return isinstance(self.engine.pool, StaticPool)

    def start_run(self, run_id: str, started_at: datetime, kind: str = RunKind.AUDIT) -> None:
        """Record a run as ``running`` under a lease held by this process. Runs whose process is
        gone are marked abandoned first (:meth:`abandon_dead_runs`)."""
        now = _wall_clock()
        with self.begin() as conn:
            _abandon_dead(conn, now)
            conn.execute(
                insert(RUNS).values(
                    run_id=run_id,
                    kind=kind,
                    started_at=started_at,
                    status=_RUNNING,
                    summary_json="{}",
                    owner=holder_id("run")[:255],
                    lease_until=now + self.run_lease,
                )
            )

    def renew_run(self, run_id: str) -> bool:
        """Extend the lease of a running run; False when it is no longer running (finished, or
        marked abandoned because the lease had run out)."""
        if self.private_database:
            return True
        with self.begin() as conn:
            done = conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.status == _RUNNING)
                .values(lease_until=_wall_clock() + self.run_lease)
            )
        return bool(done.rowcount)

    def abandon_dead_runs(self, now: datetime | None = None) -> list[str]:
        """Mark the running runs whose process is gone as abandoned: their owner was a process on
        this host that no longer exists, or their lease ran out before ``now`` (default: the wall
        clock). Returns their ids."""
        with self.begin() as conn:
            return _abandon_dead(conn, now or _wall_clock())

    def finish_run(self, result: RunResult, status: RunStatus | None = None) -> bool:
        """Record a run as finished with its sources; ``status`` defaults to the result's own
        (:func:`offboard_audit.core.runs.run_status`).

        Only a ``running`` run finishes: False (and nothing written) when it was marked abandoned
        meanwhile. A run calls this inside the transaction of everything else it stores, and rolls
        it all back on False.
        """
        with self.begin() as conn:
            done = conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == result.run_id, RUNS.c.status == _RUNNING)
                .values(
                    finished_at=result.finished_at,
                    status=(status or result.status).value,
                    circuit_breaker=result.circuit_breaker,
                    summary_json=json.dumps(result.summary()),
                    lease_until=None,
                )
            )
            if not done.rowcount:
                return False
            for s in result.sources:
                conn.execute(
                    insert(SOURCE_RUNS).values(
                        row_of(
                            s,
                            SOURCE_RUNS,
                            run_id=result.run_id,
                            counts_json=json.dumps(dict(s.counts)),
                            failed_scopes_json=json.dumps([[f.scope, f.error] for f in s.failed_scopes]),
                            warnings_json=json.dumps(list(s.warnings)),
                        )
                    )
                )
        return True

    def mark_abandoned(self, run_ids: Sequence[str], now: datetime) -> list[str]:
        """Mark those of ``run_ids`` that are still running as abandoned (their process is
        stopping); returns their ids."""
        if not run_ids:
            return []
        with self.begin() as conn:
            ids = list(
                conn.execute(
                    select(RUNS.c.run_id).where(RUNS.c.run_id.in_(list(run_ids)), RUNS.c.status == _RUNNING)
                ).scalars()
            )
            _abandon(conn, ids, now)
        return ids

    def run_info(self, run_id: str) -> RunInfo | None:
        with self.begin() as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).mappings().first()
        return record_of(RunInfo, row) if row is not None else None

    def latest_run(self, kind: str | None = None) -> RunInfo | None:
        """The newest finished run of ``kind``; without ``kind``, the run whose verdict speaks
        for the stored findings (what ``revoke`` checks before acting on them).

        Abandoned runs are skipped: they stored nothing, so the newest run that did (and its
        circuit breaker) still speaks for the stored findings. Without ``kind``, a run about one
        person (``targeted``) never stands in for a full run whose circuit breaker tripped: it
        re-read nobody else, and the findings that full run stored are still there, so the
        newest full run is returned instead of a targeted run that finished after it.
        """
        if kind:
            return self._newest_finished(RUNS.c.kind == kind)
        newest = self._newest_finished()
        if newest is None or newest.kind != RunKind.TARGETED.value:
            return newest
        full = self._newest_finished(RUNS.c.kind != RunKind.TARGETED.value)
        return full if full is not None and full.circuit_breaker else newest

    def latest_completed_run(self, kinds: Sequence[str], *, untripped: bool = False) -> RunInfo | None:
        """The newest run of one of ``kinds`` that finished reading its sources (its status is
        ``completed``): a run that raised stored nothing, so it never speaks for what is stored.
        ``untripped``: only a run whose circuit breaker did not trip (or was released)."""
        completed = [s.value for s in RunStatus if s.completed]
        where = [RUNS.c.kind.in_(list(kinds)), RUNS.c.status.in_(completed)]
        if untripped:
            where.append(RUNS.c.circuit_breaker.is_(None))
        return self._newest_finished(*where)

    def _newest_finished(self, *where: ColumnElement[bool]) -> RunInfo | None:
        q = select(RUNS).where(
            RUNS.c.finished_at.is_not(None), RUNS.c.status != RunStatus.ABANDONED.value, *where
        )
        with self.begin() as conn:
            row = conn.execute(q.order_by(RUNS.c.started_at.desc()).limit(1)).mappings().first()
        return record_of(RunInfo, row) if row is not None else None

    def recent_runs(self, limit: int) -> list[RunOverview]:
        """The newest ``limit`` runs of every kind, newest first, running and abandoned ones
        included, each with its findings summary and the sources that failed in it."""
        with self.begin() as conn:
            q = select(RUNS).order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc()).limit(limit)
            rows = conn.execute(q).mappings().all()
            failed: dict[str, list[str]] = {r["run_id"]: [] for r in rows}
            s = SOURCE_RUNS.c
            if failed:
                sources = select(s.run_id, s.name, s.status, s.failed_scopes_json).where(
                    s.run_id.in_(list(failed))
                )
                for run_id, name, status, scopes in conn.execute(sources.order_by(s.id)):
                    # The rule of core/runs.run_status: a failed source or a failed scope of one.
                    if status == SourceStatus.FAILED.value or json.loads(scopes):
                        failed[run_id].append(name)
        return [
            RunOverview(
                record_of(RunInfo, r),
                tuple(json.loads(r["summary_json"] or "{}").items()),
                tuple(failed[r["run_id"]]),
            )
            for r in rows
        ]

    def source_runs(self, run_id: str) -> list[SourceRun]:
        with self.begin() as conn:
            rows = conn.execute(select(SOURCE_RUNS).where(SOURCE_RUNS.c.run_id == run_id)).mappings().all()
        return [_source_run(r) for r in rows]

    def last_good_read(self) -> dict[str, datetime]:
        """Per source, when the newest run that read it successfully started."""
        with self.begin() as conn:
            rows = conn.execute(
                select(SOURCE_RUNS.c.name, RUNS.c.started_at)
                .join(RUNS, RUNS.c.run_id == SOURCE_RUNS.c.run_id)
                .where(SOURCE_RUNS.c.status.in_(_READ))
            ).all()
        out: dict[str, datetime] = {}
        for name, started in rows:
            if name not in out or started > out[name]:
                out[name] = started
        return out


def _abandon_dead(conn: Connection, now: datetime) -> list[str]:
    running = conn.execute(
        select(RUNS.c.run_id, RUNS.c.owner, RUNS.c.lease_until).where(RUNS.c.status == _RUNNING)
    ).all()
    # A running row without a lease (or owner) was started before leases existed (migration
    # 0008): its process cannot renew one, so it counts as expired.
    ids = [
        run_id
        for run_id, owner, lease_until in running
        if lease_until is None or lease_until < now or holder_dead(owner)
    ]
    _abandon(conn, ids, now)
    return ids


def _abandon(conn: Connection, run_ids: Sequence[str], now: datetime) -> None:
    """Mark those of ``run_ids`` that are still running as abandoned."""
    if run_ids:
        conn.execute(
            update(RUNS)
            .where(RUNS.c.run_id.in_(list(run_ids)), RUNS.c.status == _RUNNING)
            .values(status=RunStatus.ABANDONED.value, finished_at=now, lease_until=None)
        )


def _source_run(r: RowMapping) -> SourceRun:
    return record_of(
        SourceRun,
        r,
        counts=tuple(json.loads(r["counts_json"]).items()),
        failed_scopes=tuple(ScopeFailure(s, e) for s, e in json.loads(r["failed_scopes_json"])),
        warnings=tuple(json.loads(r["warnings_json"])),
    )
