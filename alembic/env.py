"""Alembic environment: runs migrations on a connection handed over by offboard-audit,
or on the URL from ``-x db=URL`` / ``OFFBOARD_AUDIT_DB`` when alembic is run by hand."""

from __future__ import annotations

import os

from alembic import context
from sqlmodel import SQLModel

import offboard_audit.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from offboard_audit.storage.store import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or os.environ.get("OFFBOARD_AUDIT_DB")
    if not url:
        raise SystemExit("set OFFBOARD_AUDIT_DB or pass -x db=URL")
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
