"""The demo fakes' HTTP plumbing: a JSON server on 127.0.0.1, on a port the OS chooses, in a
daemon thread. The fake Google Cloud REST server and the fake GitHub are subclasses that only
answer requests (:meth:`LocalJsonServer.answer`); what to answer is theirs.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

# (HTTP status, extra headers, JSON body or None for an empty one)
Answer = tuple[int, dict[str, str], Any]


class LocalJsonServer(ABC):
    """Start, answer, stop; requests are served concurrently (one thread each)."""

    thread_name: ClassVar[str]
    content_type: ClassVar[str] = "application/json"

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abstractmethod
    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        """One request (``path`` with its query string, ``body`` parsed JSON or ``{}``)."""

    def serve(self) -> None:
        """Listen and serve in the background; ``port`` and ``url`` are set on return."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive: the clients reuse connections, as they would against the real API.
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK add ~40 ms to every keep-alive request.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, headers, reply = server.answer(method, self.path, dict(self.headers), body)
                data = b"" if reply is None else json.dumps(reply).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name=self.thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
