"""Initial schema: events, users, items, forgotten_users.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

Written out in plain SQLAlchemy types (no imports from lmrec) so that this revision keeps
describing the same schema whatever later happens to `lmrec.serve.tables`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recommendation_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_user_id_seq", "events", ["user_id", "seq"])
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("profile_text", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "forgotten_users",
        sa.Column("user_hash", sa.CHAR(64), primary_key=True),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the four tables."""
    op.drop_table("forgotten_users")
    op.drop_table("items")
    op.drop_table("users")
    op.drop_index("ix_events_user_id_seq", table_name="events")
    op.drop_table("events")
