"""``offboard-audit audit --accept-hr`` as a user runs it (issue 10, item 10): the breaker is
released for the run it makes, the CLI says so, and ``revoke`` then acts on that run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEADER = "employee_id,email,name,status,termination_date,aliases\n"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def write_hr(tmp_path: Path, terminated: int) -> None:
    rows = [
        f"E{i},e{i}@example.com,E{i},terminated,2026-01-0{i + 1},"
        if i < terminated
        else f"E{i},e{i}@example.com,E{i},active,,"
        for i in range(10)
    ]
    (tmp_path / "hr.csv").write_text(HEADER + "\n".join(rows) + "\n")


def test_accept_hr_releases_the_breaker_for_its_own_run_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "offboard-audit.toml").write_text(
        '[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n'
    )
    write_hr(tmp_path, terminated=0)
    assert cli(tmp_path, "audit", "--format", "json").returncode == 0
    write_hr(tmp_path, terminated=5)  # 5 of 10 newly terminated: trips the breaker

    tripped = cli(tmp_path, "audit", "--format", "json")
    assert json.loads(tripped.stdout)["run"]["circuit_breaker"] is not None
    refused = cli(tmp_path, "revoke")
    assert refused.returncode == 1 and "circuit breaker" in refused.stdout + refused.stderr

    accepted = cli(tmp_path, "audit", "--accept-hr", "--format", "json")

    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["run"]["circuit_breaker"] is None
    said = " ".join(accepted.stderr.split())  # the console wraps long lines
    assert "circuit breaker is released for this run" in said and "5 of 10 people" in said
    ok = cli(tmp_path, "revoke")
    assert ok.returncode == 0 and "circuit breaker" not in ok.stdout + ok.stderr
