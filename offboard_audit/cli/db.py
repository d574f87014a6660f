"""Command: db upgrade."""

from __future__ import annotations

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    db_app,
    err,
    state,
)
from offboard_audit.storage.store import Store


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> int:
    """Apply the database migrations (alembic upgrade head)."""
    from offboard_audit.storage.migrate import current_revision, head_revision

    st = state(ctx)
    url = st.database_url()
    store = Store.open(url)
    err.print(f"database at revision {current_revision(store.engine)} (head {head_revision()})")
    return EXIT_OK
