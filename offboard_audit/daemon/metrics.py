"""Prometheus metrics of one daemon process, exposed through ``prometheus_client`` (a registry per
daemon, so two daemons in one process, as in tests, never mix their numbers).

Counters count since the process started (Prometheus handles restarts); gauges describe the
newest run, or what the database holds at scrape time (incomplete jobs, notifications not
delivered). Each replica exposes its own numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from offboard_audit.core.records import FindingStatus, Severity
from offboard_audit.core.runs import RunResult, SourceStatus

# The ``*_created`` series of every counter and histogram are not part of our metrics.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# Seconds from termination to revocation: from a second to a week.
REVOCATION_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]

# name -> (type, help, label names)
_DECLARED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "offboard_audit_runs_total": (
        "counter",
        "Reconcile runs finished, by kind and outcome (done, degraded, failed_sources; refused when "
        "the circuit breaker tripped or the revocation was refused; error when the run raised).",
        ("kind", "status"),
    ),
    "offboard_audit_findings": ("gauge", "Open findings of the newest full run, by severity.", ("severity",)),
    "offboard_audit_source_failures_total": (
        "counter",
        "Source reads that failed (whole or some scopes).",
        ("source",),
    ),
    "offboard_audit_actions_total": ("counter", "Revocation actions, by result status.", ("result",)),
    "offboard_audit_webhook_requests_total": (
        "counter",
        "HR webhook requests, by HTTP status code.",
        ("status",),
    ),
    "offboard_audit_termination_to_revocation_seconds": (
        "histogram",
        "Time from a person's termination (effective_at) to a credential of theirs being disabled.",
        (),
    ),
    "offboard_audit_webhook_job_seconds": (
        "histogram",
        "Time from accepting an HR webhook event to its job finishing.",
        ("kind", "state"),
    ),
    "offboard_audit_webhook_jobs_total": (
        "counter",
        "Job attempts that ended, by kind and outcome (done, failed, refused, conflict, incomplete, "
        "superseded, cancelled).",
        ("kind", "outcome"),
    ),
    "offboard_audit_webhook_jobs_incomplete": (
        "gauge",
        "Jobs waiting to be retried because a read of their person failed (database, at scrape).",
        (),
    ),
    "offboard_audit_circuit_breaker_trips_total": (
        "counter",
        "Runs whose HR circuit breaker tripped.",
        ("kind",),
    ),
    "offboard_audit_notifications_failed_total": (
        "counter",
        "Notifications given up (undeliverable) by this process.",
        (),
    ),
    "offboard_audit_notifications_delivered_total": (
        "counter",
        "Notifications delivered by this process.",
        (),
    ),
    "offboard_audit_notifications_pending": (
        "gauge",
        "Notifications in the outbox not delivered yet (database, at scrape).",
        (),
    ),
    "offboard_audit_notifications_undeliverable": (
        "gauge",
        "Notifications in the outbox given up after their retries (database, at scrape).",
        (),
    ),
    "offboard_audit_leader": ("gauge", "1 when this replica runs the schedule, else 0.", ()),
}


class Metrics:
    """Thread-safe counters, gauges and histograms of one daemon, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._scrape_hooks: list[Callable[[Metrics], None]] = []
        for name, (kind, help_text, labels) in _DECLARED.items():
            if kind == "counter":
                self._metrics[name] = Counter(name, help_text, labels, registry=self.registry)
            elif kind == "gauge":
                self._metrics[name] = Gauge(name, help_text, labels, registry=self.registry)
            else:
                buckets = REVOCATION_BUCKETS if name.endswith("revocation_seconds") else JOB_BUCKETS
                self._metrics[name] = Histogram(
                    name, help_text, labels, buckets=buckets, registry=self.registry
                )
        for sev in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW):
            self.set("offboard_audit_findings", 0, (("severity", sev.value),))
        self.set("offboard_audit_leader", 0)

    def _child(self, name: str, labels: Labels) -> Counter | Gauge | Histogram:
        metric = self._metrics[name]
        return metric.labels(**dict(labels)) if labels else metric

    # --- primitives -----------------------------------------------------------------------

    def inc(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Counter | Gauge)
        child.inc(amount)

    def set(self, name: str, value: float, labels: Labels = ()) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Gauge)
        child.set(value)

    def observe(self, name: str, value: float, labels: Labels = ()) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Histogram)
        child.observe(value)

    def value(self, name: str, labels: Labels = ()) -> float:
        """A counter's or gauge's value, or a histogram's observation count (0 when unseen)."""
        wanted = dict(labels)
        kind = _DECLARED[name][0]
        sample_name = f"{name}_count" if kind == "histogram" else name
        for family in self.registry.collect():
            for s in family.samples:
                if s.name == sample_name and s.labels == wanted:
                    return float(s.value)
        return 0.0

    def on_scrape(self, hook: Callable[[Metrics], None]) -> None:
        """Call ``hook`` before each exposition (gauges read from the database)."""
        self._scrape_hooks.append(hook)

    # --- domain helpers -------------------------------------------------------------------

    def record_run(self, result: RunResult, kind: str, status: str) -> None:
        self.inc("offboard_audit_runs_total", (("kind", kind), ("status", status)))
        for s in result.sources:
            if s.status is SourceStatus.FAILED or s.failed_scopes:
                self.inc("offboard_audit_source_failures_total", (("source", s.name),))
        if result.circuit_breaker:
            self.inc("offboard_audit_circuit_breaker_trips_total", (("kind", kind),))
        if kind == "audit":
            counts = {sev: 0 for sev in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)}
            for f in result.findings:
                if f.status is FindingStatus.OPEN and f.severity in counts:
                    counts[f.severity] += 1
            for sev, n in counts.items():
                self.set("offboard_audit_findings", n, (("severity", sev.value),))

    def record_actions(self, statuses: Sequence[str]) -> None:
        for status in statuses:
            self.inc("offboard_audit_actions_total", (("result", status),))

    def record_webhook(self, status_code: int) -> None:
        self.inc("offboard_audit_webhook_requests_total", (("status", str(status_code)),))

    # --- exposition -----------------------------------------------------------------------

    def render(self) -> str:
        with self._lock:
            for hook in self._scrape_hooks:
                hook(self)
            return generate_latest(self.registry).decode("utf-8")
