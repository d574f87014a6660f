"""The daemon's run bookkeeping and its revocation engine: the store that remembers the runs this
process started (and writes each finished run's notifications with it), the shared engine, and
the daemon's kill test hook."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from offboard_audit.config import Config
from offboard_audit.core.jobs import Notification
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.runs import RunResult, RunStatus
from offboard_audit.engine.revocation import ApplyReport
from offboard_audit.storage.outbox import TickStore, add_notifications
from offboard_audit.storage.store import Store

# Test hook for fault tests that drive a daemon process from outside: the point named in this
# variable SIGKILLs the process there. Points: "<kind>-run-started" (a run of that kind is
# recorded running, nothing else of it stored), "<kind>-run-finished" (the run and its
# notifications are stored, nothing is sent yet).
KILL_AT_ENV = "OFFBOARD_AUDIT_TEST_DAEMON_KILL_AT"


def test_point(name: str) -> None:
    if os.environ.get(KILL_AT_ENV) == name:
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


RunNotifications = Callable[[RunResult, str], Sequence[Notification]]


class RunTrackingStore(Store):
    """The store, remembering which runs this process started (to record them if abandoned),
    writing each finished run's notifications (new findings, a tripped breaker) with the run, and
    telling the tick this thread runs (a scheduled run) which run it started."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._started: dict[str, str] = {}
        self._mutex = threading.Lock()
        self._thread = threading.local()
        self.run_notifications: RunNotifications | None = None
        self.ticks = TickStore(self)

    def running_tick(self, tick_id: str | None) -> None:
        """The tick this thread's next run belongs to (None: not a scheduled run)."""
        self._thread.tick = tick_id

    def start_run(self, run_id: str, started_at: datetime, kind: str = "audit") -> None:
        super().start_run(run_id, started_at, kind)
        with self._mutex:
            self._started[run_id] = kind
        tick = getattr(self._thread, "tick", None)
        if tick is not None:
            self.ticks.set_run(tick, run_id)
        test_point(f"{kind}-run-started")

    def finish_run(self, result: RunResult, status: RunStatus | None = None) -> Any:
        """Finish the run and, in the same transaction as the run's own record where the caller
        holds one (``Store.atomic``), write its notifications to the outbox. Returns what the
        store's ``finish_run`` returns (False: the run could not finish, nothing is written)."""
        # Called by name: the base returns whether the run finished (older stores: None).
        finished = getattr(super(), "finish_run")(result, status)  # noqa: B009
        if finished is False:
            return False
        with self._mutex:
            kind = self._started.get(result.run_id, "audit")
        if status is None and self.run_notifications is not None:
            rows = self.run_notifications(result, kind)
            if rows:
                with self.begin() as conn:
                    add_notifications(conn, rows)
        return finished

    def abandon_runs(self, now: datetime) -> list[str]:
        """Record the runs this process started and did not finish as abandoned."""
        with self._mutex:
            ids = list(self._started)
        return self.mark_abandoned(ids, now)


class RevocationEngineLike(Protocol):
    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> ApplyReport: ...

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> ApplyReport: ...


EngineFactory = Callable[[], RevocationEngineLike]


def shared_engine(config: Config, store: Store, ctx: SourceContext, actor: str) -> EngineFactory:
    """One revocation engine for the process, built on first use: its revokers (and their API
    clients) are built once. The engine serialises its passes with the revocation lock, so
    sharing it is safe."""
    built: list[RevocationEngineLike] = []
    mutex = threading.Lock()

    def factory() -> RevocationEngineLike:
        with mutex:
            if not built:
                from offboard_audit.engine.revocation import RevocationEngine

                built.append(RevocationEngine(config, store, ctx, actor=actor))
            return built[0]

    return factory
