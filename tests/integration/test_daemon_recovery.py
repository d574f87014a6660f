"""A daemon SIGKILLed in the middle of a webhook job: a second daemon on the same database takes
the job over once its lease has expired, finishes it, and the revocation is applied once.

Both daemons are real ``python -m offboard_audit daemon`` processes with the fake connector
(tests/support/fake_connector.py). Synchronisation is by the fake revoker's ``FAKE-BLOCKED``
line in the daemon's log and by polling the job with deadlines; the job lease is 2 s
(``[webhook] job_lease``) so the takeover does not wait the default 30 s.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    SECRET_ENV,
    DaemonProcess,
    daemon_env,
    event_body,
    run_cli,
    wait_until,
)
from tests.support.fake_connector import PLUGIN_REF, FakeWorld, standard_world
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

LEASE_SECONDS = "2"


def write_config(world: FakeWorld, db: Path, port: int, name: str) -> Path:
    config = world.root / name
    config.write_text(
        f"""
[database]
url = "sqlite:///{db}"

[policy]
auto_revoke = true
max_new_terminations = 0.5                  # 3 people: one webhook termination is 33%
protected = ["fake:breakglass"]

[schedule]
audit = "0 3 1 1 *"                         # never during the test: only the webhook job runs

[webhook]
listen = "127.0.0.1:{port}"
job_lease = "{LEASE_SECONDS}s"
secret_env = "{SECRET_ENV}"

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


def db_job(db: Path, job_id: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM webhook_jobs WHERE job_id = ?", (job_id,)).fetchone()
    return dict(row)


def e3_actions(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT credential_id, status FROM actions WHERE person_employee_id = 'E3'"))


@pytest.mark.parametrize("killed", ["after", "before"])
def test_job_of_a_sigkilled_daemon_is_taken_over_by_the_next_daemon_and_revokes_once(
    tmp_path: Path, killed: str
) -> None:
    """``after``: killed once the account was disabled but before the outcome was stored (the
    takeover must not disable it again); ``before``: killed after the intent, before the change
    (the takeover must make it)."""
    db = tmp_path / "audit.db"
    world = standard_world(tmp_path, f"sqlite:///{db}")
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})
    first_port, second_port = free_port(), free_port()
    first_cfg = write_config(world, db, first_port, "first.toml")
    second_cfg = write_config(world, db, second_port, "second.toml")

    # A stored full HR read (the webhook never revokes without one).
    audit = run_cli(first_cfg, env, "audit")
    assert audit.returncode in (0, 1), audit.stderr
    # Carol (E3) leaves. Disabling her account blocks (once) after its intent is stored.
    world.update(lambda st: st.setdefault("block", {}).update({"carol": killed}))

    first = DaemonProcess(first_cfg, env, first_port, ("--poll-interval", "0.2"), stdin_pipe=True).start()
    try:
        first.wait_healthy()
        body = event_body(
            "E3", effective_at=datetime.now(UTC) - timedelta(seconds=5), email="carol@example.com"
        )
        r = first.post_event(body)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        wait_until(lambda: f"FAKE-BLOCKED carol {killed}" in first.log(), 30, "the revoker to block")
        running = first.job(job_id)
        assert running["state"] == "running" and running["attempts"] == 1
        dead_owner = running["owner"]
        first.kill()  # SIGKILL: no shutdown handler runs, the job stays "running" under its lease
    finally:
        first.kill()

    left = db_job(db, job_id)
    assert (left["state"], left["node"], left["finished_at"]) == ("running", dead_owner, None)
    assert world.changes() == ([("disable_account", "carol")] if killed == "after" else [])
    assert e3_actions(db) == [("carol", "intent")]  # the outcome was never recorded

    second = DaemonProcess(second_cfg, env, second_port, ("--poll-interval", "0.2"), stdin_pipe=True).start()
    try:
        second.wait_healthy()
        done = second.wait_job(job_id, timeout=60)
        assert done["state"] == "done", (done, second.log())
        assert done["owner"] != dead_owner and done["attempts"] == 2
        (takeover,) = done["takeovers"]
        assert takeover["previous_owner"] == dead_owner and takeover["from_state"] == "running"
        assert takeover["new_owner"] == done["owner"]
        assert done["detail"].startswith(f"taken over from {dead_owner}")
        # The engine's crash recovery settles the dead daemon's intent: "after", the change is
        # found in place and recorded applied; "before", the intent is recorded failed and the
        # same pass retries and applies it (the job lists the applied action, and is done).
        assert [(a["source"], a["action"], a["status"]) for a in done["actions"]] == [
            ("fake", "disable_account", "applied")
        ]
        code, _ = second.stop()
        assert code == 0, second.log()
    finally:
        second.kill()

    assert world.changes() == [("disable_account", "carol")]  # applied exactly once, in all
    assert world.credential("carol")["active"] is False
    assert sorted(e3_actions(db)) == (
        [("carol", "applied")] if killed == "after" else [("carol", "applied"), ("carol", "failed")]
    )
