"""The service database: events, user profiles, catalog changes and forgotten users.

One `Store` wraps one SQLAlchemy engine (SQLite or PostgreSQL) and is safe to share between
threads: every call checks a connection out of the engine's pool for one transaction and
gives it back. Writes are serialised (SQLite's write lock taken up front with
``BEGIN IMMEDIATE``; a transaction-scoped advisory lock on PostgreSQL) so that ``seq`` values
become visible in commit order: a replay consumer that reads `Store.events_since` and
remembers the last ``seq`` it saw can never skip an event committed later with a lower one.

Durability: `Store.add_events` returns only after its transaction committed, and SQLite runs
with ``synchronous=FULL`` in WAL mode, so an acknowledged batch survives a crash or power loss.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from lmrec.errors import InputError
from lmrec.serve import tables as t
from lmrec.serve.engine import (
    WRITE_OPTION,
    StoreConfigError,
    StoreError,
    install_sqlite_hooks,
    is_memory,
    parse_url,
)
from lmrec.serve.records import (
    EVENT_TYPES,
    EventRecord,
    IngestResult,
    ItemRecord,
    UserRecord,
    check_event,
    check_id,
    check_json,
    check_limit,
    user_hash,
)

__all__ = [
    "EVENT_TYPES",
    "EventRecord",
    "IngestResult",
    "ItemRecord",
    "Store",
    "StoreConfigError",
    "StoreError",
    "UserRecord",
    "user_hash",
]


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key of the PostgreSQL advisory lock that serialises writers (any fixed 64-bit number).
_PG_WRITE_LOCK = 0x6C6D726563  # "lmrec"
#: Rows per IN (...) list, well under SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 1000
#: alembic's `context` is one module-global proxy: two upgrades in one process at a time
#: (say two Stores on different databases) would run on each other's connections.
_MIGRATE_LOCK = threading.Lock()


class Store:
    """Persistent state of the service over one SQLAlchemy engine; safe across threads.

    Args:
        url: SQLAlchemy database URL: ``sqlite:///path/to/file.db`` (``sqlite://`` for an
            in-memory database, serialised by a lock) or ``postgresql://...`` (psycopg 3).
        migrate: Bring the schema up to date (``alembic upgrade head``) on open.

    Raises:
        StoreConfigError: The URL is malformed, unsupported, or names a missing directory.
        StoreError: The database could not be reached or migrated.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self._url = parse_url(url)
        self._lock: AbstractContextManager[Any] = nullcontext()
        kwargs: dict[str, Any] = {}
        if self._url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if is_memory(self._url):
                # One shared connection keeps the one in-memory database alive; the lock
                # stops threads from interleaving statements of their transactions on it.
                kwargs["poolclass"] = StaticPool
                self._lock = threading.RLock()
            else:
                parent = Path(self._url.database or "").expanduser().resolve().parent
                if not parent.is_dir():
                    raise StoreConfigError(f"{self.url}: directory {parent} does not exist")
        else:
            # a bounded connect keeps ping() (the readiness probe) from hanging on a dead host
            kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "lmrec"}
            kwargs["pool_pre_ping"] = True  # survive a database restart between requests
        self._engine = sa.create_engine(self._url, **kwargs)
        if self.dialect == "sqlite":
            install_sqlite_hooks(self._engine)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self._engine.dispose()  # a failed open leaves no pooled connections behind
                raise

    # ------------------------------------------------------------------ plumbing

    @property
    def url(self) -> str:
        """The database URL with any password masked, for logs."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The underlying engine (for diagnostics and tests; prefer the methods)."""
        return self._engine

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction on a pooled connection, committed on a clean exit.

        Database failures come out as `StoreError`; other exceptions roll back and pass.
        """
        with self._lock:
            try:
                with self._engine.connect() as conn:
                    if write:
                        conn.execution_options(**{WRITE_OPTION: True})
                    with conn.begin():
                        if write and self.dialect == "postgresql":
                            conn.execute(
                                sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                {"key": _PG_WRITE_LOCK},
                            )
                        yield conn
            except sa_exc.SQLAlchemyError as e:
                # the driver's own message: SQLAlchemy's text adds the SQL and every
                # parameter, which for a 5,000-event batch is megabytes of log
                orig = e.orig if isinstance(e, sa_exc.StatementError) else None
                cause: BaseException = orig if orig is not None else e
                detail = " ".join(str(cause).split())[:1000]  # drivers add multi-line hints
                raise StoreError(f"{self.url}: {type(cause).__name__}: {detail}") from e

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """The dialect's INSERT, which has ON CONFLICT."""
        return sqlite.insert(table) if self.dialect == "sqlite" else postgresql.insert(table)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when it is current.

        Runs in one write transaction, so concurrent starts (several workers) take turns.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # process lock before the database lock, always: add_events takes only the latter
        with _MIGRATE_LOCK, self._connect(write=True) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` (for the readiness probe)."""
        try:
            with self._connect() as conn:
                return conn.execute(sa.select(1)).scalar_one() == 1
        except StoreError:
            return False

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self._engine.dispose()

    # ------------------------------------------------------------------ events

    def add_events(self, events: Sequence[EventRecord]) -> IngestResult:
        """Store a batch of events in one transaction, idempotent on ``event_id``.

        The batch is committed before this returns: a returned result is the ack. The first
        occurrence of an ID within the batch wins; ``seq`` and ``received_at`` are assigned
        here (any ``seq`` on the input is ignored).

        A user forgotten by `delete_user` may send new events; they are stored as a fresh
        user's, and the forgotten marker stays, so a retrain still drops the user's old base
        training data (every stored event of theirs postdates the forget).

        Raises:
            InputError: An event is invalid; then nothing of the batch is stored.
        """
        received_at = datetime.now(UTC)
        first: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for i, event in enumerate(events):
            check_event(event, i)
            if event.event_id in first:
                continue
            first[event.event_id] = i
            rows.append(
                {
                    "event_id": event.event_id,
                    "user_id": event.user_id,
                    "item_id": event.item_id,
                    "type": event.type,
                    "value": None if event.value is None else float(event.value),
                    "ts": event.ts,
                    "received_at": received_at,
                    "recommendation_id": event.recommendation_id,
                }
            )
        inserted: set[str] = set()
        if rows:
            stmt = self._insert(t.events).on_conflict_do_nothing(index_elements=["event_id"])
            with self._connect(write=True) as conn:
                # executemany with RETURNING ("insertmanyvalues"): multi-row INSERTs of up to
                # 1000 rows, and the IDs that ON CONFLICT skipped are simply not returned.
                result = conn.execute(stmt.returning(t.events.c.event_id), rows)
                inserted = set(result.scalars())
        accepted: list[str] = []
        duplicates: list[str] = []
        for i, event in enumerate(events):
            new = first[event.event_id] == i and event.event_id in inserted
            (accepted if new else duplicates).append(event.event_id)
        return IngestResult(accepted=accepted, duplicates=duplicates)

    def user_events(
        self, user_id: str, limit: int = 100, before_seq: int | None = None
    ) -> list[EventRecord]:
        """A user's events, newest (highest ``seq``) first.

        Args:
            user_id: The user.
            limit: At most this many events.
            before_seq: Only events with a lower ``seq`` (to page back through history).
        """
        check_limit(limit)
        query = sa.select(t.events).where(t.events.c.user_id == user_id)
        if before_seq is not None:
            query = query.where(t.events.c.seq < before_seq)
        query = query.order_by(t.events.c.seq.desc()).limit(limit)
        with self._connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def events_since(self, after_seq: int = 0, limit: int | None = None) -> list[EventRecord]:
        """Events with ``seq > after_seq`` in ascending ``seq`` order (replay, retraining)."""
        query = sa.select(t.events).where(t.events.c.seq > after_seq).order_by(t.events.c.seq)
        if limit is not None:
            check_limit(limit)
            query = query.limit(limit)
        with self._connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def count_events(self, user_id: str | None = None) -> int:
        """Number of stored events, of one user or of everyone."""
        query = sa.select(sa.func.count()).select_from(t.events)
        if user_id is not None:
            query = query.where(t.events.c.user_id == user_id)
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def max_seq(self) -> int:
        """The highest stored ``seq``; 0 when there are no events."""
        with self._connect() as conn:
            value = conn.execute(sa.select(sa.func.max(t.events.c.seq))).scalar_one()
        return int(value or 0)

    def has_event(self, event_id: str) -> bool:
        """Whether an event with this ID is stored."""
        query = sa.select(sa.exists().where(t.events.c.event_id == event_id))
        with self._connect() as conn:
            return bool(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ users

    def upsert_user(
        self, user_id: str, profile_text: str | None, attributes: dict[str, Any]
    ) -> UserRecord:
        """Create or replace a user's profile.

        A forgotten user may set a new profile; their forgotten marker stays (see
        `add_events`).

        Raises:
            InputError: A bad ID, or attributes that are not a JSON object.
        """
        check_id(user_id, "user_id")
        if profile_text is not None and not isinstance(profile_text, str):
            raise InputError("profile_text must be a string or None", column="profile_text")
        check_json(attributes, "attributes")
        stmt = self._insert(t.users).values(
            user_id=user_id,
            profile_text=profile_text,
            attributes=attributes,
            updated_at=datetime.now(UTC),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={c: stmt.excluded[c] for c in ("profile_text", "attributes", "updated_at")},
        )
        with self._connect(write=True) as conn:
            row = conn.execute(stmt.returning(*t.users.c)).one()
        return _user(row)

    def get_user(self, user_id: str) -> UserRecord | None:
        """A user's profile, or None."""
        with self._connect() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.user_id == user_id)).first()
        return None if row is None else _user(row)

    def delete_user(self, user_id: str) -> int:
        """Forget a user: delete their events and profile, and record ``sha256(user_id)``.

        All in one transaction. The digest goes to ``forgotten_users`` (even when nothing
        was stored, since the user may still be in the model's base training data) so that
        a later retrain can drop the user there too.

        Returns:
            The number of events deleted.
        """
        check_id(user_id, "user_id")
        forgotten = self._insert(t.forgotten_users).values(
            user_hash=user_hash(user_id), forgotten_at=datetime.now(UTC)
        )
        forgotten = forgotten.on_conflict_do_update(
            index_elements=["user_hash"], set_={"forgotten_at": forgotten.excluded.forgotten_at}
        )
        with self._connect(write=True) as conn:
            deleted = conn.execute(sa.delete(t.events).where(t.events.c.user_id == user_id))
            conn.execute(sa.delete(t.users).where(t.users.c.user_id == user_id))
            conn.execute(forgotten)
        return int(deleted.rowcount)

    def forgotten_users(self) -> set[str]:
        """SHA-256 hex digests of every user ever forgotten (their base data must go)."""
        with self._connect() as conn:
            return set(conn.execute(sa.select(t.forgotten_users.c.user_hash)).scalars())

    def is_forgotten(self, user_id: str) -> bool:
        """Whether the user was ever forgotten."""
        hashed = t.forgotten_users.c.user_hash == user_hash(user_id)
        with self._connect() as conn:
            return bool(conn.execute(sa.select(sa.exists().where(hashed))).scalar_one())

    # ------------------------------------------------------------------ items

    def upsert_item(self, item_id: str, fields: dict[str, Any]) -> ItemRecord:
        """Create or replace a catalog item (title, genres, description, attributes).

        Replacing a tombstone brings the item back (``deleted`` becomes False).

        Raises:
            InputError: A bad ID, or fields that are not a JSON object.
        """
        check_id(item_id, "item_id")
        check_json(fields, "fields")
        stmt = self._insert(t.items).values(
            item_id=item_id, fields=fields, deleted=False, updated_at=datetime.now(UTC)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={c: stmt.excluded[c] for c in ("fields", "deleted", "updated_at")},
        )
        with self._connect(write=True) as conn:
            return _item(conn.execute(stmt.returning(*t.items.c)).one())

    def delete_item(self, item_id: str) -> bool:
        """Soft-delete an item: keep (or create) a tombstone row with ``deleted=True``.

        An unknown ID gets a tombstone with empty fields, since it may name an item of the
        model's base catalog, which this table only overrides. A live row keeps its fields.

        Returns:
            True if a live row was tombstoned or a tombstone created; False if the item was
            already deleted (its row, ``updated_at`` included, is left as it was).
        """
        check_id(item_id, "item_id")
        stmt = self._insert(t.items).values(
            item_id=item_id, fields={}, deleted=True, updated_at=datetime.now(UTC)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={"deleted": True, "updated_at": stmt.excluded.updated_at},
            where=sa.not_(t.items.c.deleted),
        )
        with self._connect(write=True) as conn:
            return conn.execute(stmt.returning(t.items.c.item_id)).first() is not None

    def get_item(self, item_id: str) -> ItemRecord | None:
        """An item row (a tombstone too), or None."""
        with self._connect() as conn:
            row = conn.execute(sa.select(t.items).where(t.items.c.item_id == item_id)).first()
        return None if row is None else _item(row)

    def items(self) -> list[ItemRecord]:
        """All item rows, tombstones included, oldest change first."""
        query = sa.select(t.items).order_by(t.items.c.updated_at, t.items.c.item_id)
        with self._connect() as conn:
            return [_item(row) for row in conn.execute(query)]


# ---------------------------------------------------------------------- checks and rows


def _event(row: Row[Any]) -> EventRecord:
    m = row._mapping
    return EventRecord(
        event_id=m["event_id"],
        user_id=m["user_id"],
        item_id=m["item_id"],
        type=m["type"],
        ts=m["ts"],
        value=m["value"],
        recommendation_id=m["recommendation_id"],
        seq=int(m["seq"]),
    )


def _user(row: Row[Any]) -> UserRecord:
    m = row._mapping
    return UserRecord(m["user_id"], m["profile_text"], dict(m["attributes"]), m["updated_at"])


def _item(row: Row[Any]) -> ItemRecord:
    m = row._mapping
    return ItemRecord(m["item_id"], dict(m["fields"]), bool(m["deleted"]), m["updated_at"])
