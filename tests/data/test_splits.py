"""Tests for lmrec.data.splits, pinning RecBole 1.2.1's split semantics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmrec
from lmrec.data.atomic import read_atomic
from lmrec.data.fetch import default_cache_dir
from lmrec.data.schema import Dataset
from lmrec.data.splits import (
    Split,
    load_split,
    make_split,
    recbole_split_counts,
    save_split,
    split_cold_item,
    split_cold_user,
    split_loo,
    split_ratio,
    split_temporal,
)
from lmrec.errors import ConfigError, InputError

ML100K = default_cache_dir() / "ml-100k"  # filled by `lmrec data fetch ml-100k` (make demo)
PROTOCOLS = ["ratio", "loo", "temporal", "cold-item", "cold-user"]


def _toy(seed: int = 0) -> Dataset:
    """Random interactions with many timestamp ties, repeated pairs, and tiny users."""
    rng = np.random.default_rng(seed)
    n = 1500
    inter = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 40, n)],
            "item_id": [f"i{x}" for x in rng.integers(0, 60, n)],
            "rating": rng.integers(1, 6, n).astype(float),
            "timestamp": rng.integers(0, 50, n).astype(float),
        }
    )
    tiny = pd.DataFrame(
        {
            "user_id": ["t1", "t2", "t2", "t3", "t3", "t3"],
            "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
            "rating": [1.0] * 6,
            "timestamp": [7.0, 1.0, 2.0, 3.0, 2.0, 1.0],
        }
    )
    items = pd.DataFrame({"item_id": [f"i{x}" for x in range(65)], "title": "t"})  # 5 unused
    users = pd.DataFrame({"user_id": [f"u{x}" for x in range(40)], "age": "20"})
    return Dataset.build(pd.concat([inter, tiny], ignore_index=True), items, users, name="toy")


def _canon(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


def _items(ds: Dataset) -> set[str]:
    return set(ds.interactions["item_id"])


def _users(ds: Dataset) -> set[str]:
    return set(ds.interactions["user_id"])


# -- RecBole's _calcu_split_ids -------------------------------------------------------------
def _recbole_calcu_split_ids(tot: int, ratios: list[float]) -> list[int]:
    """Verbatim copy of RecBole 1.2.1 Dataset._calcu_split_ids (after split_by_ratio's norm)."""
    tot_ratio = sum(ratios)
    ratios = [_ / tot_ratio for _ in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    split_ids = np.cumsum(cnt)[:-1]
    return list(split_ids)


@pytest.mark.parametrize(
    "ratios", [(0.8, 0.1, 0.1), (8, 1, 1), (0.7, 0.2, 0.1), (0.6, 0.2, 0.2), (0.9, 0.0, 0.1)]
)
def test_counts_match_recbole_reference(ratios: tuple[float, ...]) -> None:
    for tot in range(1, 201):
        ids = _recbole_calcu_split_ids(tot, list(ratios))
        expected = tuple(int(x) for x in np.diff([0, *ids, tot]))
        assert recbole_split_counts(tot, ratios) == expected, tot


@pytest.mark.parametrize(
    ("tot", "expected"),
    [
        (1, (1, 0, 0)),  # cnt[0] <= 1: nothing moved
        (2, (1, 0, 1)),  # test gets one (0.2 in (0,1)), then cnt[0] == 1 stops valid
        (3, (1, 1, 1)),
        (5, (3, 1, 1)),
        (9, (7, 1, 1)),  # 0.9 rounds down to 0, then is bumped to 1
        (10, (8, 1, 1)),
        (11, (9, 1, 1)),
        (12, (10, 1, 1)),
        (20, (16, 2, 2)),
    ],
)
def test_counts_hand_computed(tot: int, expected: tuple[int, int, int]) -> None:
    assert recbole_split_counts(tot, (0.8, 0.1, 0.1)) == expected


# -- protocols ------------------------------------------------------------------------------
def test_ratio_per_user_sizes_follow_recbole_counts() -> None:
    ds = _toy()
    s = split_ratio(ds, seed=7)
    sizes = ds.interactions["user_id"].value_counts()
    got = pd.DataFrame({k: p.interactions["user_id"].value_counts() for k, p in s.parts().items()})
    got = got.reindex(sizes.index).fillna(0).astype(int)
    for user, tot in sizes.items():
        assert tuple(got.loc[user]) == recbole_split_counts(int(tot), (0.8, 0.1, 0.1)), user
    assert tuple(got.loc["t2"]) == (1, 0, 1) and tuple(got.loc["t1"]) == (1, 0, 0)


def test_ratio_global_and_randomness() -> None:
    ds = _toy()
    s = split_ratio(ds, ratios=(0.7, 0.2, 0.1), group_by_user=False)
    assert tuple(s.counts().values()) == recbole_split_counts(ds.n_interactions, (0.7, 0.2, 0.1))
    # A random draw, not the head and tail of the file.
    assert not _canon(s.train.interactions).equals(
        _canon(ds.interactions.iloc[: len(s.train.interactions)])
    )


@pytest.mark.parametrize("protocol", ["ratio", "cold-item", "cold-user"])
def test_seeded_protocols_are_deterministic(protocol: str) -> None:
    ds = _toy()
    a, b, c = (make_split(ds, protocol, seed=s) for s in (11, 11, 12))  # type: ignore[arg-type]
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(a, part).interactions, getattr(b, part).interactions)
    assert not a.test.interactions.equals(c.test.interactions)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_parts_partition_the_input(protocol: str) -> None:
    ds = _toy()
    s = make_split(ds, protocol)  # type: ignore[arg-type]
    assert all(len(p.interactions) for p in s.parts().values())
    joined = pd.concat([p.interactions for p in s.parts().values()], ignore_index=True)
    pd.testing.assert_frame_equal(_canon(joined), _canon(ds.interactions))
    # Every part shares the catalog and user tables of the input.
    for p in s.parts().values():
        assert p.items is ds.items and p.users is ds.users


def test_loo_last_is_test_and_small_users() -> None:
    s = split_loo(_toy())
    test, valid = s.test.interactions, s.valid.interactions
    # t3 has timestamps 3, 2, 1 in file order: i4 is last in time, i5 second last.
    assert test.loc[test.user_id == "t3", "item_id"].tolist() == ["i4"]
    assert valid.loc[valid.user_id == "t3", "item_id"].tolist() == ["i5"]
    # RecBole leaves at most tot - 1 out: 2 records -> train + test, 1 record -> train.
    assert test.loc[test.user_id == "t2", "item_id"].tolist() == ["i3"]
    assert "t2" not in set(valid.user_id) and "t1" not in _users(s.test) | _users(s.valid)
    assert "t1" in _users(s.train)
    assert test.user_id.is_unique and valid.user_id.is_unique


def test_loo_ties_break_in_file_order() -> None:
    # Explicit: a, b, c, d share a timestamp only with each other.
    small = Dataset.build(
        pd.DataFrame({"user_id": "u", "item_id": list("dcba"), "timestamp": [10, 10, 10, 5]})
    )
    s = split_loo(small)
    assert s.test.interactions.item_id.tolist() == ["b"]
    assert s.valid.interactions.item_id.tolist() == ["c"]
    # Many users with many ties, interleaved: an unstable sort scrambles some of them.
    rng = np.random.default_rng(1)
    n = 3000
    inter = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 60, n)],
            "item_id": [f"i{x}" for x in rng.permutation(n)],
            "timestamp": rng.integers(0, 3, n).astype(float),
        }
    )
    s = split_loo(Dataset.build(inter))
    test = s.test.interactions.set_index("user_id").item_id
    valid = s.valid.interactions.set_index("user_id").item_id
    assert test.index.is_unique and valid.index.is_unique and len(test) == 60
    for user, rows in inter.groupby("user_id", sort=False):
        chrono = sorted(zip(rows.timestamp, rows.item_id, strict=True), key=lambda r: r[0])
        assert test[user] == chrono[-1][1]
        assert valid[user] == chrono[-2][1]


def test_time_protocols_need_timestamp() -> None:
    ds = Dataset.build(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
    for fn in (split_loo, split_temporal):
        with pytest.raises(InputError, match="timestamp"):
            fn(ds)


def test_temporal_cuts_by_time_with_file_order_ties() -> None:
    ds = _toy()
    s = split_temporal(ds)
    tr, va, te = (p.interactions.timestamp for p in (s.train, s.valid, s.test))
    assert tr.max() <= va.min() and va.max() <= te.min()
    assert tuple(s.counts().values()) == recbole_split_counts(ds.n_interactions, (0.8, 0.1, 0.1))
    flat = Dataset.build(
        pd.DataFrame({"user_id": "u", "item_id": [f"i{k}" for k in range(10)], "timestamp": 1.0})
    )
    f = split_temporal(flat)
    assert f.test.interactions.item_id.tolist() == ["i9"]
    assert f.valid.interactions.item_id.tolist() == ["i8"]


@pytest.mark.parametrize(
    ("fn", "col"), [(split_cold_item, "item_id"), (split_cold_user, "user_id")]
)
def test_cold_splits_hold_out_whole_ids(fn: object, col: str) -> None:
    ds = _toy()
    s: Split = fn(ds, test_share=0.2, valid_share=0.1, seed=3)  # type: ignore[operator]
    ids = [set(p.interactions[col]) for p in (s.train, s.valid, s.test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    m = ds.interactions[col].nunique()  # only IDs with interactions are drawn
    assert tuple(len(x) for x in ids) == recbole_split_counts(m, (0.7, 0.1, 0.2))
    assert s.params == {"test_share": 0.2, "valid_share": 0.1} and s.seed == 3


def test_cold_draws_only_ids_with_interactions() -> None:
    inter = pd.DataFrame(
        {"user_id": [f"u{k % 7}" for k in range(40)], "item_id": [f"i{k % 20}" for k in range(40)]}
    )
    items = pd.DataFrame(index=pd.Index([f"i{k}" for k in range(1000)], name="item_id"))
    s = split_cold_item(Dataset.build(inter, items), test_share=0.2, valid_share=0.1, seed=1)
    assert [len(_items(p)) for p in s.parts().values()] == [14, 2, 4]
    assert len(s.test.items) == 1000


def test_cold_item_keeps_users_without_train() -> None:
    ds = Dataset.build(
        pd.DataFrame(
            {"user_id": ["a", "a", "b"] + ["c"] * 20, "item_id": [f"i{k}" for k in range(23)]}
        )
    )
    s = split_cold_item(ds, test_share=0.5, valid_share=0.0, seed=0)
    assert s.counts()["test"] > 0
    assert list(s.test.user_ids) == list(ds.user_ids)  # no user is dropped from the universe


def test_bad_options_raise_config_error() -> None:
    ds = _toy()
    with pytest.raises(ConfigError, match=r"ratio, loo, temporal, cold-item, cold-user"):
        make_split(ds, "random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ratios"):
        make_split(ds, "loo", ratios=(0.5, 0.5, 0))
    with pytest.raises(ConfigError):
        split_ratio(ds, ratios=(0.8, 0.2))
    with pytest.raises(ConfigError):
        split_cold_user(ds, test_share=0.6, valid_share=0.5)


def test_make_split_dispatch_and_fitted() -> None:
    ds = _toy()
    s = make_split(ds, "ratio", seed=5, ratios=(0.6, 0.2, 0.2))
    direct = split_ratio(ds, ratios=(0.6, 0.2, 0.2), seed=5)
    pd.testing.assert_frame_equal(s.test.interactions, direct.test.interactions)
    assert s.protocol == "ratio" and s.seed == 5 and s.params["ratios"] == [0.6, 0.2, 0.2]
    assert make_split(ds, "loo", seed=5).seed is None
    fit = s.fitted()
    joined = pd.concat([s.train.interactions, s.valid.interactions], ignore_index=True)
    pd.testing.assert_frame_equal(fit.interactions, joined)
    assert fit.items is ds.items


# -- export / import ------------------------------------------------------------------------
def _recbole_read(path: Path) -> pd.DataFrame:
    """RecBole 1.2.1 Dataset._load_feat's parsing of an atomic file."""
    head = path.read_text(encoding="utf-8").split("\n", 1)[0]
    columns, usecols, dtype = [], [], {}
    for field_type in head.split("\t"):
        field, ftype = field_type.split(":")
        assert ftype in {"token", "token_seq", "float", "float_seq"}
        columns.append(field)
        usecols.append(field_type)
        dtype[field_type] = np.float64 if ftype == "float" else str
    df = pd.read_csv(path, delimiter="\t", usecols=usecols, dtype=dtype, engine="python")
    df.columns = columns
    return df


def _assert_same_split(a: Split, b: Split) -> None:
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(a, part).interactions, getattr(b, part).interactions)
        # Catalog values and order must match. Atomic files write a missing token as an
        # empty value.
        for table in ("items", "users"):
            pd.testing.assert_frame_equal(
                getattr(getattr(a, part), table).astype(object).fillna(""),
                getattr(getattr(b, part), table).astype(object).fillna(""),
            )
    assert (a.protocol, a.seed, a.params) == (b.protocol, b.seed, b.params)


def test_save_load_round_trip(tmp_path: Path) -> None:
    s = split_ratio(_toy(), seed=9)
    d = save_split(s, tmp_path / "toy")
    names = sorted(p.name for p in d.iterdir())
    assert names == [
        "split.json",
        "toy.item",
        "toy.test.inter",
        "toy.train.inter",
        "toy.user",
        "toy.valid.inter",
    ]
    head = (d / "toy.train.inter").read_text().split("\n", 1)[0]
    assert head == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    meta = json.loads((d / "split.json").read_text())
    assert meta["protocol"] == "ratio" and meta["seed"] == 9
    assert meta["lmrec_version"] == lmrec.__version__
    assert meta["counts"] == {**s.counts(), "users": 43, "items": 65}
    back = load_split(d)
    _assert_same_split(s, back)
    assert back.train.name == "toy" and back.train.item_fields == s.train.item_fields
    # RecBole's reader, file by file, sees the same rows.
    for part in ("train", "valid", "test"):
        rb = _recbole_read(d / f"toy.{part}.inter")
        pd.testing.assert_frame_equal(rb, getattr(s, part).interactions, check_dtype=False)


def test_round_trip_id_only_catalog_and_kg(tmp_path: Path) -> None:
    inter = pd.DataFrame({"user_id": ["b", "a", "a", "b"], "item_id": ["x", "y", "x", "z"]})
    kg = pd.DataFrame({"head_id": ["e1"], "relation_id": ["r"], "tail_id": ["e2"]})
    links = pd.DataFrame({"item_id": ["x"], "entity_id": ["e1"]})
    items = pd.DataFrame(index=pd.Index(["z", "unused", "y", "x"], name="item_id"))
    ds = Dataset.build(inter, items, kg=kg, links=links, name="mini")
    s = split_loo(ds.with_interactions(ds.interactions.assign(timestamp=[1, 2, 3, 4])))
    d = save_split(s, tmp_path / "out", name="mini")
    assert not (d / "mini.item").exists() and (d / "mini.kg").exists()
    back = load_split(d)
    _assert_same_split(s, back)
    assert list(back.test.item_ids) == ["z", "unused", "y", "x"]
    pd.testing.assert_frame_equal(back.train.kg, kg, check_dtype=False)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(back.train.links, links, check_dtype=False)  # type: ignore[arg-type]


def test_load_split_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"split\.json"):
        load_split(tmp_path)


# -- real data ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"ML-100K atomic files not present in {ML100K} (run lmrec data fetch)")
    return read_atomic(ML100K)


def test_ml100k_ratio(ml100k: Dataset) -> None:
    s = split_ratio(ml100k)
    assert [len(_users(p)) for p in s.parts().values()] == [943, 943, 943]
    # Sizes depend only on the users' record counts (RecBole logs the same for ml-100k).
    assert s.counts() == {"train": 80808, "valid": 9596, "test": 9596}


def test_ml100k_loo_and_export(ml100k: Dataset, tmp_path: Path) -> None:
    s = split_loo(ml100k)
    assert s.counts() == {"train": 98114, "valid": 943, "test": 943}
    d = save_split(s, tmp_path / "ml-100k")
    lines = sorted(
        line
        for part in ("train", "valid", "test")
        for line in (d / f"ml-100k.{part}.inter").read_text().splitlines()[1:]
    )
    original = (ML100K / "ml-100k.inter").read_text().splitlines()[1:]
    assert lines == sorted(original)  # the files hold exactly RecBole's own rows
    for suffix in ("item", "user", "kg", "link"):
        assert sorted((d / f"ml-100k.{suffix}").read_text().splitlines()) == sorted(
            (ML100K / f"ml-100k.{suffix}").read_text().splitlines()
        )
