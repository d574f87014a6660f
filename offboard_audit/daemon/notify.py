"""Notifications: a JSON POST (with a Slack-compatible ``text`` field) to configured webhook URLs,
through an outbox.

What is sent, and when (new critical or high findings, a tripped circuit breaker, failed or
refused actions, a run that raised), is decided in ``summary.py``. A message is not sent from
memory: :meth:`Notifier.rows` turns it into one outbox row per configured URL
(``storage/outbox.py``), written in the same transaction as the run or job it belongs to. The
:class:`Dispatcher`, run by whichever replica leads, posts the pending rows, marks them delivered,
and retries failures with exponential backoff (``[notifications] backoff`` doubling up to
``max_backoff``; the next attempt time is stored, so backoff holds across restarts). A message
tried ``retries + 1`` times and older than ``retry_for`` is ``undeliverable``: logged, counted in
``offboard_audit_notifications_failed_total`` and shown by the
``offboard_audit_notifications_undeliverable`` gauge. It never fails a run.

A row's id is ``<origin>:<kind>:<target>`` (the same message is stored once) and is sent as the
payload's ``id``: delivery is at least once (a leader that dies between the POST and marking it
delivered sends it again), so receivers deduplicate by ``id``.

URLs often embed tokens: the outbox keeps a hash of the URL (``target``), never the URL, and log
lines show scheme and host only (httpx's own request line, which prints the URL in full, is
silenced by the daemon's logging setup).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from offboard_audit.config import Config
from offboard_audit.config.sections import NotificationConfig
from offboard_audit.core.jobs import Notification
from offboard_audit.daemon.logs import redact_in_logs
from offboard_audit.storage.db import redact
from offboard_audit.storage.outbox import OutboxStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """One notification. ``text`` is what chat tools show; ``data`` is for machines."""

    kind: str
    text: str
    data: tuple[tuple[str, Any], ...] = ()

    def payload(self) -> dict[str, Any]:
        return {
            "text": chat_text(self.text),
            "kind": self.kind,
            "source": "offboard-audit",
            **dict(self.data),
        }


def chat_text(text: str) -> str:
    """``text`` escaped as Slack asks (``&``, ``<``, ``>``): the texts quote names, paths and errors
    from HR and the systems, and Slack (and Mattermost, which reads its syntax) takes ``<...>`` as
    a control sequence: ``<!channel>`` pings everyone, ``<https://host|words>`` is a link showing
    only ``words``. Slack shows the escaped text as it was; ``data`` (for machines) stays as it is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook URLs carry their token in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def url_target(url: str) -> str:
    """What the outbox keeps of a URL: a hash (the URL may carry a token)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def configured_urls(config: NotificationConfig, env: Mapping[str, str]) -> tuple[str, ...]:
    urls = list(config.urls)
    if config.urls_env:
        urls.extend(u.strip() for u in env.get(config.urls_env, "").split(",") if u.strip())
    return tuple(dict.fromkeys(urls))


def redact_secrets(config: Config, env: Mapping[str, str]) -> None:
    """Keep the database password and the notification URLs out of every daemon log line."""
    url = config.database_url
    redact_in_logs(lambda text: redact(text, url))
    urls = sorted(configured_urls(config.notifications, env), key=len, reverse=True)

    def hide_urls(text: str) -> str:
        for u in urls:
            if u in text:
                text = text.replace(u, redact_url(u) + "/***")
        return text

    if urls:
        redact_in_logs(hide_urls)


class Notifier:
    """The configured URLs, and one POST to one of them."""

    def __init__(
        self,
        config: NotificationConfig,
        env: Mapping[str, str],
        client: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self.urls = configured_urls(config, env)
        self._by_target = {url_target(u): u for u in self.urls}
        self._client = client or httpx.Client(timeout=config.timeout.total_seconds())
        self._mutex = threading.Lock()

    def rows(self, messages: Sequence[Message], origin: str, now: datetime) -> list[Notification]:
        """The outbox rows of ``messages``: one per configured URL."""
        out: list[Notification] = []
        for m in messages:
            for target in self._by_target:
                nid = f"{origin}:{m.kind}:{target}"
                payload = {**m.payload(), "id": nid}
                out.append(
                    Notification(nid, origin, m.kind, target, json.dumps(payload), now, next_attempt_at=now)
                )
        return out

    def url_for(self, target: str) -> str | None:
        return self._by_target.get(target)

    def post(self, url: str, payload: Mapping[str, Any]) -> str | None:
        """One attempt; None when a 2xx answer came back, else what went wrong. Never raises."""
        try:
            with self._mutex:
                response = self._client.post(url, json=dict(payload))
        except httpx.HTTPError as exc:
            return type(exc).__name__
        except Exception as exc:  # a notification must never take anything else down
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def close(self, timeout: float = 2.0) -> None:
        del timeout  # kept for callers of the older, threaded notifier
        self._client.close()


@dataclass(eq=False)
class Dispatcher:
    """Sends the outbox's due notifications (on the leader) and records each attempt."""

    outbox: OutboxStore
    notifier: Notifier
    clock: Callable[[], datetime]
    _: KW_ONLY
    on_undeliverable: Callable[[Notification], None] | None = None
    on_delivered: Callable[[Notification], None] | None = None
    sent: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)  # notifications given up (undeliverable)
    _mutex: threading.Lock = field(default_factory=threading.Lock, init=False)

    def next_attempt(self, n: Notification, attempts: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None: give up (undeliverable)."""
        cfg = self.notifier.config
        if attempts > cfg.retries and now - n.created_at >= cfg.retry_for:
            return None
        delay = min(cfg.max_backoff.total_seconds(), cfg.backoff.total_seconds() * 2 ** (attempts - 1))
        return now + timedelta(seconds=max(0.0, delay))

    def step(self, limit: int = 50) -> int:
        """Try every due notification once; returns how many were delivered."""
        with self._mutex:  # one pass at a time in this process
            delivered = 0
            for n in self.outbox.due(self.clock(), limit):
                if self._attempt(n):
                    delivered += 1
            return delivered

    def _attempt(self, n: Notification) -> bool:
        url = self.notifier.url_for(n.target)
        problem = "its URL is no longer configured" if url is None else None
        if url is not None:
            problem = self.notifier.post(url, json.loads(n.payload_json))
        now = self.clock()
        if problem is None:
            if self.outbox.delivered(n.notification_id, now):
                self.sent += 1
                if self.on_delivered is not None:
                    self.on_delivered(n)
            return True
        attempts = n.attempts + 1
        when = None if url is None else self.next_attempt(n, attempts, now)
        where = redact_url(url) if url is not None else f"target {n.target}"
        if not self.outbox.failed(n.notification_id, problem, when):
            return False
        if when is None:
            self.failures += 1
            log.error(
                "notification %s (%s) to %s undeliverable after %d attempt(s): %s",
                n.kind,
                n.notification_id,
                where,
                attempts,
                problem,
            )
            if self.on_undeliverable is not None:
                self.on_undeliverable(n)
        else:
            log.warning(
                "notification %s (%s) to %s failed (attempt %d): %s; next attempt at %s",
                n.kind,
                n.notification_id,
                where,
                attempts,
                problem,
                when.isoformat(timespec="seconds"),
            )
        return False
