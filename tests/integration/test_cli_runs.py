"""``offboard-audit runs``: the newest runs with their status, open findings and failed sources,
as table and JSON, through the CLI in a subprocess with the fake connector; checked against what
each ``audit`` said of its own run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.fake_connector import FakeWorld, fake_env, standard_world


def cli(w: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(w.config_path), *args],
        capture_output=True,
        text=True,
        env={**fake_env(), "COLUMNS": "200"},
        timeout=120,
    )


def audit(w: FakeWorld, *args: str) -> dict[str, Any]:
    proc = cli(w, "audit", "--format", "json", "--fail-on", "none", *args)
    assert proc.returncode in (0, 3), proc.stderr
    body = json.loads(proc.stdout)
    assert isinstance(body, dict)
    return body


def test_runs_lists_the_newest_runs_first_with_status_counts_and_failed_sources(tmp_path: Path) -> None:
    w = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    w.write_config()
    empty = cli(w, "runs")
    assert empty.returncode == 0 and empty.stdout.strip() == "no runs"
    full = audit(w)
    w.update(lambda st: st.update(source_error="connection refused"))
    failed = audit(w)
    only_hr = audit(w, "--source", "hr")
    said = [only_hr, failed, full]  # newest first

    as_json = cli(w, "runs", "--format", "json")
    as_table = cli(w, "runs")
    newest = cli(w, "runs", "--format", "json", "--limit", "1")

    assert as_json.returncode == 0 and as_table.returncode == 0 and newest.returncode == 0
    runs = json.loads(as_json.stdout)["runs"]
    assert [r["id"] for r in runs] == [a["run"]["id"] for a in said]
    assert [r["status"] for r in runs] == [a["run"]["status"] for a in said]
    assert [r["status"] for r in runs] == ["done", "failed_sources", "done"]
    assert [r["summary"] for r in runs] == [a["summary"] for a in said]
    failed_sources = [[s["name"] for s in a["run"]["sources"] if s["status"] == "failed"] for a in said]
    assert [r["failed_sources"] for r in runs] == failed_sources == [[], ["fake"], []]
    assert {r["kind"] for r in runs} == {"audit"}
    assert [r["id"] for r in json.loads(newest.stdout)["runs"]] == [only_hr["run"]["id"]]
    rows = [line for line in as_table.stdout.splitlines() if any(r["id"] in line for r in runs)]
    assert len(rows) == 3
    assert "failed_sources" in rows[1] and "fake" in rows[1]
    assert f"high={full['summary']['high']}" in rows[2] and full["summary"]["high"] > 0
    assert "failed_sources" not in rows[0] + rows[2]


def test_runs_refuses_a_format_it_does_not_write_and_a_limit_below_one(tmp_path: Path) -> None:
    w = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    w.write_config()

    csv = cli(w, "runs", "--format", "csv")
    zero = cli(w, "runs", "--limit", "0")

    assert csv.returncode == 2 and "--format must be one of table, json" in csv.stderr
    assert zero.returncode == 2 and "'--limit'" in zero.stderr
