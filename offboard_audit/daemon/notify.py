"""Notifications: a JSON POST (with a Slack-compatible ``text`` field) to configured webhook URLs.

What is sent, and when (new critical or high findings, a tripped circuit breaker, failed or
refused actions, a run that raised), is decided in ``summary.py``. Delivery happens here, on a
background thread with retries; a notification failure is logged (without the URL's path or
query, which often embed tokens) and never fails a run.
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

log = logging.getLogger(__name__)


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
