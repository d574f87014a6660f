"""Faults driven from outside real daemon processes (``python -m offboard_audit daemon``, the fake
connector, SQLite): a daemon SIGKILLed (test hook ``OFFBOARD_AUDIT_TEST_DAEMON_KILL_AT``) after its
run stored its notifications but before it sent them, with the notification sink down, then up;
a leader SIGKILLed in the middle of a scheduled run; the webhook secret checked before any
migration; JSON logs without third-party noise.

Synchronisation is by polling the database, the sink and the processes with deadlines.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.daemon import (
    REPO,
    SECRET_ENV,
    DaemonProcess,
    daemon_env,
    daily_at,
    event_body,
    run_cli,
    wait_until,
)
from tests.support.fake_connector import PLUGIN_REF, FakeWorld, standard_world
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

KILL_AT = "OFFBOARD_AUDIT_TEST_DAEMON_KILL_AT"
TOKEN_PATH = "/services/T0/B0/secret-token-abc123"


class Sink:
    """A local chat webhook: down (nothing listens on its port) until :meth:`up`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{TOKEN_PATH}"

    def up(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    try:
        yield s
    finally:
        s.close()


def write_config(
    world: FakeWorld, db: Path | str, port: int, extra: str = "", audit: str = "0 3 1 1 *"
) -> Path:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    config = world.root / f"daemon-{port}.toml"
    config.write_text(
        f"""
[database]
url = "{url}"

[policy]
auto_revoke = false
protected = ["fake:breakglass"]

[schedule]
audit = "{audit}"
misfire_grace_time = "5m"

[webhook]
listen = "127.0.0.1:{port}"
secret_env = "{SECRET_ENV}"
{extra}

[[sources]]
name = "hr"
type = "hr_csv"
path = "{world.hr_path}"

[[sources]]
name = "fake"
type = "fake"
state = "{world.state_path}"
"""
    )
    return config


def rows(db: Path | str, query: str) -> list[tuple[Any, ...]]:
    if isinstance(db, str):  # a PostgreSQL URL
        engine = create_engine(db, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(query))]
        finally:
            engine.dispose()
    with sqlite3.connect(db) as conn:
        return list(conn.execute(query))


def test_notifications_of_a_daemon_killed_before_sending_are_sent_once_by_the_next_leader(
    tmp_path: Path, sink: Sink
) -> None:
    db = tmp_path / "audit.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    port = free_port()
    notifications = f'\n[notifications]\nurls = ["{sink.url}"]\n'
    config = write_config(world, db, port)
    config.write_text(config.read_text().replace("\n[[sources]]", notifications + "\n[[sources]]", 1))
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})

    # The sink is down; the daemon stores the run (and its notification) and is SIGKILLed before
    # it sends anything.
    killed = run_cli(config, {**env, KILL_AT: "audit-run-finished"}, "daemon", "--once")
    assert killed.returncode == -9, killed.stderr
    ((nid, state, attempts),) = rows(db, "SELECT notification_id, state, attempts FROM notifications")
    assert (state, attempts) == ("pending", 0) and ":new_findings:" in nid
    assert rows(db, "SELECT status FROM runs") == [("done",)]

    sink.up()
    second = DaemonProcess(config, env, port, ("--poll-interval", "0.2")).start()
    try:
        second.wait_healthy()
        wait_until(lambda: sink.received, 30, "the notification to reach the sink")
        wait_until(
            lambda: rows(db, "SELECT state FROM notifications") == [("delivered",)], 30, "it to be marked"
        )
        code, _ = second.stop()
        assert code == 0
    finally:
        second.kill()
    (body,) = sink.received
    assert body["kind"] == "new_findings" and body["id"] == nid and "critical/high" in body["text"]
    assert TOKEN_PATH not in second.log() and "secret-token" not in killed.stderr

    # Delivered means delivered: a later leader does not send it again.
    third = DaemonProcess(config, env, port, ("--poll-interval", "0.2")).start()
    try:
        wait_until(lambda: third.wait_healthy().get("leader"), 30, "the next daemon to lead")
        code, _ = third.stop()
        assert code == 0
    finally:
        third.kill()
    assert len(sink.received) == 1


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_scheduled_run_killed_mid_way_is_abandoned_by_the_next_leader_and_the_missed_tick_re_run(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """SQLite: the next daemon starts after the leader died. PostgreSQL: two replicas run, the
    leader is SIGKILLed in its scheduled run, and the standby takes leadership over."""
    db: Path | str = tmp_path / "audit.db"
    if database == "postgres":
        db = str(request.getfixturevalue("postgres_url"))
    world = standard_world(tmp_path, db if isinstance(db, str) else f"sqlite:///{db}")
    # Once a day, 25 s from now: the daemon must have started its schedule before then.
    cron, (fires_at,) = daily_at([25])
    port, standby_port = free_port(), free_port()
    config = write_config(world, db, port, audit=cron)
    standby_config = write_config(world, db, standby_port, audit=cron)
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})

    first = DaemonProcess(config, {**env, KILL_AT: "audit-run-started"}, port, ("--poll-interval", "0.2"))
    second = DaemonProcess(standby_config, env, standby_port, ("--poll-interval", "0.2"))
    first.start()
    try:
        wait_until(lambda: first.wait_healthy().get("leader"), 30, "the first daemon to lead")
        if database == "postgres":
            second.start()
            assert second.wait_healthy()["leader"] is False
        assert first.process is not None
        # Its tick fires at fires_at; the hook SIGKILLs it once the run is recorded.
        wait_until(lambda: first.process.poll() is not None, 90, "the leader to die in its scheduled run")
        assert first.process.returncode == -9, first.log()
        ((dead_run, status),) = rows(db, "SELECT run_id, status FROM runs WHERE kind = 'audit'")
        assert status in ("running", "abandoned")  # the standby may have marked it already
        if database == "sqlite":
            assert status == "running"
            assert rows(db, "SELECT state, run_id FROM daemon_ticks") == [("running", dead_run)]
            second.start()
        second.wait_healthy()

        def rerun_done() -> list[tuple[Any, ...]] | None:
            runs = rows(db, "SELECT run_id, status FROM runs WHERE kind = 'audit' ORDER BY started_at")
            ticks = rows(db, "SELECT state FROM daemon_ticks ORDER BY started_at")
            done = len(runs) == 2 and runs[1][1] == "done" and ticks[-1] == ("done",)
            return runs if done else None

        runs = wait_until(rerun_done, 60, "the missed tick to be run again")
        # Well before the next natural tick (a day later): the re-run is the missed one.
        assert datetime.now(UTC) < fires_at + timedelta(minutes=5)
        assert runs[0] == (dead_run, "abandoned")
        ticks = rows(db, "SELECT state, run_id FROM daemon_ticks ORDER BY started_at")
        assert ticks == [("abandoned", dead_run), ("done", runs[1][0])]
        assert "re-running" in second.log()
        code, _ = second.stop()
        assert code == 0
    finally:
        first.kill()
        second.kill()


def test_the_webhook_secret_is_checked_before_the_database_is_created_or_migrated(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    config = write_config(world, db, free_port())
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})
    env.pop(SECRET_ENV)
    result = run_cli(config, env, "daemon")
    assert result.returncode == 2, result.stderr
    assert SECRET_ENV in result.stderr
    assert not db.exists()


def test_a_listen_port_no_socket_can_bind_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    # 99999 was accepted; the daemon migrated the database, then died at bind time with an
    # OverflowError traceback and exit 1.
    db = tmp_path / "never.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    config = write_config(world, db, 99999)
    result = run_cli(config, daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF}), "daemon")
    assert result.returncode == 2, result.stderr
    assert (
        "webhook.listen: must be HOST:PORT with a port from 1 to 65535, got '127.0.0.1:99999'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    assert not db.exists()


def test_a_listen_address_in_use_exits_1_with_the_messages_docs_daemon_md_quotes(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = int(taken.getsockname()[1])
        config = write_config(world, db, port)
        result = run_cli(config, daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF}), "daemon")
    assert result.returncode == 1, result.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr
    docs = " ".join((REPO / "docs" / "daemon.md").read_text().split())
    assert "- 1 when the HTTP server" in docs
    assert "cannot serve on 127.0.0.1:8787" in docs and "address already in use" in docs


def test_json_logs_are_one_object_per_line_without_migration_or_http_client_noise(
    tmp_path: Path, sink: Sink
) -> None:
    db = tmp_path / "audit.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    port = free_port()
    config = write_config(world, db, port)
    config.write_text(
        config.read_text().replace(
            "\n[[sources]]", f'\n[notifications]\nurls = ["{sink.url}"]\n\n[[sources]]', 1
        )
    )
    sink.up()
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})
    assert run_cli(config, env, "audit").returncode in (0, 1)  # the stored HR read
    d = DaemonProcess(config, env, port, ("--poll-interval", "0.2", "--log-format", "json")).start()
    try:
        wait_until(lambda: d.wait_healthy().get("leader"), 30, "the daemon to lead")
        # Carol leaves: a job with new findings, its outcome line, a notification over HTTP.
        left = datetime.now(UTC) - timedelta(minutes=1)
        r = d.post_event(event_body("E3", effective_at=left, email="carol@example.com"))
        assert r.status_code == 202, r.text
        assert d.wait_job(r.json()["job_id"])["state"] == "done"
        wait_until(lambda: sink.received, 30, "the notification to be posted")
        code, _ = d.stop()
        assert code == 0
    finally:
        d.kill()
    records = [json.loads(line) for line in d.log().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("running" in r["message"] for r in records)
    assert any(r["message"].startswith("job ") and ": done" in r["message"] for r in records)
    assert not [r for r in records if r["logger"].startswith(("alembic", "httpx", "httpcore", "botocore"))]
    assert TOKEN_PATH not in d.log()
