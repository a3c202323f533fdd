"""Tests for lmrec.data.filters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmrec.data.filters import dedupe, filter_rating, kcore
from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError, InputError


def _ds(rows: list[tuple], columns: tuple[str, ...] = ("user_id", "item_id")) -> Dataset:
    inter = pd.DataFrame(rows, columns=list(columns))
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4", "spare"], "title": list("abcde")})
    return Dataset.build(inter, items, name="toy")


def _pairs(ds: Dataset) -> list[tuple[str, str]]:
    return list(zip(ds.interactions["user_id"], ds.interactions["item_id"], strict=True))


def test_filter_rating_keeps_threshold_and_catalog() -> None:
    ds = _ds(
        [("u1", "i1", 3.0), ("u1", "i2", 4.0), ("u2", "i1", 5.0), ("u2", "i3", 3.5)],
        ("user_id", "item_id", "rating"),
    )
    out = filter_rating(ds, 3.5)
    assert out.interactions["rating"].tolist() == [4.0, 5.0, 3.5]
    # The catalog is the same table: filtering must not shrink the ID universe.
    assert out.items is ds.items and out.users is ds.users
    assert list(out.item_ids) == ["i1", "i2", "i3", "i4", "spare"]


def test_filter_rating_needs_rating() -> None:
    with pytest.raises(InputError, match="rating"):
        filter_rating(_ds([("u1", "i1")]), 3)


def test_kcore_iterates_until_stable() -> None:
    # Round 1 drops i3 (1 interaction); only then does u3 fall to 1 and go in round 2.
    ds = _ds([("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2"), ("u3", "i3")])
    out = kcore(ds, user_k=2, item_k=2)
    assert _pairs(out) == [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2")]
    assert out.items is ds.items
    assert kcore(ds).n_interactions == ds.n_interactions


def _naive_kcore(df: pd.DataFrame, uk: int, ik: int) -> pd.DataFrame:
    while True:
        u = df.groupby("user_id")["item_id"].transform("size")
        i = df.groupby("item_id")["user_id"].transform("size")
        keep = (u >= uk) & (i >= ik)
        if keep.all():
            return df.reset_index(drop=True)
        df = df[keep]


def test_kcore_matches_naive_loop() -> None:
    rng = np.random.default_rng(3)
    inter = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.zipf(1.6, 3000) % 400],
            "item_id": [f"i{x}" for x in rng.zipf(1.4, 3000) % 500],
        }
    )
    ds = Dataset.build(inter)
    out = kcore(ds, user_k=5, item_k=3)
    expected = _naive_kcore(ds.interactions, 5, 3)
    assert 0 < out.n_interactions < ds.n_interactions
    pd.testing.assert_frame_equal(out.interactions, expected)


def test_kcore_rejects_negative() -> None:
    with pytest.raises(ConfigError):
        kcore(_ds([("u1", "i1")]), user_k=-1)


def test_dedupe_last_by_timestamp_ties_in_file_order() -> None:
    cols = ("user_id", "item_id", "rating", "timestamp")
    ds = _ds(
        [
            ("u1", "i1", 1.0, 5.0),
            ("u2", "i1", 4.0, 1.0),
            ("u1", "i1", 2.0, 3.0),
            ("u1", "i1", 3.0, 5.0),  # ties with row 0 but comes later in the file
            ("u1", "i2", 5.0, 0.0),
        ],
        cols,
    )
    last = dedupe(ds)
    assert last.interactions["rating"].tolist() == [4.0, 3.0, 5.0]  # input order kept
    first = dedupe(ds, keep="first")
    assert first.interactions["rating"].tolist() == [4.0, 2.0, 5.0]
    assert last.items is ds.items


def test_dedupe_without_timestamp_uses_file_order() -> None:
    ds = _ds(
        [("u1", "i1", 1.0), ("u1", "i1", 2.0), ("u1", "i2", 3.0)], ("user_id", "item_id", "rating")
    )
    assert dedupe(ds).interactions["rating"].tolist() == [2.0, 3.0]
    assert dedupe(ds, keep="first").interactions["rating"].tolist() == [1.0, 3.0]
    with pytest.raises(ConfigError):
        dedupe(ds, keep="middle")  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", ["first", "last"])
def test_dedupe_matches_stable_reference(keep: str) -> None:
    rng = np.random.default_rng(2)
    n = 2000
    inter = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 6, n)],
            "item_id": [f"i{x}" for x in rng.integers(0, 6, n)],
            "rating": np.arange(n, dtype=float),  # identifies the row
            "timestamp": rng.integers(0, 3, n).astype(float),
        }
    )
    out = dedupe(Dataset.build(inter), keep=keep)  # type: ignore[arg-type]
    expected = []
    for _, rows in inter.groupby(["user_id", "item_id"]):
        chrono = sorted(zip(rows.timestamp, rows.rating, strict=True), key=lambda r: r[0])
        expected.append(chrono[-1 if keep == "last" else 0][1])
    assert out.interactions["rating"].tolist() == sorted(expected)
