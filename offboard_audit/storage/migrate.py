"""Run the Alembic migrations from code (``offboard-audit db upgrade`` and first use)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import SQLModel

from offboard_audit.core.errors import ConfigError
from offboard_audit.storage import models  # noqa: F401  (registers every table on the metadata)
from offboard_audit.storage.locks import SCHEMA_UPGRADE, transaction_lock

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# The newest migration. Every command opens the database and checks it is at this revision:
# with the revision written here, a database already at head is checked without importing
# Alembic and parsing every migration script (~0.15 s of each command). Alembic does all the
# rest (an empty database, an older one). tests/integration/test_migrations.py checks that this
# is the head of the scripts, so a new migration that forgets to move it fails the suite.
HEAD = "0014"


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
    from alembic.config import Config as AlembicConfig

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
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            transaction_lock(conn, SCHEMA_UPGRADE)
        if stored_revision(conn) == HEAD:
            return
        if conn.dialect.name == "sqlite":
            # Python's sqlite3 opens a transaction only before a data change, so each DDL
            # statement of a migration would commit by itself: a process killed part way left
            # half a migration under the old revision, and every later command failed on it.
            # An explicit write transaction makes the upgrade all or nothing (as on PostgreSQL)
            # and lets one process upgrade while the others wait (a new file has no locks
            # table); the revision is read again below, inside it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        cfg = alembic_config()
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head_revision():
            return
        if current is not None and current not in known_revisions():
            # Written by a newer offboard-audit (a replica already upgraded, a rollback of this
            # one): its schema cannot be read or migrated by this version.
            raise ConfigError(
                f"the database is at schema revision {current}, which this version of offboard-audit "
                f"does not know (its newest is {HEAD}): a newer version upgraded it; run that version "
                "(or a newer one) on this database",
                "database.url",
            )
        cfg.attributes["connection"] = conn
        if from_scratch and current is None and not inspect(conn).get_table_names():
            SQLModel.metadata.create_all(conn)
            command.stamp(cfg, "head")
            return
        command.upgrade(cfg, "head")


def stored_revision(conn: Connection) -> str | None:
    """The revision ``alembic_version`` holds, or None (no table yet, or not exactly one row:
    Alembic itself then decides what to do)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return str(rows[0]) if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def known_revisions() -> set[str]:
    """Every revision of the migration scripts."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def head_revision() -> str | None:
    """The head of the migration scripts, as Alembic reads them (``HEAD`` must equal it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
