"""Runs and how each source fared in them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import RowMapping, insert, select, update

from offboard_audit.core.records import RunResult, RunStatus, ScopeFailure, SourceRun, SourceStatus
from offboard_audit.core.stored import RunInfo, RunKind
from offboard_audit.storage.db import Database
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import RUNS, SOURCE_RUNS

# A source counts as read when it was read with or without warnings (not when it failed).
_READ = (SourceStatus.OK.value, SourceStatus.DEGRADED.value)


class RunStore(Database):
    def start_run(self, run_id: str, started_at: datetime, kind: str = RunKind.AUDIT) -> None:
        with self.begin() as conn:
            conn.execute(
                insert(RUNS).values(
                    run_id=run_id,
                    kind=kind,
                    started_at=started_at,
                    status=RunStatus.RUNNING.value,
                    summary_json="{}",
                )
            )

    def finish_run(self, result: RunResult, status: RunStatus | None = None) -> None:
        """Record a finished run with its sources; ``status`` defaults to the result's own
        (:func:`offboard_audit.core.records.run_status`)."""
        with self.begin() as conn:
            conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == result.run_id)
                .values(
                    finished_at=result.finished_at,
                    status=(status or result.status).value,
                    circuit_breaker=result.circuit_breaker,
                    summary_json=json.dumps(result.summary()),
                )
            )
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

    def mark_abandoned(self, run_ids: Sequence[str], now: datetime) -> list[str]:
        """Mark those of ``run_ids`` that are still running as abandoned (their process is
        stopping); returns their ids."""
        if not run_ids:
            return []
        running = RunStatus.RUNNING.value
        with self.begin() as conn:
            ids = list(
                conn.execute(
                    select(RUNS.c.run_id).where(RUNS.c.run_id.in_(list(run_ids)), RUNS.c.status == running)
                ).scalars()
            )
            if ids:
                conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(ids), RUNS.c.status == running)
                    .values(status=RunStatus.ABANDONED.value, finished_at=now)
                )
        return ids

    def latest_run(self, kind: str | None = None) -> RunInfo | None:
        """The newest finished run (of ``kind``, or of any kind)."""
        q = select(RUNS).where(RUNS.c.finished_at.is_not(None))
        if kind:
            q = q.where(RUNS.c.kind == kind)
        with self.begin() as conn:
            row = conn.execute(q.order_by(RUNS.c.started_at.desc()).limit(1)).mappings().first()
        return record_of(RunInfo, row) if row is not None else None

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


def _source_run(r: RowMapping) -> SourceRun:
    return record_of(
        SourceRun,
        r,
        counts=tuple(json.loads(r["counts_json"]).items()),
        failed_scopes=tuple(ScopeFailure(s, e) for s, e in json.loads(r["failed_scopes_json"])),
        warnings=tuple(json.loads(r["warnings_json"])),
    )
