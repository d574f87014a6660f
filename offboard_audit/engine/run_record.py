"""A pipeline run's own record: its id, its ``running`` row and the lease a thread renews on it
while the run goes on, its finished record, and the fault-test hooks around its commit.

A run that raises is recorded as failed when the database lets it; otherwise it stays
``running`` until it is taken for dead and marked ``abandoned`` (``storage/runs.py``). A run
marked abandoned before it finishes cannot finish (:class:`RunAbandoned`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from offboard_audit.core.records import Finding
from offboard_audit.core.runs import RunResult, RunStatus, SourceRun
from offboard_audit.storage.store import Store

# These lines keep the logger they had in pipeline.py, so logging configurations that name it
# still see them.
log = logging.getLogger("offboard_audit.engine.pipeline")


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class RunAbandoned(RuntimeError):
    """The run was marked abandoned (taken for dead) before it could finish: nothing of it
    was stored."""


# Test hooks, for fault tests that drive a real process from outside: the point named in
# OFFBOARD_AUDIT_TEST_KILL_AT SIGKILLs the process there; the one in OFFBOARD_AUDIT_TEST_PAUSE_AT
# writes "PAUSED <point>" to stderr and waits for a line on stdin. Points: "before-commit" (every
# source read, nothing of the run stored yet) and "findings-stored" (the run's findings written,
# its transaction not committed).
KILL_AT_ENV = "OFFBOARD_AUDIT_TEST_KILL_AT"
PAUSE_AT_ENV = "OFFBOARD_AUDIT_TEST_PAUSE_AT"


@dataclass(frozen=True, slots=True)
class FaultPoints:
    """The fault-test points of a pipeline: where to pause (say so on ``stderr``, wait for a line
    on ``stdin``) and where to SIGKILL the process. A process reads them from its environment
    (:meth:`from_env`); in-process tests inject them with streams of their own."""

    pause_at: str | None = None
    kill_at: str | None = None
    # None: the process's own streams at the moment of the pause.
    stdin: TextIO | None = None
    stderr: TextIO | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FaultPoints:
        values = os.environ if env is None else env
        return cls(pause_at=values.get(PAUSE_AT_ENV) or None, kill_at=values.get(KILL_AT_ENV) or None)

    def hit(self, name: str) -> None:
        """Pause and/or die here if this point is the one named."""
        if self.pause_at == name:
            err = self.stderr or sys.stderr
            err.write(f"PAUSED {name}\n")
            err.flush()
            (self.stdin or sys.stdin).readline()
        if self.kill_at == name:
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def recorded(store: Store, run_id: str, now: datetime, kind: str) -> Iterator[None]:
    """Start the run's record and hold its lease while it goes on; a run that raises is
    recorded as failed (when the database lets it: otherwise it stays ``running`` until it is
    taken for dead and abandoned; nothing of it was stored either way)."""
    store.start_run(run_id, now, kind)
    lease = LeaseKeeper(store, run_id)
    try:
        yield
    except BaseException as exc:
        lease.stop()
        failed = RunResult(run_id, now, max(now, datetime.now(UTC)), (), ())
        try:
            store.finish_run(failed, RunStatus.FAILED)
        except Exception as record_error:
            # The error that stopped the run is the one to report (a locked database fails
            # both); the run is abandoned once taken for dead.
            log.warning("run %s failed (%s) and could not be recorded failed: %s", run_id, exc, record_error)
        raise
    finally:
        lease.stop()


def finish(
    store: Store,
    run_id: str,
    now: datetime,
    sources: Sequence[SourceRun],
    findings: Sequence[Finding],
    breaker: str | None,
) -> RunResult:
    """Record the run finished (inside its transaction); raises :class:`RunAbandoned` when it
    was taken for dead meanwhile."""
    result = RunResult(run_id, now, max(now, datetime.now(UTC)), tuple(sources), tuple(findings), breaker)
    if not store.finish_run(result):
        # Raised inside the run's transaction: everything it wrote is rolled back.
        raise RunAbandoned(
            f"run {run_id} was marked abandoned (taken for dead) before it finished; "
            "nothing of it was stored: run it again"
        )
    return result


class LeaseKeeper:
    """Renews a running run's lease on a thread of its own until stopped (or until the run is
    no longer running). A renewal that fails is logged and tried again at the next tick."""

    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._stopped = threading.Event()
        if not store.private_database:  # nobody else sees an in-memory database's leases
            threading.Thread(target=self._renew, name=f"run-lease-{run_id}", daemon=True).start()

    def stop(self) -> None:
        # Not joined: a renewal may be waiting on a database lock, and the run is over either way.
        self._stopped.set()

    def _renew(self) -> None:
        while not self._stopped.wait(self._store.run_renew_every):
            try:
                if not self._store.renew_run(self._run_id):
                    if not self._stopped.is_set():
                        log.warning(
                            "run %s was marked abandoned while it ran: it cannot finish", self._run_id
                        )
                    return
            except Exception as exc:
                log.warning("cannot renew the lease of run %s: %s", self._run_id, exc)
