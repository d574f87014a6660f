"""A schema upgrade killed part way leaves the database as it was, on SQLite and PostgreSQL.

The first command after installing a new version migrates the database. If that process dies
between two statements of a migration (killed, out of memory, the machine stopped), the next
command must find the old schema with its old revision and migrate it again, keeping every row.
On SQLite each DDL statement used to commit by itself (Python's sqlite3 only opens a transaction
before data changes), so a kill left a column added under the old revision number, and every
later command failed ("duplicate column name", exit 4) until someone repaired the file by hand.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, current_revision, head_revision
from offboard_audit.storage.store import Store

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)

# Runs in a child process: opens the database (which migrates it) and dies, like a SIGKILL,
# right after the first statement whose SQL contains the marker.
_KILLED_UPGRADE = textwrap.dedent(
    """
    import os, sys
    from sqlalchemy import event
    from offboard_audit.storage.db import make_engine
    from offboard_audit.storage.migrate import upgrade_head

    url, marker = sys.argv[1], sys.argv[2]
    engine = make_engine(url)

    @event.listens_for(engine, "after_cursor_execute")
    def _die(conn, cursor, statement, parameters, context, executemany):
        if marker in statement:
            os._exit(9)

    upgrade_head(engine)
    sys.exit(0)
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _upgrade_killed_at(url: str, marker: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_UPGRADE, url, marker],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr


def test_an_upgrade_killed_after_adding_a_column_is_redone_by_the_next_command(url: str) -> None:
    engine = make_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (run_id, kind, started_at, status, summary_json) VALUES (:id, 'audit', :at, 'done', '{}')"
            ),
            {
                "id": "run-before-upgrade",
                "at": AT if engine.dialect.name == "postgresql" else AT.replace(tzinfo=None),
            },
        )
    engine.dispose()

    # Migration 0013 adds exposure_events.actor_uid, then rewrites stored actors.
    _upgrade_killed_at(url, "actor_uid")

    assert current_revision(make_engine(url)) == "0012"
    assert "actor_uid" not in {c["name"] for c in inspect(make_engine(url)).get_columns("exposure_events")}
    store = Store.open(url)
    assert current_revision(store.engine) == head_revision()
    assert [r.info.run_id for r in store.recent_runs(10)] == ["run-before-upgrade"]


def test_a_first_use_killed_while_creating_the_schema_is_redone_by_the_next_command(url: str) -> None:
    # A new database is created from the models, then stamped with the head revision.
    _upgrade_killed_at(url, "CREATE TABLE alembic_version")

    assert inspect(make_engine(url)).get_table_names() == []
    store = Store.open(url)
    assert current_revision(store.engine) == head_revision()
    assert store.recent_runs(10) == []
