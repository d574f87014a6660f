"""Issue 11 item 9: the files holding the inventory and the audit trail are owner-only (0600)
whatever the umask: the SQLite database and its -wal/-shm files, plan files, anchor files and
evidence packs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from offboard_audit.storage.actions import NewEvent, append_event
from offboard_audit.storage.store import Store
from tests.support.fake_connector import FakeWorld, fake_env, standard_world


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_sqlite_database_and_its_wal_and_shm_files_are_owner_only(
    tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "audit.db"
    store = Store.open(f"sqlite:///{path}")
    try:
        append_event(store, NewEvent("test", datetime(2026, 3, 1, tzinfo=UTC), "tester", {"n": 1}))
        with store.engine.connect():  # keep a connection open: the -wal/-shm files exist now
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.engine.dispose()


def test_an_existing_database_keeps_the_permissions_someone_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    Store.open(f"sqlite:///{path}").engine.dispose()
    assert mode(path) == 0o640


def cli(world: FakeWorld, *args: str) -> tuple[int, str, str]:
    done = world.run(*args, umask=0)  # the most permissive umask there is
    return done.returncode, done.stdout, done.stderr


def test_plan_anchor_and_evidence_files_written_by_the_cli_are_owner_only(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    anchors = tmp_path / "anchors.jsonl"
    world.config_path.write_text(world.config_path.read_text() + f'\n[audit]\nanchor_file = "{anchors}"\n')
    cli(world, "audit")
    plan = tmp_path / "plan.json"
    assert cli(world, "plan", "--output", str(plan))[0] == 0
    assert cli(world, "revoke", "--plan", str(plan), "--apply")[0] == 0
    html, js = tmp_path / "evidence.html", tmp_path / "evidence.json"
    assert cli(world, "report", "--person", "E1", "--format", "html", "--output", str(html))[0] == 0
    assert cli(world, "report", "--person", "E1", "--output", str(js))[0] == 0
    files = [tmp_path / "db.sqlite", plan, anchors, html, js]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_audit_output_files_in_every_format_are_owner_only(tmp_path: Path) -> None:
    """``audit --output`` lists the leavers and their live credentials, like a plan file."""
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = {fmt: tmp_path / f"run.{fmt}" for fmt in ("table", "json", "csv")}
    for fmt, path in files.items():
        code, _, err = cli(world, "audit", "--format", fmt, "--output", str(path))
        assert code == 1, err  # open high findings: the report was written
        assert "bob" in path.read_text()
    assert {f.name: mode(f) for f in files.values()} == {f.name: 0o600 for f in files.values()}


def test_the_hr_file_written_by_demo_write_config_is_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "start"
    done = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "demo", "--format", "json", "--write-config", str(target)],
        cwd=tmp_path,
        env=fake_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr
    hr = target / "hr.csv"
    assert "terminated" in hr.read_text()  # the demo's leavers
    assert mode(hr) == 0o600
