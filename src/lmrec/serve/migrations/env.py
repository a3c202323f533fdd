"""Alembic environment of the service database, run only through `Store.migrate`.

`lmrec.serve.storage.Store.migrate` hands over a live connection, already inside the
transaction (and lock) it wants the upgrade to run in, as ``config.attributes["connection"]``;
there is no alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from lmrec.serve.tables import metadata


def run_migrations_online() -> None:
    """Run the migrations on the connection given by `Store.migrate`."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "lmrec migrations need a live connection in config.attributes['connection']; "
            "run them with lmrec.serve.storage.Store(url).migrate()"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can alter little in place; batch mode rebuilds tables for later migrations
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("lmrec migrations have no offline mode; use Store(url).migrate()")
run_migrations_online()
