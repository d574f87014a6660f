"""An HR row whose date cannot be stored is a bad row of that audit, not a failure of every audit
(issue 17, item 9): the run is degraded, names the line, and stores everybody else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from offboard_audit.storage.store import Store
from tests.support.fake_connector import FakeWorld, fake_env, standard_world


def _audit(world: FakeWorld) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "offboard_audit",
            "--config",
            str(world.config_path),
            "audit",
            "--format",
            "json",
        ],
        cwd=world.root,
        env=fake_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(world: FakeWorld) -> None:
    world.write_hr(
        [
            ("E1", "alice@example.com", "Alice", "terminated", "2026-01-10"),
            ("E2", "bob@example.com", "Bob", "terminated", "9999-12-31T20:00:00"),
            ("E3", "carol@example.com", "Carol", "active", ""),
        ]
    )
    config = world.config_path.read_text().replace(
        'type = "hr_csv"', 'type = "hr_csv"\ntimezone = "America/New_York"'
    )
    world.config_path.write_text(config)

    for _ in range(2):  # and every audit after it
        proc = _audit(world)
        assert proc.stdout.strip(), proc.stderr  # the audit ran to its report
        assert proc.returncode == 1, proc.stderr  # findings (alice), not a crash
        report = json.loads(proc.stdout)
        (hr,) = [s for s in report["run"]["sources"] if s["name"] == "hr"]
        assert hr["status"] == "degraded"
        assert any("line 3" in w and "out of range" in w for w in hr["warnings"]), hr["warnings"]

    store = Store.open(world.db_url)
    try:
        assert sorted(p.employee_id for p in store.load_people()) == ["E1", "E3"]
    finally:
        store.engine.dispose()


def test_an_hr_date_beyond_year_9999_in_utc_is_a_bad_row_on_sqlite(tmp_path: Path) -> None:
    _check(standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}"))


@pytest.mark.postgres
def test_an_hr_date_beyond_year_9999_in_utc_is_a_bad_row_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    _check(standard_world(tmp_path, postgres_url))
