"""exposure ledger (issue 13): events, stream checkpoints, the secrets inventory, objects left by
leavers; findings gain exposure_json and the rotate owner

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 07:43:59.122110
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import offboard_audit.storage.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exposure_checkpoints",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("stream", sqlmodel.sql.sqltypes.AutoString(length=700), nullable=False),
        sa.Column("position", sa.Text(), nullable=False),
        sa.Column("recent_json", sa.Text(), nullable=False),
        sa.Column("updated_at", offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "stream"),
    )
    op.create_table(
        "exposure_events",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("at", offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("how", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("actor_identity", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("actor_kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("actor_account_id", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("actor_names_json", sa.Text(), nullable=False),
        sa.Column("target_scope", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("target_kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("target_owner", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("target_fingerprint", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id"),
    )
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.create_index("ix_exposure_events_actor", ["source", "actor_identity"], unique=False)

    op.create_table(
        "exposure_objects",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("object_id", sqlmodel.sql.sqltypes.AutoString(length=700), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_run", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("source", "scope", "kind", "object_id"),
    )
    op.create_table(
        "exposure_secrets",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("secret_id", sqlmodel.sql.sqltypes.AutoString(length=700), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("created_at", offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "current_version_created_at",
            offboard_audit.storage.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "oldest_enabled_version_created_at",
            offboard_audit.storage.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rotation_configured", sa.Boolean(), nullable=False),
        sa.Column("exportable", sa.Boolean(), nullable=False),
        sa.Column("signing", sa.Boolean(), nullable=False),
        sa.Column("grantees_json", sa.Text(), nullable=False),
        sa.Column("aliases_json", sa.Text(), nullable=False),
        sa.Column("updated_run", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("source", "scope", "kind", "secret_id"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exposure_json", sa.Text(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("owner_email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True)
        )
        batch_op.add_column(
            sa.Column("owner_via", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_column("owner_via")
        batch_op.drop_column("owner_email")
        batch_op.drop_column("exposure_json")

    op.drop_table("exposure_secrets")
    op.drop_table("exposure_objects")
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_events_actor")

    op.drop_table("exposure_events")
    op.drop_table("exposure_checkpoints")
