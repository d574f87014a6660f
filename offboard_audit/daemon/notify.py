"""Notifications: a JSON POST (with a Slack-compatible ``text`` field) to configured webhook URLs.

Sent on new critical or high findings, on a tripped circuit breaker and on failed or refused
actions. Delivery happens on a background thread with retries; a notification failure is
logged (without the URL's path or query, which often embed tokens) and never fails a run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from offboard_audit.config import NotificationConfig
from offboard_audit.core.records import FindingStatus, RunResult, Severity

log = logging.getLogger(__name__)

_NOTIFY_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)


@dataclass(frozen=True, slots=True)
class FailedAction:
    action_id: str
    source: str
    action: str
    error: str


@dataclass(frozen=True, slots=True)
class Message:
    """One notification. ``text`` is what chat tools show; ``data`` is for machines."""

    kind: str
    text: str
    data: tuple[tuple[str, Any], ...] = ()

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "source": "offboard-audit", **dict(self.data)}


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook URLs carry their token in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def configured_urls(config: NotificationConfig, env: Mapping[str, str]) -> tuple[str, ...]:
    urls = list(config.urls)
    if config.urls_env:
        urls.extend(u.strip() for u in env.get(config.urls_env, "").split(",") if u.strip())
    return tuple(dict.fromkeys(urls))


def run_messages(
    result: RunResult,
    kind: str,
    failed_actions: Sequence[FailedAction] = (),
    refused: str | None = None,
) -> list[Message]:
    """What a finished run should tell people (pure)."""
    messages: list[Message] = []
    new = [
        f
        for f in result.findings
        if f.status is FindingStatus.OPEN
        and f.severity in _NOTIFY_SEVERITIES
        and f.first_seen >= result.started_at
    ]
    if new:
        lines = [
            f"- {f.severity.value}: {f.rule.value} {f.source}/{f.account.username}"
            + (f" {f.credential.kind.value} {f.credential.credential_id}" if f.credential else "")
            + (f" (person {f.person.employee_id})" if f.person else "")
            for f in new[:20]
        ]
        more = f"\n...and {len(new) - 20} more" if len(new) > 20 else ""
        messages.append(
            Message(
                "new_findings",
                f"offboard-audit {kind} run {result.run_id}: {len(new)} new critical/high finding(s)\n"
                + "\n".join(lines)
                + more,
                (
                    ("run_id", result.run_id),
                    (
                        "findings",
                        [
                            {"id": f.finding_id, "severity": f.severity.value, "rule": f.rule.value}
                            for f in new
                        ],
                    ),
                ),
            )
        )
    if result.circuit_breaker:
        messages.append(
            Message(
                "circuit_breaker",
                f"offboard-audit {kind} run {result.run_id}: circuit breaker tripped, nothing revoked: "
                f"{result.circuit_breaker}",
                (("run_id", result.run_id), ("reason", result.circuit_breaker)),
            )
        )
    if refused and not result.circuit_breaker:
        messages.append(
            Message(
                "revocation_refused",
                f"offboard-audit {kind} run {result.run_id}: revocation refused: {refused}",
                (("run_id", result.run_id), ("reason", refused)),
            )
        )
    if failed_actions:
        lines = [f"- {a.source} {a.action} ({a.action_id}): {a.error}" for a in failed_actions[:20]]
        messages.append(
            Message(
                "failed_actions",
                f"offboard-audit {kind} run {result.run_id}: {len(failed_actions)} action(s) failed\n"
                + "\n".join(lines),
                (
                    ("run_id", result.run_id),
                    (
                        "actions",
                        [{"id": a.action_id, "source": a.source, "error": a.error} for a in failed_actions],
                    ),
                ),
            )
        )
    return messages


class Notifier:
    """Posts messages to every configured URL, in the background, with retries."""

    def __init__(
        self,
        config: NotificationConfig,
        env: Mapping[str, str],
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 0.5,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.urls = configured_urls(config, env)
        self.retries = config.retries
        self._client = client or httpx.Client(timeout=config.timeout.total_seconds())
        self._sleep = sleep
        self._backoff = backoff
        self._on_failure = on_failure
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify")
        self._lock = threading.Lock()
        self.failures = 0
        self.sent = 0

    def send(self, messages: Sequence[Message]) -> list[Future[None]]:
        """Queue the messages for delivery; returns futures (tests wait on them)."""
        futures: list[Future[None]] = []
        if not self.urls:
            return futures
        for message in messages:
            for url in self.urls:
                futures.append(self._pool.submit(self._deliver, url, message))
        return futures

    def deliver(self, url: str, message: Message) -> bool:
        """Post one message with retries; True when a 2xx answer came back. Never raises."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                response = self._client.post(url, json=message.payload())
                if 200 <= response.status_code < 300:
                    with self._lock:
                        self.sent += 1
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            log.warning(
                "notification %s to %s failed (attempt %d/%d): %s",
                message.kind,
                redact_url(url),
                attempt + 1,
                attempts,
                problem,
            )
            if attempt + 1 < attempts:
                self._sleep(self._backoff * (2**attempt))
        with self._lock:
            self.failures += 1
        if self._on_failure is not None:
            self._on_failure()
        return False

    def _deliver(self, url: str, message: Message) -> None:
        try:
            self.deliver(url, message)
        except Exception:  # a notification must never take anything else down
            log.exception("notification %s to %s crashed", message.kind, redact_url(url))

    def close(self, timeout: float = 2.0) -> None:
        """Stop taking messages; wait up to ``timeout`` for queued ones, then give up on them."""
        deadline = time.monotonic() + timeout
        self._pool.shutdown(wait=False, cancel_futures=False)
        threads = list(getattr(self._pool, "_threads", ()))
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._client.close()
