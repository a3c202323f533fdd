"""SQLAlchemy Core tables of the service database, mirrored by ``migrations/versions``.

The migrations are the source of truth for the schema; these definitions are what the
queries are built from. ``tests/serve/test_storage.py`` compares the two so they cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

#: Column lengths, shared with the input checks in `lmrec.serve.storage`.
ID_LENGTH = 128
RECOMMENDATION_ID_LENGTH = 64
TYPE_LENGTH = 16
USER_HASH_LENGTH = 64


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``timestamp with time zone`` that always reads back as an aware UTC datetime.

    SQLite has no time zone type, so values are stored there as naive UTC text (which also
    keeps text order equal to time order) and given back their UTC zone on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (naive for SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: lmrec stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Give back an aware UTC datetime whatever the backend returned."""
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT on PostgreSQL (a busy service can pass 2**31 events); SQLite needs plain INTEGER
# for the column to be the rowid alias that AUTOINCREMENT applies to.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("user_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("item_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("type", sa.String(TYPE_LENGTH), nullable=False),
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("recommendation_id", sa.String(RECOMMENDATION_ID_LENGTH), nullable=True),
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    sa.Index("ix_events_user_id_seq", "user_id", "seq"),
    # AUTOINCREMENT: without it SQLite reuses the seq of deleted newest rows, and a replay
    # consumer that has already passed that seq would never see the new event.
    sqlite_autoincrement=True,
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("profile_text", sa.Text(), nullable=True),
    sa.Column("attributes", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("fields", sa.JSON(), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

forgotten_users = sa.Table(
    "forgotten_users",
    metadata,
    sa.Column("user_hash", sa.CHAR(USER_HASH_LENGTH), primary_key=True),
    sa.Column("forgotten_at", UTCDateTime(), nullable=False),
)
