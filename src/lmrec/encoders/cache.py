"""An on-disk embedding cache, and `CachedEncoder`, which embeds only texts it has not seen.

Vectors are keyed by (encoder name, SHA-256 of the exact text) and stored as float32 bytes
in one SQLite file per encoder name, with a table for items and one for queries (a model may
embed the two differently). Rows are found through an index on an integer made of the
digest's first 8 bytes; the full digest is compared, so a collision is a miss, never a wrong
vector.
SQLite in WAL mode commits each transaction atomically, so a crash mid-write loses at most
the rows of that transaction and never corrupts the file; several processes may share a
cache. Lookups go in chunks of a few hundred ids.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import numpy as np

from lmrec.encoders.base import Encoder
from lmrec.errors import ConfigError, InputError, LmrecError

Kind = Literal["items", "queries"]
KINDS: tuple[Kind, ...] = ("items", "queries")
_CHUNK = 500  # ids per IN (...) query; SQLite allows at least 999 parameters
_COMMIT_ROWS = 5000  # rows per transaction: keeps the WAL file small
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    rid INTEGER PRIMARY KEY, id INTEGER NOT NULL UNIQUE, key BLOB NOT NULL, vec BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    rid INTEGER PRIMARY KEY, id INTEGER NOT NULL UNIQUE, key BLOB NOT NULL, vec BLOB NOT NULL
);
"""
# Rows are appended in insertion order (``rid``) and found through the small index on ``id``:
# keying the table itself by the random ``id`` made inserts of 1.5 KB rows ~5x slower.


class CacheError(LmrecError):
    """The cache file does not match the encoder (another name or dimension)."""


def text_key(text: str) -> bytes:
    """SHA-256 digest of the text's UTF-8 bytes (lone surrogates kept)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _row_id(digest: bytes) -> int:
    """SQLite row id from a digest's first 8 bytes (the full digest is checked on lookup)."""
    return int.from_bytes(digest[:8], "little", signed=True)


#: Bump when the table layout changes.
SCHEMA_VERSION = 2


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")


class EmbeddingCache:
    """Float32 vectors on disk, keyed by encoder name and exact text.

    Args:
        directory: Folder for the SQLite files (created if needed).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._conns: dict[str, sqlite3.Connection] = {}
        self._lock = threading.RLock()

    def path(self, name: str) -> Path:
        """The SQLite file holding encoder ``name``'s vectors.

        The schema version is part of the name, so a cache written by another lmrec version
        is ignored (and re-filled) rather than misread.
        """
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        return self.directory / f"{safe}-{digest}-v{SCHEMA_VERSION}.sqlite"

    def _conn(self, name: str) -> sqlite3.Connection:
        conn = self._conns.get(name)
        if conn is None:
            conn = sqlite3.connect(
                self.path(name), timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA journal_size_limit=33554432")  # truncate the WAL to 32 MB
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('name', ?)", (name,))
            (stored,) = conn.execute("SELECT v FROM meta WHERE k = 'name'").fetchone()
            if stored != name:
                conn.close()
                raise CacheError(f"{self.path(name)} belongs to encoder {stored!r}, not {name!r}")
            self._conns[name] = conn
        return conn

    def _dim(self, conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT v FROM meta WHERE k = 'dim'").fetchone()
        return int(row[0]) if row else None

    def get(
        self, name: str, texts: Sequence[str], dim: int, kind: Kind = "items"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Look up cached vectors.

        Args:
            name: Encoder name.
            texts: Texts to look up.
            dim: Vector dimension the caller expects.
            kind: ``items`` or ``queries``.

        Returns:
            ``(vectors, found)``: float32 ``(len(texts), dim)`` (zero rows where not found)
            and a bool mask ``(len(texts),)``.

        Raises:
            CacheError: If the cache holds vectors of another dimension for ``name``.
        """
        _check_kind(kind)
        vectors = np.zeros((len(texts), dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        if not texts:
            return vectors, found
        digests = [text_key(t) for t in texts]
        first: dict[int, int] = {}  # row id -> first position with that text
        dup_src: list[int] = []
        dup_dst: list[int] = []
        for i, digest in enumerate(digests):
            j = first.setdefault(_row_id(digest), i)
            if j != i:
                dup_src.append(j)
                dup_dst.append(i)
        ids = list(first)
        with self._lock:
            conn = self._conn(name)
            stored = self._dim(conn)
            if stored is None:
                return vectors, found
            if stored != dim:
                raise CacheError(f"cache for {name!r} holds {stored}-d vectors, not {dim}-d")
            rows: list[tuple[int, bytes, bytes]] = []
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                sql = f"SELECT id, key, vec FROM {kind} WHERE id IN ({','.join('?' * len(chunk))})"
                rows.extend(conn.execute(sql, chunk).fetchall())
        rows = [r for r in rows if r[1] == digests[first[r[0]]]]  # a collision is a miss
        if rows:
            dst = np.fromiter((first[r[0]] for r in rows), dtype=np.intp, count=len(rows))
            block = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
            vectors[dst] = block.reshape(len(rows), dim)
            found[dst] = True
        if dup_dst:
            vectors[dup_dst] = vectors[dup_src]
            found[dup_dst] = found[dup_src]
        return vectors, found

    def put(
        self, name: str, texts: Sequence[str], vectors: np.ndarray, kind: Kind = "items"
    ) -> None:
        """Store vectors, replacing existing entries.

        Rows are committed in transactions of a few thousand, so a crash keeps whole
        transactions only (the rest is simply embedded again next time).

        Raises:
            InputError: If ``vectors`` is not ``(len(texts), dim)``.
            CacheError: If the cache holds vectors of another dimension for ``name``.
        """
        _check_kind(kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise InputError(f"expected {len(texts)} vectors, got an array of {vectors.shape}")
        if not texts:
            return
        dim = vectors.shape[1]
        digests = [text_key(t) for t in texts]
        rows = [(_row_id(d), d, v.tobytes()) for d, v in zip(digests, vectors, strict=True)]
        sql = f"INSERT OR REPLACE INTO {kind} (id, key, vec) VALUES (?, ?, ?)"
        with self._lock:
            conn = self._conn(name)
            for start in range(0, len(rows), _COMMIT_ROWS):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    stored = self._dim(conn)
                    if stored is None:
                        conn.execute("INSERT INTO meta VALUES ('dim', ?)", (str(dim),))
                    elif stored != dim:
                        msg = f"cache for {name!r} holds {stored}-d vectors, not {dim}-d"
                        raise CacheError(msg)
                    conn.executemany(sql, rows[start : start + _COMMIT_ROWS])
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

    def count(self, name: str, kind: Kind = "items") -> int:
        """Number of cached vectors for an encoder and kind."""
        _check_kind(kind)
        with self._lock:
            return int(self._conn(name).execute(f"SELECT COUNT(*) FROM {kind}").fetchone()[0])

    def clear(self, name: str) -> None:
        """Delete every vector cached for encoder ``name``."""
        with self._lock:
            conn = self._conn(name)
            conn.execute("BEGIN IMMEDIATE")
            for kind in KINDS:
                conn.execute(f"DELETE FROM {kind}")
            conn.execute("DELETE FROM meta WHERE k = 'dim'")
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the SQLite connections (the cache reopens them on next use)."""
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"


class CachedEncoder(Encoder):
    """Wraps an `Encoder` so that only texts missing from an `EmbeddingCache` are embedded.

    Args:
        encoder: The encoder doing the work; its ``name`` keys the cache.
        cache: Where vectors are kept.

    Attributes:
        hits: Distinct texts served from the cache so far (per call, duplicates count once).
        misses: Distinct texts embedded (and stored) so far.
    """

    def __init__(self, encoder: Encoder, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache
        self.name = encoder.name
        self.dim = encoder.dim
        self.max_tokens = encoder.max_tokens
        self.hits = 0
        self.misses = 0

    def reset_counters(self) -> None:
        """Set `hits` and `misses` to zero."""
        self.hits = self.misses = 0

    def _encode(
        self, texts: list[str], batch_size: int, progress: bool, is_query: bool
    ) -> np.ndarray:
        kind: Kind = "queries" if is_query else "items"
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        vectors, found = self.cache.get(self.name, unique, self.dim, kind)
        missing = [t for t, f in zip(unique, found, strict=True) if not f]
        if missing:
            embed = self.encoder.encode_queries if is_query else self.encoder.encode_items
            new = embed(missing, batch_size=batch_size, progress=progress)
            self.cache.put(self.name, missing, new, kind)
            vectors[~found] = new
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if len(unique) == len(texts):
            return vectors
        where = {t: i for i, t in enumerate(unique)}
        return vectors[[where[t] for t in texts]]

    def _embed_batch(self, texts: list[str], is_query: bool) -> np.ndarray:
        return self.encoder._embed_batch(texts, is_query)  # uncached; `_encode` is the path

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def truncate(self, text: str) -> str:
        return self.encoder.truncate(text)

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, {self.cache!r})"


__all__ = ["CacheError", "CachedEncoder", "EmbeddingCache", "text_key"]
