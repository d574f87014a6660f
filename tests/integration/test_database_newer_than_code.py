"""A database a newer offboard-audit upgraded: every command says so (exit 2) and changes nothing.

A daemon replica on the new version migrates the shared database; a CLI still on the old one
(an admin's laptop, a rolled-back deployment) then opened it. It used to fail with "internal
error: CommandError: Can't locate revision ... this is a bug in offboard-audit" (exit 4) on
every command, `runs` and `report` included, which sends the operator after a bug that is not
one instead of telling them to run the newer version.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import HEAD, current_revision
from offboard_audit.storage.store import Store

NEWER = "9999"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize(
    "command", [("runs",), ("report", "--person", "E1"), ("log", "verify"), ("db", "upgrade")], ids=" ".join
)
def test_every_command_on_a_database_of_a_newer_version_says_to_run_that_version(
    url: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    Store.open(url).engine.dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": NEWER})
    engine.dispose()

    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--db", url, *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )

    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr and "bug" not in proc.stderr
    assert f"schema revision {NEWER}" in proc.stderr and f"its newest is {HEAD}" in proc.stderr
    assert current_revision(make_engine(url)) == NEWER
