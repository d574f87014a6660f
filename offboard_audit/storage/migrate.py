"""Run the Alembic migrations from code (``offboard-audit db upgrade`` and first use)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from offboard_audit.storage import models  # noqa: F401  (registers every table on the metadata)
from offboard_audit.storage.locks import SCHEMA_UPGRADE, transaction_lock


def migrations_dir() -> Path:
    """Where the migration scripts are: inside the installed package, or the repo's alembic/."""
    packaged = Path(__file__).resolve().parent.parent / "migrations"
    if (packaged / "env.py").exists():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "alembic"
    if (repo / "env.py").exists():
        return repo
    raise FileNotFoundError("migration scripts not found (expected offboard_audit/migrations or alembic/)")


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def upgrade_head(engine: Engine, *, from_scratch: bool = True) -> None:
    """Bring the schema to the newest revision (no-op when it already is).

    An empty database (no tables at all) is created straight from the models and stamped with
    the newest revision, as Alembic's cookbook describes: replaying every migration costs a new
    user's first command about half a second and gives the same schema
    (``tests/integration/test_migrations.py`` compares the models with the migrations on SQLite
    and PostgreSQL, with ``from_scratch=False``). A database with any table is migrated.

    Processes starting together on a fresh PostgreSQL database (daemon replicas, a CLI next to
    a daemon) would race to create the same tables; the ``schema-upgrade`` transaction lock
    (``storage/locks.py``) lets one upgrade while the others wait and then find nothing to do.
    """
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # SQLite serialises DDL itself (and a new database has no locks table yet).
            transaction_lock(conn, SCHEMA_UPGRADE)
        current = MigrationContext.configure(conn).get_current_revision()
        if current == script.get_current_head():
            return
        cfg.attributes["connection"] = conn
        if from_scratch and current is None and not inspect(conn).get_table_names():
            SQLModel.metadata.create_all(conn)
            command.stamp(cfg, "head")
            return
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
