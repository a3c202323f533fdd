"""`Store` on real SQLite files and a real PostgreSQL server: schema, events, users, items."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lmrec.errors import ConfigError, InputError
from lmrec.serve import tables
from lmrec.serve.storage import (
    EVENT_TYPES,
    EventRecord,
    Store,
    StoreError,
)

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = {"events", "users", "items", "forgotten_users", "alembic_version"}


def ev(
    event_id: str,
    user_id: str = "u1",
    item_id: str = "i1",
    *,
    type: str = "view",
    minutes: int = 0,
    value: float | None = None,
    recommendation_id: str | None = None,
) -> EventRecord:
    return EventRecord(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        type=type,
        ts=T0 + timedelta(minutes=minutes),
        value=value,
        recommendation_id=recommendation_id,
    )


def table_names(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


# ---------------------------------------------------------------------- schema


def test_migrate_creates_tables_and_is_idempotent(db_url: str) -> None:
    with Store(db_url, migrate=False) as bare:
        assert table_names(bare) == set()
        bare.migrate()
        assert table_names(bare) == TABLES
        bare.add_events([ev("e1")])
        bare.migrate()  # current already: a no-op that keeps the data
    with Store(db_url) as again:  # a second start migrates once more
        assert table_names(again) == TABLES
        assert again.count_events() == 1
        with again.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [("0001",)]


def test_concurrent_first_starts_migrate_once(db_url: str) -> None:
    # several workers opening a new database at once must not race on CREATE TABLE
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            with Store(db_url) as opened:
                opened.add_events([ev(f"e-{threading.get_ident()}")])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(db_url, migrate=False) as store:
        assert store.count_events() == 4
        assert table_names(store) == TABLES


def test_concurrent_migrations_of_different_databases(tmp_path: Path) -> None:
    # alembic's global `context` must not hand one store's connection to another's upgrade
    urls = [f"sqlite:///{tmp_path / f'db{i}.sqlite'}" for i in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(urls))

    def open_store(url: str) -> None:
        try:
            start.wait()
            Store(url).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_store, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for url in urls:
        with Store(url, migrate=False) as store:
            assert table_names(store) == TABLES


def test_tables_mirror_the_migration(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, tables.metadata)
    assert diff == []


def test_dialect_url_and_ping(store: Store, db_url: str) -> None:
    assert store.dialect == db_url.split(":")[0].split("+")[0]
    assert store.url.startswith(store.dialect)
    assert store.ping() is True
    assert repr(store) == f"Store({store.url!r})"


def test_password_masked_and_bare_postgresql_mapped_to_psycopg() -> None:
    store = Store("postgresql://lmrec:s3cret@127.0.0.1:1/lmrec", migrate=False)
    assert "s3cret" not in store.url
    assert store.url == "postgresql+psycopg://lmrec:***@127.0.0.1:1/lmrec"
    assert store.engine.dialect.driver == "psycopg"
    assert store.ping() is False  # nothing listens on port 1
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/lmrec") as caught:
        store.count_events()
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://lmrec:pw@host:notaport/db",
        "mysql://lmrec@localhost/lmrec",
        "postgresql+asyncpg://lmrec@localhost/lmrec",
        "",
    ],
)
def test_bad_url_raises_store_error_naming_it(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store(url)
    assert isinstance(caught.value, ConfigError)
    shown = url.replace(":pw@", ":***@")
    assert (shown in str(caught.value)) if url else "empty" in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_sqlite_url_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{tmp_path / 'nope' / 'lmrec.db'}")


def test_sqlite_pragmas_in_effect(sqlite_store: Store) -> None:
    sqlite_store.count_events()  # let the pool hold a used connection, then take a new one
    with sqlite_store.engine.connect() as a, sqlite_store.engine.connect() as b:
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_in_memory_store() -> None:
    with Store("sqlite://") as store:
        assert store.add_events([ev("e1"), ev("e2")]).accepted == ["e1", "e2"]
        assert store.count_events() == 2


# ---------------------------------------------------------------------- events


def test_add_events_accepted_and_duplicates(store: Store) -> None:
    first = store.add_events([ev("e1"), ev("e2")])
    assert first.accepted == ["e1", "e2"]
    assert first.duplicates == []
    # e2 stored already, e3 twice in the batch, e4 new
    second = store.add_events([ev("e2"), ev("e3"), ev("e3", item_id="other"), ev("e4")])
    assert second.accepted == ["e3", "e4"]
    assert second.duplicates == ["e2", "e3"]
    assert store.count_events() == 4
    # the first occurrence of e3 won
    assert [e.item_id for e in store.events_since() if e.event_id == "e3"] == ["i1"]
    assert store.has_event("e4") and not store.has_event("e5")


def test_resending_a_batch_gives_all_duplicates(store: Store) -> None:
    batch = [ev(f"e{i}", minutes=i) for i in range(10)]
    assert store.add_events(batch).accepted == [e.event_id for e in batch]
    seq_before = store.max_seq()
    again = store.add_events(batch)
    assert again.accepted == []
    assert again.duplicates == [e.event_id for e in batch]
    assert store.count_events() == 10
    assert store.max_seq() == seq_before


def test_empty_batch(store: Store) -> None:
    result = store.add_events([])
    assert (result.accepted, result.duplicates) == ([], [])
    assert store.max_seq() == 0
    assert store.count_events() == 0


def test_seq_increases_and_is_assigned_by_the_store(store: Store) -> None:
    store.add_events([EventRecord("a", "u1", "i1", "view", T0, seq=999)])
    store.add_events([ev("b"), ev("c")])
    seqs = [e.seq for e in store.events_since()]
    assert [e.event_id for e in store.events_since()] == ["a", "b", "c"]
    assert all(isinstance(s, int) for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert seqs[0] != 999
    assert store.max_seq() == seqs[-1]


def test_seq_never_reused_after_deleting_the_newest_events(store: Store) -> None:
    store.add_events([ev("a", "keep"), ev("b", "gone"), ev("c", "gone")])
    top = store.max_seq()
    store.delete_user("gone")
    assert store.max_seq() < top
    store.add_events([ev("d", "keep")])
    assert store.max_seq() > top  # a replay consumer at `top` still sees d


def test_user_events_newest_first_with_limit_and_before_seq(store: Store) -> None:
    store.add_events([ev(f"e{i}", "u1" if i % 2 == 0 else "u2", minutes=i) for i in range(10)])
    mine = store.user_events("u1")
    assert [e.event_id for e in mine] == ["e8", "e6", "e4", "e2", "e0"]
    assert all(e.user_id == "u1" for e in mine)
    assert [e.event_id for e in store.user_events("u1", limit=2)] == ["e8", "e6"]
    older = store.user_events("u1", limit=2, before_seq=mine[1].seq)
    assert [e.event_id for e in older] == ["e4", "e2"]
    assert store.user_events("nobody") == []
    assert store.count_events("u1") == 5
    assert store.count_events("u2") == 5
    assert store.count_events() == 10


def test_events_since_ascending(store: Store) -> None:
    store.add_events([ev(f"e{i}", f"u{i % 3}") for i in range(7)])
    everything = store.events_since()
    assert [e.event_id for e in everything] == [f"e{i}" for i in range(7)]
    after = everything[2].seq
    assert after is not None
    assert [e.event_id for e in store.events_since(after)] == [f"e{i}" for i in range(3, 7)]
    assert [e.event_id for e in store.events_since(after, limit=2)] == ["e3", "e4"]
    assert store.events_since(store.max_seq()) == []


def test_timestamps_round_trip_as_aware_utc(store: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    stamps = [
        datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2024, 6, 30, 23, 59, 59, 1, tzinfo=india),
        datetime(1999, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-8))),
    ]
    store.add_events([EventRecord(f"e{i}", "u1", "i1", "view", ts) for i, ts in enumerate(stamps)])
    back = store.events_since()
    assert [e.ts for e in back] == stamps  # equal instants
    for e, ts in zip(back, stamps, strict=True):
        assert e.ts.utcoffset() == timedelta(0)
        assert e.ts.replace(tzinfo=None) == ts.astimezone(UTC).replace(tzinfo=None)
    user = store.upsert_user("u1", None, {})
    assert user.updated_at.utcoffset() == timedelta(0)
    assert abs(user.updated_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_value_none_vs_float_and_recommendation_id(store: Store) -> None:
    store.add_events(
        [
            ev("e1", type="rating", value=4.5, recommendation_id="rec-1"),
            ev("e2", type="view"),
            ev("e3", type="rating", value=0.0),
            ev("e4", type="purchase", value=3),
        ]
    )
    back = {e.event_id: e for e in store.events_since()}
    assert back["e1"].value == 4.5 and back["e1"].recommendation_id == "rec-1"
    assert back["e2"].value is None and back["e2"].recommendation_id is None
    assert back["e3"].value == 0.0 and back["e3"].value is not None
    assert back["e4"].value == 3.0 and isinstance(back["e4"].value, float)
    assert [back[k].type for k in ("e1", "e2", "e4")] == ["rating", "view", "purchase"]


def test_unicode_ids_and_text_round_trip(store: Store) -> None:
    user, item = "用户-ß-😀", "物品-é-🎬"
    store.add_events([EventRecord("事件-1", user, item, "like", T0)])
    (back,) = store.user_events(user)
    assert (back.event_id, back.user_id, back.item_id) == ("事件-1", user, item)
    profile = store.upsert_user(user, "喜欢科幻 — naïve 😀", {"城市": "北京", "tags": ["ß"]})
    assert store.get_user(user) == profile
    assert profile.profile_text == "喜欢科幻 — naïve 😀"
    assert profile.attributes == {"城市": "北京", "tags": ["ß"]}
    assert store.upsert_item(item, {"title": "星际 ✨"}).fields == {"title": "星际 ✨"}
    assert store.get_item(item) is not None
    assert store.delete_user(user) == 1
    assert store.is_forgotten(user)


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        (EventRecord("e2", "u1", "i1", "watch", T0), "type"),
        (EventRecord("e2", "u1", "i1", "view", T0.replace(tzinfo=None)), "ts"),
        (EventRecord("", "u1", "i1", "view", T0), "event_id"),
        (EventRecord("e2", "u" * 129, "i1", "view", T0), "user_id"),
        (EventRecord("e2", "u1", "i1", "rating", T0, value=float("nan")), None),
        (
            EventRecord("e2", "u1", "i1", "view", T0, recommendation_id="r" * 65),
            "recommendation_id",
        ),
    ],
)
def test_invalid_event_rejects_the_whole_batch(
    sqlite_store: Store, bad: EventRecord, column: str | None
) -> None:
    with pytest.raises(InputError, match=r"event 1 \(") as caught:
        sqlite_store.add_events([ev("e1"), bad])
    assert caught.value.column == column
    assert sqlite_store.count_events() == 0


def test_event_types() -> None:
    assert EVENT_TYPES == ("view", "click", "like", "dislike", "rating", "purchase")


def test_batch_of_5000(store: Store) -> None:
    batch = [ev(f"e{i}", f"u{i % 97}", f"i{i % 500}", minutes=i) for i in range(5000)]
    result = store.add_events(batch)
    assert len(result.accepted) == 5000 and result.duplicates == []
    assert result.accepted[:3] == ["e0", "e1", "e2"]
    assert store.count_events() == 5000
    assert [e.event_id for e in store.events_since(limit=5000)][-1] == "e4999"
    again = store.add_events([*batch[-1500:], ev("new")])
    assert again.accepted == ["new"] and len(again.duplicates) == 1500


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(worker: int) -> None:
        try:
            start.wait()
            for i in range(0, 200, 4):  # small batches: many competing commits
                store.add_events([ev(f"w{worker}-{i + k}", f"u{worker}") for k in range(4)])
                store.count_events(f"u{worker}")  # reads interleave with the writes
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_events() == 800
    assert all(store.count_events(f"u{w}") == 200 for w in range(4))
    seqs = [e.seq for e in store.events_since()]
    assert len(set(seqs)) == 800 and seqs == sorted(seqs)


# ---------------------------------------------------------------------- users


def test_upsert_user_creates_then_replaces(store: Store) -> None:
    assert store.get_user("u1") is None
    created = store.upsert_user("u1", "likes sci-fi", {"age": 31, "langs": ["en", "de"]})
    assert store.get_user("u1") == created
    assert (created.profile_text, created.attributes) == (
        "likes sci-fi",
        {"age": 31, "langs": ["en", "de"]},
    )
    updated = store.upsert_user("u1", None, {"age": 32})
    assert store.get_user("u1") == updated
    assert (updated.profile_text, updated.attributes) == (None, {"age": 32})
    assert updated.updated_at >= created.updated_at
    with pytest.raises(InputError, match="attributes"):
        store.upsert_user("u1", None, {"bad": float("inf")})
    with pytest.raises(InputError, match="attributes"):
        store.upsert_user("u1", None, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert store.get_user("u1") == updated


def test_delete_user_forgets_only_that_user(store: Store) -> None:
    store.add_events([ev("a1", "alice"), ev("a2", "alice"), ev("b1", "bob"), ev("a3", "alice")])
    store.upsert_user("alice", "alice's profile", {"x": 1})
    bob = store.upsert_user("bob", "bob's profile", {})
    assert store.delete_user("alice") == 3
    assert store.user_events("alice") == [] and store.count_events("alice") == 0
    assert store.get_user("alice") is None
    digest = hashlib.sha256(b"alice").hexdigest()
    assert store.forgotten_users() == {digest}
    assert store.is_forgotten("alice") and not store.is_forgotten("bob")
    assert [e.event_id for e in store.user_events("bob")] == ["b1"]
    assert store.get_user("bob") == bob
    assert not store.has_event("a1")
    # forgetting someone with nothing stored still records them (base training data)
    assert store.delete_user("carol") == 0
    assert store.forgotten_users() == {digest, hashlib.sha256(b"carol").hexdigest()}
    # the old event IDs are free again
    assert store.add_events([ev("a1", "alice")]).accepted == ["a1"]


def test_a_forgotten_user_may_come_back_and_the_marker_stays(store: Store) -> None:
    store.add_events([ev("a1", "alice")])
    store.delete_user("alice")
    assert store.add_events([ev("a2", "alice")]).accepted == ["a2"]
    store.upsert_user("alice", "back", {})
    # stored as a fresh user, and still marked: a retrain must drop their old base data
    assert [e.event_id for e in store.user_events("alice")] == ["a2"]
    assert store.get_user("alice") is not None
    assert store.is_forgotten("alice")
    assert store.forgotten_users() == {hashlib.sha256(b"alice").hexdigest()}


# ---------------------------------------------------------------------- items


def test_items_upsert_tombstone_get_and_list(store: Store) -> None:
    assert store.get_item("i1") is None and store.items() == []
    created = store.upsert_item("i1", {"title": "Alien", "genres": ["Horror", "Sci-Fi"]})
    assert created.deleted is False
    assert store.get_item("i1") == created
    store.upsert_item("i2", {"title": "Heat"})
    assert store.delete_item("i1") is True  # live row tombstoned, fields kept
    tomb = store.get_item("i1")
    assert tomb is not None and tomb.deleted is True
    assert tomb.fields == {"title": "Alien", "genres": ["Horror", "Sci-Fi"]}
    assert tomb.updated_at >= created.updated_at
    assert store.delete_item("i1") is False  # already a tombstone: left as it was
    assert store.get_item("i1") == tomb
    assert store.delete_item("base-42") is True  # unknown (base catalog) item: new tombstone
    base = store.get_item("base-42")
    assert base is not None and (base.deleted, base.fields) == (True, {})
    assert [(i.item_id, i.deleted) for i in store.items()] == [
        ("i2", False),
        ("i1", True),
        ("base-42", True),
    ]
    revived = store.upsert_item("i1", {"title": "Alien (1979)"})
    assert (revived.deleted, revived.fields) == (False, {"title": "Alien (1979)"})
    assert store.items()[-1] == revived
