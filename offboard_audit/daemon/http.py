"""The daemon's process shell: the uvicorn server for the webhook, ``/healthz`` and ``/metrics``
on a thread of its own, and the SIGTERM/SIGINT handlers."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

# The daemon's lines keep the logger they had before service.py was split (see jobs.py).
log = logging.getLogger("offboard_audit.daemon.service")

STARTUP_TIMEOUT = 15.0


class HttpServer:
    """Serves an ASGI app with uvicorn until :meth:`stop`."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.host = host
        self.port = port
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> bool:
        """Start serving on a thread; False when it could not listen within ``timeout`` seconds."""
        thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn sets ``started`` without signalling anything: poll it.
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                log.error("cannot serve on %s:%s", self.host, self.port)
                return False
            time.sleep(0.02)
        log.info("serving the webhook, /healthz and /metrics on http://%s:%s", self.host, self.port)
        return True

    def stop(self) -> None:
        """Ask the server to finish (it stops within its graceful-shutdown timeout)."""
        self._server.should_exit = True


def handle_stop_signals(on_signal: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call ``on_signal`` (from the main thread, as Python delivers them)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        on_signal()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
