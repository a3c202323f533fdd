"""Database URLs and engine set-up for the service store: which URLs are accepted, and the
SQLite connection settings (pragmas, explicit BEGINs) that make its writes durable and ordered.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from lmrec.errors import ConfigError, LmrecError

#: Execution option that marks a connection as a writer (SQLite then takes the lock up front).
WRITE_OPTION = "lmrec_write"


class StoreError(LmrecError):
    """The database could not be reached or refused an operation."""


class StoreConfigError(StoreError, ConfigError):
    """A malformed or unsupported database URL (also a `ConfigError`, like other bad options)."""


def mask_unparsed(url: str) -> str:
    """Hide a password in a string that `make_url` could not parse."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_url(url: str) -> URL:
    """Check a database URL and pin the driver lmrec is tested with."""
    example = "e.g. sqlite:///var/lmrec.db or postgresql://user:password@host:5432/lmrec"
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError(f"empty database URL; expected {example}")
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError) as e:
        raise StoreConfigError(
            f"malformed database URL {mask_unparsed(url)!r} ({e}); expected {example}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    backend, driver = parsed.get_backend_name(), parsed.drivername.partition("+")[2]
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreConfigError(
        f"unsupported database URL {shown!r}: lmrec stores data in SQLite (sqlite://) or "
        f"PostgreSQL through psycopg 3 (postgresql:// or postgresql+psycopg://); {example}"
    )


def is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.database)


def install_sqlite_hooks(engine: Engine) -> None:
    """Pragmas on every new connection, and explicit BEGINs that lmrec controls."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN instead of the sqlite3 module,
        # which would start transactions late (at the first write) and only before DML.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=5000")  # first: the others may need the lock
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=FULL")  # NORMAL may lose commits on power loss
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock now, so a second writer waits in busy_timeout
        # instead of failing with SQLITE_BUSY when a read lock cannot be upgraded.
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
