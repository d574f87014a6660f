"""The daemon: scheduled full reconciles, the HR webhook and targeted reconciles in one process.

This module wires the collaborators and runs the process; each one says how it works:

- ``scheduler.py``: leadership (the ``daemon:leader`` lock) and APScheduler, on the leader only;
- ``jobs.py``: the job runner (worker pool, ``person:<id>`` lock, job leases, takeover of the
  jobs of a daemon that died), on every replica;
- ``reconcile.py``: what a full reconcile, an HR refresh and each job do, with the revocation
  engine, metrics and notifications; ``runs.py``: the store that tracks this process's runs and
  the shared revocation engine;
- ``summary.py``: job summaries, log lines and notification messages; ``notify.py`` writes them
  to the outbox and, on the leader, delivers them;
- ``webhook.py``: the HTTP API; ``http.py``: its uvicorn server and the signal handlers;
- locks: ``storage/locks.py``, the one lock module (also the engine's revocation lock).

Stopping
    SIGTERM/SIGINT: stop taking work, stop the scheduler and the web server, wait for the
    running reconcile or job to finish; if it has not finished by the deadline, record it as
    abandoned (job ``failed``, run ``abandoned``) and exit. Exit code 0 within 10 s.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from offboard_audit.config import Config
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.jobs import Job, JobKind, JobState, NotificationState, ScheduledTick, TickState
from offboard_audit.core.protocols import AccountSource, HRSource, SourceContext
from offboard_audit.core.runs import RunResult
from offboard_audit.daemon.http import HttpServer, handle_stop_signals
from offboard_audit.daemon.jobs import JobRunner, WorkGate
from offboard_audit.daemon.logs import quiet_third_party
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.notify import Dispatcher, Notifier
from offboard_audit.daemon.reconcile import FullRun, Reconciler
from offboard_audit.daemon.runs import EngineFactory, RunTrackingStore, shared_engine
from offboard_audit.daemon.scheduler import Leadership, Schedule
from offboard_audit.daemon.webhook import WebhookSettings, create_app
from offboard_audit.engine.hr import last_hr_read
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.report.audit_trail import AuditTrail, attach
from offboard_audit.storage.locks import Clock, Locks, utc_now
from offboard_audit.storage.outbox import OutboxStore
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(minutes=1)


def new_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def open_store(url: str) -> Store:
    """Open the database; ``Store.open`` serialises concurrent schema upgrades itself."""
    return Store.open(url)


# APScheduler persists jobs by a textual reference to a module-level function, so the stored
# job calls ``scheduled_reconcile`` (``offboard_audit.daemon.service:scheduled_reconcile`` in
# databases scheduled by every version so far) and this slot says which daemon runs it.
_ACTIVE: list[Daemon] = []
_ACTIVE_LOCK = threading.Lock()


def scheduled_reconcile(kind: str) -> None:
    """Entry point of the persisted APScheduler jobs."""
    with _ACTIVE_LOCK:
        daemon = _ACTIVE[-1] if _ACTIVE else None
    if daemon is None:
        log.warning("scheduled %s fired with no daemon running in this process", kind)
        return
    daemon.run_scheduled(kind)


def check_webhook_secret(config: Config, secret: bytes | None, options: DaemonOptions) -> None:
    """The webhook needs its HMAC secret: checked before anything else (migrations included)."""
    if options.webhook and options.serve_http and not secret:
        raise ConfigError(
            f"the webhook needs its HMAC secret in ${config.webhook.secret_env} "
            "(or set [webhook] enabled = false, or run with --no-webhook)",
            key="webhook.secret_env",
        )


@dataclass(frozen=True)
class DaemonOptions:
    node: str = ""
    poll_interval: float = 2.0  # leadership retries and due-work checks
    lease_ttl: float = 15.0  # SQLite lease of the leader lock; PostgreSQL locks die with their connection
    workers: int = 4  # concurrent webhook jobs
    person_lock_timeout: float = 120.0
    stop_deadline: float = 7.0  # seconds after SIGTERM before running work is abandoned
    # Seconds a daemon owns a queued/running job without renewing; None: [webhook] job_lease
    # or 30. Also the SQLite lease of the ``person:<id>`` lock, so both free up together.
    job_lease: float | None = None
    serve_http: bool = True
    webhook: bool = True


class Daemon:
    """One daemon process. ``serve()`` runs until SIGTERM/SIGINT or ``stop()``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        ctx: SourceContext,
        options: DaemonOptions = DaemonOptions(),
        *,
        secret: bytes | None = None,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        engine_factory: EngineFactory | None = None,
        instances: Mapping[str, HRSource | AccountSource] | None = None,
    ) -> None:
        check_webhook_secret(config, secret, options)
        tz = config.schedule.zone
        self.job_lease = (
            options.job_lease if options.job_lease is not None else config.webhook.job_lease.total_seconds()
        )
        if not self.job_lease > 0:
            raise ConfigError(f"the job lease must be more than 0 seconds, got {self.job_lease}")
        self.options = options
        self.node = options.node or new_node_id()
        self.clock = clock
        self.secret = secret
        # httpx's request line prints notification URLs (tokens) in full: never at INFO.
        quiet_third_party()
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier(config.notifications, ctx.env)
        self.store = RunTrackingStore(store.engine)
        # [audit] key_env: every audit event this daemon appends is keyed ([audit] anchor_file:
        # anchored after each reconcile and job, and the anchor sent as a notification).
        self.trail = AuditTrail.from_config(config)
        attach(self.store, self.trail)
        self.events = WebhookStore(self.store)
        self.dispatcher = Dispatcher(
            OutboxStore(self.store),
            self.notifier,
            clock,
            on_undeliverable=lambda _n: self.metrics.inc("offboard_audit_notifications_failed_total"),
            on_delivered=lambda _n: self.metrics.inc("offboard_audit_notifications_delivered_total"),
        )
        self._last_prune: datetime | None = None
        self.pipeline = Pipeline(config, self.store, ctx, instances=instances)
        self.locks = Locks(self.store, f"daemon:{self.node}", clock)
        self.gate = WorkGate()
        self.reconciler = Reconciler(
            config,
            self.store,
            self.pipeline,
            self.events,
            self.locks,
            engine_factory or shared_engine(config, self.store, ctx, f"daemon:{self.node}"),
            self.metrics,
            self.notifier,
            self.gate,
            clock,
            self.trail,
        )
        self.jobs = JobRunner(
            self.events,
            self.locks,
            self.reconciler.job_body,
            self.metrics,
            self.gate,
            node=self.node,
            clock=clock,
            lease=self.job_lease,
            workers=options.workers,
            person_lock_timeout=options.person_lock_timeout,
            retry_backoff=config.webhook.retry_backoff,
            retry_max_backoff=config.webhook.retry_max_backoff,
            notifications=lambda messages, origin: self.notifier.rows(messages, origin, self.clock()),
        )
        self.leadership = Leadership(
            self.locks,
            Schedule(self.store.engine, config.schedule, tz, scheduled_reconcile),
            self.metrics,
            self._while_leader,
            on_elected=self.recover_ticks,
            node=self.node,
            lease=options.lease_ttl,
            poll_interval=options.poll_interval,
        )
        self._stop = threading.Event()
        self._server: HttpServer | None = None
        self.metrics.on_scrape(self._database_gauges)

    @property
    def config(self) -> Config:
        return self.reconciler.config

    @config.setter
    def config(self, config: Config) -> None:
        """A new config for the runs to come (the pipeline and schedule keep theirs)."""
        self.reconciler.config = config

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    def app(self) -> Any:
        settings = WebhookSettings(self.secret) if self.options.webhook and self.secret else None
        return create_app(
            store=self.store,
            events=self.events,
            runner=self.jobs,
            metrics=self.metrics,
            settings=settings,
            clock=self.clock,
            node=self.node,
            status=lambda: {"leader": self.is_leader, "stopping": self.gate.closed},
            job_lease=timedelta(seconds=self.job_lease),
        )

    # --- the work (also what tests and ``daemon --once`` call) ------------------------------

    def run_full(self, kind: str = "audit", tick: str | None = None) -> RunResult | None:
        """One full reconcile (``audit``) or HR-only refresh; None when another process runs one.

        Anyone an HR refresh finds newly departed gets a targeted reconcile job.
        """
        run = self._full_run(kind, tick)
        return None if run is None else run.result

    def _full_run(self, kind: str, tick: str | None = None) -> FullRun | None:
        run = self.reconciler.run_full(kind, tick)
        if run is None:
            return None
        for employee_id in run.new_leavers:
            self.jobs.enqueue(JobKind.HR_REFRESH, employee_id)
        return run

    def run_scheduled(self, kind: str) -> RunResult | None:
        """A tick of the schedule: recorded (``daemon_ticks``) so that the next leader re-runs it
        if this daemon dies before it is over."""
        now = self.clock()
        tick = ScheduledTick(
            f"{kind}@{now.isoformat(timespec='seconds')}:{uuid.uuid4().hex[:8]}",
            kind,
            now,
            self.node,
            TickState.RUNNING,
            now,
        )
        self.store.ticks.start(tick)
        try:
            return self.run_full(kind, tick.tick_id)
        finally:
            self.store.ticks.finish(tick.tick_id, self.clock())

    def recover_ticks(self) -> list[tuple[str, datetime]]:
        """On becoming the leader: the scheduled ticks a previous leader left running (it died)
        are marked abandoned, with their run; returns (kind, scheduled time) of those to run
        again (the schedule applies its misfire grace)."""
        now = self.clock()
        rerun: list[tuple[str, datetime]] = []
        for t in self.store.ticks.orphaned(self.node):
            if not self.store.ticks.finish(t.tick_id, now, TickState.ABANDONED):
                continue
            if t.run_id:
                # Still running: its daemon is gone. Abandoned already: by its daemon's SIGTERM
                # path, or by a run that found its lease expired. Anything else: it finished.
                self.store.mark_abandoned([t.run_id], now)
            if t.run_id and self.store.ticks.run_status(t.run_id) not in ("abandoned", None):
                log.info(
                    "the %s tick of %s (node %s) had finished its run %s",
                    t.kind,
                    t.scheduled_at,
                    t.node,
                    t.run_id,
                )
                continue
            log.warning(
                "scheduled %s run %s of %s was left running by %s (it died): marked abandoned; "
                "re-running the missed tick",
                t.kind,
                t.run_id or "(not started)",
                t.scheduled_at.isoformat(timespec="seconds"),
                t.node,
            )
            rerun.append((t.kind, t.scheduled_at))
        return rerun

    def deliver_notifications(self) -> int:
        """Send the outbox's due notifications (the leader does this at every step)."""
        return self.dispatcher.step()

    def prune_events(self) -> int:
        """Forget webhook event ids older than ``[webhook] event_retention`` (never one received
        since the last good full HR read: the webhook's circuit breaker counts those)."""
        last_read = last_hr_read(self.store)
        if last_read is None:
            return 0  # no good HR read yet: every webhook termination still counts
        cutoff = min(self.clock() - self.config.webhook.event_retention, last_read)
        pruned = self.events.prune_events(cutoff)
        if pruned:
            log.info("forgot %d webhook event id(s) received before %s", pruned, cutoff.isoformat())
        return pruned

    def _while_leader(self) -> None:
        self.jobs.process_due()
        now = self.clock()
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            try:
                self.prune_events()
            except Exception:
                log.exception("pruning webhook events failed")

    def _database_gauges(self, metrics: Metrics) -> None:
        try:
            counts = self.dispatcher.outbox.counts()
            incomplete = len(self.events.jobs(states=[JobState.INCOMPLETE]))
        except Exception as exc:
            log.warning("metrics: database unreachable: %s", type(exc).__name__)
            return
        metrics.set("offboard_audit_notifications_pending", counts[NotificationState.PENDING])
        metrics.set("offboard_audit_notifications_undeliverable", counts[NotificationState.UNDELIVERABLE])
        metrics.set("offboard_audit_webhook_jobs_incomplete", incomplete)

    def _notification_loop(self, stop: threading.Event) -> None:
        """On the leader: send due notifications every ``poll_interval``."""
        while not stop.wait(self.options.poll_interval):
            if not self.is_leader:
                continue
            try:
                self.deliver_notifications()
            except Exception:
                log.exception("notification delivery failed")

    def run_job(self, job_id: str) -> Job | None:
        return self.jobs.run_job(job_id)

    def process_due(self) -> int:
        return self.jobs.process_due()

    def recover_jobs(self) -> list[str]:
        return self.jobs.recover()

    def renew_job_leases(self) -> set[str]:
        return self.jobs.renew_leases()

    # --- serving --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def serve(self, install_signals: bool = True) -> int:
        """Run until stopped; returns the exit code (0 on a clean stop)."""
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        try:
            if install_signals:
                handle_stop_signals(self._stop.set)
            if self.options.serve_http:
                host, port = self.config.webhook.host_port
                self._server = HttpServer(self.app(), host, port)
                if not self._server.start():
                    return 1
            leader_thread = threading.Thread(
                target=self.leadership.loop, args=(self._stop,), name="leadership", daemon=True
            )
            leader_thread.start()
            threading.Thread(
                target=self.jobs.loop,
                args=(self._stop, self.options.poll_interval),
                name="job-leases",
                daemon=True,
            ).start()
            threading.Thread(
                target=self._notification_loop, args=(self._stop,), name="notify", daemon=True
            ).start()
            log.info("daemon %s running (database %s)", self.node, self.config.database_url_masked)
            # Short waits, so that the main thread runs the signal handlers promptly.
            while not self._stop.wait(0.5):
                pass
            return self._shutdown(leader_thread)
        finally:
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)

    def _shutdown(self, leader_thread: threading.Thread) -> int:
        started = time.monotonic()
        deadline = started + self.options.stop_deadline
        self.gate.close()
        self._stop.set()
        self.leadership.stop_schedule()
        if self._server is not None:
            self._server.stop()
        self.jobs.stop_taking()
        busy = self.gate.wait_idle(deadline - time.monotonic())
        now = self.clock()
        jobs = self.jobs.abandon(now)
        runs = self.store.abandon_runs(now) if busy else []
        if jobs or runs:
            log.warning("recorded as abandoned: jobs %s, runs %s", jobs, runs)
        leader_thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.leadership.release()
        self.notifier.close(timeout=max(0.1, min(1.0, deadline + 1.5 - time.monotonic())))
        log.info("stopped after %.1f s", time.monotonic() - started)
        if busy:
            # A reconcile is still inside a connector call: it is recorded as abandoned above and
            # its action (if any) is left to the revocation engine's recovery. Do not wait for it.
            logging.shutdown()
            os._exit(0)
        return 0

    def run_once(self) -> FullRun | None:
        """``daemon --once``: one full reconcile (with auto-revoke if configured), then return
        the run and what its revocation pass did (None when no reconcile ran)."""
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        try:
            return self._full_run("audit")
        finally:
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)
            self.jobs.close()
            # What cannot be delivered now stays in the outbox for the next leader.
            try:
                self.deliver_notifications()
            except Exception:
                log.exception("notification delivery failed")
            self.notifier.close()
