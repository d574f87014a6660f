"""The models and the Alembic migrations describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import offboard_audit.storage.models  # noqa: F401
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import HEAD, alembic_config, current_revision, head_revision, upgrade_head
from offboard_audit.storage.store import Store

# Tables owned by libraries, not by our models (APScheduler's SQLAlchemy job store).
FOREIGN_TABLES = {"apscheduler_jobs", "alembic_version"}


def _include(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name in FOREIGN_TABLES)


def _bare(default: str | None) -> str | None:
    """A server default as text without SQL's wrapping: ``('')`` and ``''`` are both the empty
    string, ``'[]'::text`` is ``[]`` (SQLite and PostgreSQL reflect defaults differently)."""
    if default is None:
        return None
    text = default.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    text = text.split("::", 1)[0]
    return text.strip("'")


def _defaults_differ(context, inspected_column, metadata_column, inspected, metadata, rendered) -> bool:
    return _bare(inspected) != _bare(rendered)


def _diff(url: str) -> list:
    """What the schema the migrations build lacks or has beyond the models (empty: they agree,
    so a fresh database may be created from the models and stamped)."""
    engine = make_engine(url)
    upgrade_head(engine, from_scratch=False)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_object": _include,
                "compare_type": True,
                "compare_server_default": _defaults_differ,
            },
        )
        return compare_metadata(ctx, SQLModel.metadata)


def test_models_and_migrations_agree_on_sqlite(tmp_path: Path):
    assert _diff(f"sqlite:///{tmp_path / 'm.db'}") == []


@pytest.mark.postgres
def test_models_and_migrations_agree_on_postgres(postgres_url: str):
    assert _diff(postgres_url) == []


def test_migration_history_has_a_single_head():
    from alembic.script import ScriptDirectory

    from offboard_audit.storage.migrate import alembic_config

    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_db_upgrade_command_creates_the_schema_and_is_repeatable(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "offboard_audit", "--db", url, "db", "upgrade"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"(head {head_revision()})" in proc.stderr
    store = Store.open(url, upgrade=False)
    assert current_revision(store.engine) == head_revision()
    assert {"runs", "findings", "audit_events", "actions"} <= set(inspect(store.engine).get_table_names())


@pytest.mark.postgres
def test_processes_opening_a_fresh_postgres_database_together_upgrade_it_once(postgres_url: str):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        revisions = pool.map(_open_and_report, [postgres_url] * 4)
    assert revisions == [head_revision()] * 4


def _open_and_report(url: str) -> str | None:
    store = Store.open(url)
    return current_revision(store.engine)


def test_a_fresh_database_is_created_from_the_models_and_stamped_with_the_newest_revision(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    store = Store.open(url)
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_object": _include,
                "compare_type": True,
                "compare_server_default": _defaults_differ,
            },
        )
        assert compare_metadata(ctx, SQLModel.metadata) == []
    # A database that has tables but no revision is never created over: Alembic migrates it
    # (and here fails on the table that is in the way) rather than silently stamping it.
    engine = make_engine(f"sqlite:///{tmp_path / 'foreign.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (x INTEGER)")
    with pytest.raises(Exception, match="people"):
        upgrade_head(engine)
    assert current_revision(engine) is None


def test_the_head_written_in_migrate_is_the_head_of_the_migration_scripts() -> None:
    # A new migration that does not move HEAD would leave databases one revision behind
    # looking current: the fast check in upgrade_head trusts HEAD.
    assert head_revision() == HEAD


def test_a_database_one_revision_behind_the_head_is_upgraded_not_taken_for_current(tmp_path: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    previous = ScriptDirectory.from_config(cfg).get_revision(HEAD).down_revision
    assert isinstance(previous, str)
    engine = make_engine(f"sqlite:///{tmp_path / 'behind.db'}")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, previous)
    assert current_revision(engine) == previous

    upgrade_head(engine)
    assert current_revision(engine) == HEAD
