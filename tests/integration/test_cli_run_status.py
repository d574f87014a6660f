"""The run's status (README "Output formats") as ``audit`` shows it, through the CLI in a
subprocess: ``run.status`` in the JSON object and ``(run STATUS)`` on the table's summary line,
the same status the daemon's /healthz reports from the stored run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from offboard_audit.storage.db import make_engine
from offboard_audit.storage.store import Store
from tests.support.fake_connector import FakeWorld, fake_env, standard_world


def audit(w: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(w.config_path), "audit", *args],
        capture_output=True,
        text=True,
        env={**fake_env(), "COLUMNS": "160"},
        timeout=120,
    )


def make_done(w: FakeWorld) -> None:
    pass


def make_degraded(w: FakeWorld) -> None:
    # A row with neither an id nor an email is skipped and reported: the run is degraded.
    with w.hr_path.open("a") as f:
        f.write(",,Nobody,active,,\n")


def make_failed_sources(w: FakeWorld) -> None:
    w.update(lambda st: st.update(source_error="connection refused"))


@pytest.mark.parametrize(
    ("status", "setup"),
    [("done", make_done), ("degraded", make_degraded), ("failed_sources", make_failed_sources)],
)
def test_audit_shows_the_run_status_in_json_and_on_the_table_summary_line(
    tmp_path: Path, status: str, setup: Callable[[FakeWorld], None]
) -> None:
    w = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    w.write_config()
    setup(w)

    as_json = audit(w, "--format", "json", "--fail-on", "none")
    as_table = audit(w, "--fail-on", "none")

    run = json.loads(as_json.stdout)["run"]
    assert run["status"] == status, as_json.stderr
    # An added key: the ones before it keep their names and order.
    assert list(run) == ["id", "started_at", "finished_at", "sources", "circuit_breaker", "status"]
    summary = [line for line in as_table.stdout.splitlines() if line.startswith("summary:")]
    assert len(summary) == 1 and summary[0].endswith(f"(run {status})"), as_table.stdout
    # The status the store recorded for the run (what /healthz's last_runs shows).
    stored = Store(make_engine(w.db_url)).run_info(run["id"])
    assert stored is not None and stored.status.value == status
