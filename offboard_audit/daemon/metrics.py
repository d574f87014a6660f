"""Prometheus metrics of one daemon process, in the text exposition format (no extra dependency).

Counters count since the process started (Prometheus handles restarts); gauges describe the
newest run. Each replica exposes its own numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from offboard_audit.core.records import FindingStatus, RunResult, Severity, SourceStatus

# Seconds from termination to revocation: from a minute to a week.
REVOCATION_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = (*labels, *extra)
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.n += 1


class Metrics:
    """Thread-safe counters, gauges and histograms rendered for ``GET /metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._hist: dict[str, dict[Labels, _Histogram]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._declare("offboard_audit_runs_total", "counter", "Reconcile runs finished, by kind and status.")
        self._declare(
            "offboard_audit_findings", "gauge", "Open findings of the newest full run, by severity."
        )
        self._declare(
            "offboard_audit_source_failures_total",
            "counter",
            "Source reads that failed (whole or some scopes).",
        )
        self._declare("offboard_audit_actions_total", "counter", "Revocation actions, by result status.")
        self._declare(
            "offboard_audit_webhook_requests_total", "counter", "HR webhook requests, by HTTP status code."
        )
        self._declare(
            "offboard_audit_termination_to_revocation_seconds",
            "histogram",
            "Time from a person's termination (effective_at) to a credential of theirs being disabled.",
        )
        self._declare(
            "offboard_audit_webhook_job_seconds",
            "histogram",
            "Time from accepting an HR webhook event to its job finishing.",
        )
        self._declare(
            "offboard_audit_circuit_breaker_trips_total", "counter", "Runs whose HR circuit breaker tripped."
        )
        self._declare(
            "offboard_audit_notifications_failed_total", "counter", "Notifications given up after retries."
        )
        self._declare("offboard_audit_leader", "gauge", "1 when this replica runs the schedule, else 0.")
        for sev in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW):
            self._gauges["offboard_audit_findings"][(("severity", sev.value),)] = 0
        self._gauges["offboard_audit_leader"][()] = 0

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)
        if kind == "counter":
            self._counters[name] = {}
        elif kind == "gauge":
            self._gauges[name] = {}
        else:
            self._hist[name] = {}

    # --- primitives -----------------------------------------------------------------------

    def inc(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            series = self._counters[name]
            series[labels] = series.get(labels, 0.0) + amount

    def set(self, name: str, value: float, labels: Labels = ()) -> None:
        with self._lock:
            self._gauges[name][labels] = value

    def observe(self, name: str, value: float, labels: Labels = ()) -> None:
        buckets = REVOCATION_BUCKETS if name.endswith("revocation_seconds") else JOB_BUCKETS
        with self._lock:
            series = self._hist[name]
            if labels not in series:
                series[labels] = _Histogram(buckets)
            series[labels].observe(value)

    def value(self, name: str, labels: Labels = ()) -> float:
        with self._lock:
            if name in self._counters:
                return self._counters[name].get(labels, 0.0)
            if name in self._gauges:
                return self._gauges[name].get(labels, 0.0)
            h = self._hist[name].get(labels)
            return float(h.n) if h else 0.0

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
        out: list[str] = []
        with self._lock:
            for name, (kind, help_text) in self._help.items():
                out.append(f"# HELP {name} {help_text}")
                out.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for labels, v in sorted(self._counters[name].items()):
                        out.append(f"{name}{_labels(labels)} {_num(v)}")
                elif kind == "gauge":
                    for labels, v in sorted(self._gauges[name].items()):
                        out.append(f"{name}{_labels(labels)} {_num(v)}")
                else:
                    for labels, h in sorted(self._hist[name].items()):
                        for bound, count in zip(h.buckets, h.counts, strict=True):
                            out.append(f"{name}_bucket{_labels(labels, (('le', _num(bound)),))} {count}")
                        out.append(f"{name}_bucket{_labels(labels, (('le', '+Inf'),))} {h.n}")
                        out.append(f"{name}_sum{_labels(labels)} {_num(h.total)}")
                        out.append(f"{name}_count{_labels(labels)} {h.n}")
        return "\n".join(out) + "\n"
