"""Stores on real databases: a SQLite file, and a throwaway PostgreSQL server per session."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import PostgresServer, start_postgres

from lmrec.serve.storage import Store


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session (skipped with LMREC_SKIP_POSTGRES=1)."""
    if os.environ.get("LMREC_SKIP_POSTGRES") == "1":
        pytest.skip("LMREC_SKIP_POSTGRES=1")
    # not under pytest's tmp_path: as root that sits in a 0700 directory the server's
    # `postgres` user cannot enter
    base = Path(tempfile.mkdtemp(prefix="lmrec-pg-"))
    try:
        server = start_postgres(base)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the server's ``lmrec`` database, shared by the session."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a new empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    with postgres_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url_for(name)
    with postgres_server.connect() as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'lmrec.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL on each backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on a fresh database of each backend."""
    with Store(db_url) as opened:
        yield opened


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A migrated store on a fresh SQLite file."""
    with Store(sqlite_url) as opened:
        yield opened
