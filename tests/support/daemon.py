"""Helpers for the daemon/webhook tests: run ``python -m offboard_audit daemon`` as a subprocess,
sign HR events, poll jobs and health with deadlines. (No tests in this module.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from offboard_audit.daemon.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret-0123456789"
SECRET_ENV = "OFFBOARD_TEST_WEBHOOK_SECRET"

T = TypeVar("T")


def daily_at(offsets: Sequence[int]) -> tuple[str, list[datetime]]:
    """A 6-field cron (seconds first, UTC) that fires once a day, at these many seconds from now,
    all in one minute; and those fire times. The schedule tests wait for these few seconds
    instead of a minute boundary, and no second tick comes while a test runs."""
    now = datetime.now(UTC).replace(microsecond=0)
    first = now + timedelta(seconds=offsets[0])
    if first.second + offsets[-1] - offsets[0] > 59:  # keep every slot inside one minute
        first = (first + timedelta(minutes=1)).replace(second=0)
    times = [first + timedelta(seconds=o - offsets[0]) for o in offsets]
    seconds = ",".join(str(t.second) for t in times)
    return f"{seconds} {first.minute} {first.hour} * * *", times


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def event_body(
    employee_id: str,
    event: str = "employee.terminated",
    effective_at: datetime | None = None,
    email: str | None = None,
    event_id: str | None = None,
) -> bytes:
    payload = {
        "event_id": event_id or f"evt-{uuid.uuid4().hex}",
        "event": event,
        "employee_id": employee_id,
        "email": email,
        "effective_at": (effective_at or datetime.now(UTC)).isoformat(),
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret.encode(), ts, body),
        "Content-Type": "application/json",
    }


@dataclass
class DaemonProcess:
    """``python -m offboard_audit --config CONFIG daemon ARGS`` with its log in a file."""

    config: Path
    env: Mapping[str, str]
    port: int | None
    args: tuple[str, ...] = ()
    log_path: Path | None = None
    # A pipe on stdin (kept open, never written): the fake connector's ``block`` waits on it.
    stdin_pipe: bool = False
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DaemonProcess:
        self.log_path = self.log_path or self.config.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "offboard_audit", "--config", str(self.config), "daemon", *self.args],
            stdin=subprocess.PIPE if self.stdin_pipe else None,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(self.env),
            cwd=self.config.parent,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            r = httpx.get(f"{self.url}/healthz", timeout=2)
            return r.json() if r.status_code == 200 else None

        return wait_until(check, timeout, "the daemon's /healthz")

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode, 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError(
                f"daemon did not stop within {timeout}s after SIGTERM:\n{self.log()}"
            ) from None
        finally:
            if self._log is not None:
                self._log.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL (no cleanup in the daemon: as if it was OOM-killed or its machine was lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
        if self._log is not None:
            self._log.close()

    def post_event(self, body: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/hooks/hr", content=body, headers=dict(headers or signed_headers(body)), timeout=10
        )

    def job(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/hooks/hr/jobs/{job_id}", timeout=5)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in ("done", "failed", "cancelled", "superseded") else None

        return wait_until(check, timeout, f"job {job_id} to finish")


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFBOARD_AUDIT_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env[SECRET_ENV] = SECRET
    env.update(extra or {})
    return env


def run_cli(
    config: Path, env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=config.parent,
        timeout=timeout,
    )
