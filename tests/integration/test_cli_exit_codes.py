"""Exit codes of ``audit --fail-on`` as cron and CI read them: every threshold against every
worst severity, through the CLI in a subprocess (0 below the threshold, 1 at or above it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fake_connector import FakeWorld, fake_env

HR = [
    ("E1", "alice@example.com", "Alice", "active", ""),
    ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
]
RANK = {"none": 99, "low": 1, "medium": 2, "high": 3, "critical": 4}


def world(root: Path, worst: str) -> FakeWorld:
    """A world whose worst open finding has severity ``worst`` (medium, high or critical)."""
    w = FakeWorld(root, f"sqlite:///{root / 'db.sqlite'}")
    w.write_hr(HR)
    accounts = [{"id": "ghost", "username": "ghost", "enabled": True}]  # orphan: medium
    credentials: list[dict[str, object]] = [{"account_id": "ghost", "id": "ghost", "kind": "account"}]
    if worst in ("high", "critical"):
        accounts.append(
            {"id": "bob", "username": "bob", "enabled": True, "attributes": [["employeeNumber", "E2"]]}
        )
        key: dict[str, object] = {"account_id": "bob", "id": "AK2", "kind": "access_key"}
        if worst == "critical":
            key["last_used_at"] = "2026-02-01T00:00:00+00:00"  # after bob left
        credentials.append(key)
    w.write_state(accounts, credentials)
    w.write_config()
    return w


def audit(w: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(w.config_path), "audit", *args],
        capture_output=True,
        text=True,
        env=fake_env(),
        timeout=120,
    )


@pytest.mark.parametrize("worst", ["medium", "high", "critical"])
def test_fail_on_exits_1_exactly_at_or_above_the_threshold(tmp_path: Path, worst: str) -> None:
    w = world(tmp_path, worst)
    first = audit(w, "--format", "json", "--fail-on", "none")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)["summary"]
    assert max((s for s, n in summary.items() if n), key=RANK.__getitem__) == worst
    for threshold in ("critical", "high", "medium", "low", "none"):
        proc = audit(w, "--format", "json", "--fail-on", threshold)
        expected = 1 if RANK[worst] >= RANK[threshold] else 0
        assert proc.returncode == expected, (threshold, worst, proc.stderr)


def test_default_threshold_is_high(tmp_path: Path) -> None:
    for worst, code in (("medium", 0), ("high", 1)):
        (tmp_path / worst).mkdir()
        assert audit(world(tmp_path / worst, worst)).returncode == code
