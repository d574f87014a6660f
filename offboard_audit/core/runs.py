"""What became of a run and of each source in it: statuses and the run's result."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from offboard_audit.core.records import Finding, FindingStatus, ScopeFailure, Severity


class SourceStatus(StrEnum):
    OK = "ok"
    # Read succeeded but something was skipped (bad HR rows, a warning); the data is usable.
    DEGRADED = "degraded"
    FAILED = "failed"


class RunStatus(StrEnum):
    """What became of a reconcile run (stored on the run, shown by /healthz and the metrics)."""

    RUNNING = "running"
    DONE = "done"
    DEGRADED = "degraded"  # every source read, some with warnings or skipped rows
    FAILED_SOURCES = "failed_sources"  # a source or a scope of one failed; the others were used
    FAILED = "failed"  # the run itself raised: nothing of it can be trusted
    ABANDONED = "abandoned"  # its process stopped before it finished

    @property
    def completed(self) -> bool:
        """The run finished reading its sources (with or without failed ones)."""
        return self in (RunStatus.DONE, RunStatus.DEGRADED, RunStatus.FAILED_SOURCES)


@dataclass(frozen=True, slots=True)
class SourceRun:
    """How one source fared in one run."""

    name: str
    system: str
    status: SourceStatus
    error: str | None = None
    counts: tuple[tuple[str, int], ...] = ()
    failed_scopes: tuple[ScopeFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    stale: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    started_at: datetime
    finished_at: datetime
    sources: tuple[SourceRun, ...]
    findings: tuple[Finding, ...]
    circuit_breaker: str | None = None

    def summary(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity if s is not Severity.INFO and s is not Severity.LOW}
        for f in self.findings:
            if f.status is FindingStatus.OPEN:
                counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
        return counts

    @property
    def status(self) -> RunStatus:
        return run_status(self.sources)

    @property
    def any_source_failed(self) -> bool:
        return self.status is RunStatus.FAILED_SOURCES


def run_status(sources: Iterable[SourceRun]) -> RunStatus:
    """The status of a run that read its sources: any failed source or scope makes it
    ``failed_sources``, else any degraded one ``degraded``, else ``done``."""
    status = RunStatus.DONE
    for s in sources:
        if s.status is SourceStatus.FAILED or s.failed_scopes:
            return RunStatus.FAILED_SOURCES
        if s.status is SourceStatus.DEGRADED:
            status = RunStatus.DEGRADED
    return status


def open_not_read(stored: Iterable[Finding], result: RunResult) -> tuple[Finding, ...]:
    """The open findings among ``stored`` whose source ``result`` did not read: those of the
    sources left out by ``audit --source`` (or of a source no longer configured). They are still
    open and ``findings``/``revoke`` still act on them, but the run's findings cannot include
    them, so its output counts them apart for nobody to read "no findings" as "nothing open"."""
    read = {s.name for s in result.sources}
    return tuple(f for f in stored if f.status is FindingStatus.OPEN and f.source not in read)
