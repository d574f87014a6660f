"""The daemon as a subprocess: restart keeps the schedule, two replicas on one PostgreSQL never
double a run or an action, SIGTERM during a reconcile exits 0 within 10 s and records it.

The schedule tests use 6-field crons (seconds first) that fire once a day a few seconds from now
(``daily_at``): the test waits for that time to pass, not as a stand-in for synchronisation, and
no second tick can come while it runs.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users
from tests.support.daemon import (
    SECRET_ENV,
    DaemonProcess,
    daemon_env,
    daily_at,
    event_body,
    signed_headers,
    wait_until,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

HR_HEADER = "employee_id,email,name,status,termination_date,aliases\n"
LEFT = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0).isoformat()


def hr_rows(staff: int = 20) -> str:
    rows = [f"L1,leaver@example.com,Leaver One,terminated,{LEFT},leaver"]
    rows.append("L2,second@example.com,Second Leaver,active,,second")
    rows += [f"S{i:02d},s{i:02d}@example.com,Staff {i},active,,s{i:02d}" for i in range(staff)]
    return HR_HEADER + "\n".join(rows) + "\n"


def write_config(
    tmp_path: Path,
    db_url: str,
    port: int,
    extra_sources: str = "",
    name: str = "offboard-audit.toml",
    auto_revoke: bool = False,
    audit_cron: str = "0 3 1 1 *",  # once a year: no scheduled run during a test unless asked
) -> Path:
    hr = tmp_path / "hr.csv"
    if not hr.exists():
        hr.write_text(hr_rows())
    config = tmp_path / name
    config.write_text(
        f"""
[database]
url = "{db_url}"

[policy]
auto_revoke = {"true" if auto_revoke else "false"}

[schedule]
audit = "{audit_cron}"
misfire_grace_time = "5m"

[webhook]
listen = "127.0.0.1:{port}"
secret_env = "{SECRET_ENV}"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"
{extra_sources}
"""
    )
    return config


def stored_next_run(db: Path) -> float | None:
    """The audit job's stored next run time, or None while the daemon has not created it yet."""
    with sqlite3.connect(db) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apscheduler_jobs'"
        ).fetchone()
        if not exists:
            return None
        row = conn.execute(
            "SELECT next_run_time FROM apscheduler_jobs WHERE id = 'offboard-audit:audit'"
        ).fetchone()
    return float(row[0]) if row else None


def audit_runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT run_id, status FROM runs WHERE kind = 'audit' ORDER BY started_at"))


def test_restart_keeps_the_stored_schedule_and_runs_a_missed_reconcile_once(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    port = free_port()
    # Two slots 4 s apart, once a day: both pass while no daemon runs.
    cron, (first_slot, second_slot) = daily_at([25, 29])
    config = write_config(tmp_path, f"sqlite:///{db}", port, audit_cron=cron)
    env = daemon_env()

    first = DaemonProcess(config, env, port).start()
    try:
        wait_until(lambda: first.wait_healthy().get("leader"), 30, "the only daemon to lead")
        wait_until(lambda: stored_next_run(db), 30, "the audit job in apscheduler_jobs")
        code, seconds = first.stop()
        assert code == 0 and seconds < 10, first.log()
    finally:
        first.kill()
    planned = stored_next_run(db)
    assert planned == first_slot.timestamp()
    assert time.time() < planned, "the daemon took too long to start: its first slot has passed"
    runs_before = len(audit_runs(db))

    # Let both planned run times pass while no daemon is running.
    wait_until(
        lambda: time.time() > second_slot.timestamp() + 1, 75, "the planned run times to pass", interval=0.5
    )
    assert stored_next_run(db) == planned  # nothing moved it while stopped

    second = DaemonProcess(config, env, port).start()
    try:
        second.wait_healthy()
        runs = wait_until(lambda: audit_runs(db)[runs_before:] or None, 30, "the missed reconcile to run")
        wait_until(lambda: all(s != "running" for _, s in audit_runs(db)), 30, "the run to finish")
        assert len(runs) == 1, runs  # one run for the two missed slots, not one per slot
        assert stored_next_run(db) == planned + 86400  # the kept job moved on to its next day
        code, _ = second.stop()
        assert code == 0
    finally:
        second.kill()


@pytest.fixture
def two_replicas(
    postgres_url: str, moto_endpoint: str, tmp_path: Path
) -> Iterator[tuple[DaemonProcess, DaemonProcess, str, str]]:
    seed_users(
        [
            SeedUser(
                "leaver",
                tags={"email": "leaver@example.com"},
                keys=[(datetime.now(UTC) - timedelta(days=90), None)],
            ),
            SeedUser(
                "second",
                tags={"email": "second@example.com"},
                keys=[(datetime.now(UTC) - timedelta(days=90), None)],
            ),
        ]
    )
    aws = f"""
[[sources]]
name = "aws"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{moto_endpoint}"
service_specific_credentials = false
"""
    env = daemon_env(FAKE_AWS_ENV)
    ports = free_port(), free_port()
    # One scheduled reconcile, 20 s from now; the next is a day later.
    cron, _ = daily_at([20])
    configs = [
        write_config(tmp_path, postgres_url, p, aws, f"replica{i}.toml", auto_revoke=True, audit_cron=cron)
        for i, p in enumerate(ports)
    ]
    a = DaemonProcess(configs[0], env, ports[0]).start()
    b = DaemonProcess(configs[1], env, ports[1]).start()
    try:
        yield a, b, postgres_url, moto_endpoint
    finally:
        a.kill()
        b.kill()


def leaders(*daemons: DaemonProcess) -> list[bool]:
    return [bool(httpx.get(f"{d.url}/healthz", timeout=3).json().get("leader")) for d in daemons]


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_never_double_a_run_or_an_action(
    two_replicas: tuple[DaemonProcess, DaemonProcess, str, str],
) -> None:
    a, b, url, _moto = two_replicas
    a.wait_healthy()
    b.wait_healthy()
    assert wait_until(lambda: sum(leaders(a, b)) == 1 or None, 30, "exactly one leader")
    engine = create_engine(url)

    def q(sql: str) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]

    # The scheduled reconcile (its one tick, 20 s after the start) revokes the leaver's key.
    leaver_applied = "SELECT action_id FROM actions WHERE username = 'leaver' AND status = 'applied'"
    wait_until(lambda: q(leaver_applied) or None, 75, "the scheduled reconcile to revoke", interval=0.2)

    # The same signed event delivered to both replicas at once: one accepts, the other says replay.
    body = event_body("L2", effective_at=datetime.now(UTC) - timedelta(seconds=5), email="second@example.com")
    headers = signed_headers(body)
    with httpx.Client(timeout=10) as client:
        answers = sorted(
            client.post(f"{d.url}/hooks/hr", content=body, headers=headers).status_code for d in (a, b)
        )
    assert answers == [202, 409]
    # Two different events for the same person, one per replica: both jobs run, the key is disabled once.
    # (The same effective_at: of two terminations with different times, whichever job ran second
    # could find the older one superseded by the newer.)
    jobs = []
    effective_at = datetime.now(UTC) - timedelta(seconds=5)
    for d in (a, b):
        other = event_body("L2", effective_at=effective_at, email="second@example.com")
        r = d.post_event(other)
        assert r.status_code == 202
        jobs.append((d, r.json()["job_id"]))
    finished = [d.wait_job(job_id) for d, job_id in jobs]
    assert [j["state"] for j in finished] == ["done", "done"], finished
    # Nothing doubled: one full run, each credential disabled by exactly one applied action.
    assert len(q("SELECT run_id FROM runs WHERE kind = 'audit'")) == 1
    assert len(q(leaver_applied)) == 1
    assert len(q("SELECT action_id FROM actions WHERE username = 'second' AND status = 'applied'")) == 1
    applied = q("SELECT source, account_id, credential_id FROM actions WHERE status = 'applied'")
    assert len(applied) == len(set(applied))

    # The leader stops: the other replica takes over the schedule.
    leader, follower = (a, b) if leaders(a, b)[0] else (b, a)
    code, seconds = leader.stop()
    assert code == 0 and seconds < 10
    assert wait_until(lambda: leaders(follower)[0] or None, 30, "the follower to take over")
    engine.dispose()


class SilentServer:
    """Accepts TCP connections (the kernel backlog does) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def test_sigterm_during_a_reconcile_exits_0_within_10s_and_records_it_abandoned(tmp_path: Path) -> None:
    silent = SilentServer()
    try:
        db = tmp_path / "audit.db"
        port = free_port()
        ldap = f"""
[[sources]]
name = "stuck-ldap"
type = "ldap"
url = "ldap://127.0.0.1:{silent.port}"
bind_dn = "cn=x,dc=example,dc=org"
password_env = "LDAP_TEST_PASSWORD"
base_dn = "dc=example,dc=org"
connect_timeout = 5
receive_timeout = 120
"""
        config = write_config(tmp_path, f"sqlite:///{db}", port, ldap, audit_cron="0 3 1 1 *")
        daemon = DaemonProcess(config, daemon_env({"LDAP_TEST_PASSWORD": "x"}), port).start()
        try:
            daemon.wait_healthy()
            r = daemon.post_event(event_body("L2", effective_at=datetime.now(UTC) - timedelta(seconds=5)))
            assert r.status_code == 202
            job_id = r.json()["job_id"]
            wait_until(
                lambda: daemon.job(job_id)["state"] == "running", 15, "the job to hang in the LDAP read"
            )
            code, seconds = daemon.stop()
            assert code == 0, daemon.log()
            assert seconds < 10
        finally:
            daemon.kill()
        with sqlite3.connect(db) as conn:
            state, error = conn.execute(
                "SELECT state, error FROM webhook_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            runs = list(conn.execute("SELECT kind, status FROM runs"))
        assert state == "failed" and "abandoned" in error
        assert runs == [("targeted", "abandoned")]
    finally:
        silent.close()
