"""Per-user chronological sequences, and lmrec's leave-one-out against RecBole's on ML-100K."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmrec.data.schema import Dataset, IdMap
from lmrec.data.splits import Split, split_loo
from lmrec.models.sequences import chronological, last_items, training_windows, user_sequences

FIXTURE = Path(__file__).parent / "fixtures" / "recbole_ml100k_loo.json"


def _ds(rows: list[tuple[str, str, float]]) -> Dataset:
    return Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def _items(ds: Dataset, seqs: np.ndarray, pad: int) -> list[list[str]]:
    items = ds.item_map()
    return [list(items.to_ids(row[row != pad])) for row in seqs]


def test_time_order_with_ties_in_file_order() -> None:
    ds = _ds(
        [
            ("u1", "c", 3.0),
            ("u2", "x", 1.0),
            ("u1", "b", 2.0),
            ("u1", "z", 2.0),  # ties with b: after it, as in the file
            ("u1", "a", 1.0),
            ("u2", "y", 1.0),
            ("u1", "a", 5.0),  # repeats stay
        ]
    )
    indptr, seq = chronological(ds, ds.user_map(), ds.item_map())
    items = ds.item_map()
    assert list(indptr) == [0, 5, 7]
    assert list(items.to_ids(seq[:5])) == ["a", "b", "z", "c", "a"]
    assert list(items.to_ids(seq[5:])) == ["x", "y"]


def test_file_order_without_timestamps() -> None:
    ds = Dataset.build(pd.DataFrame({"user_id": ["u", "v", "u"], "item_id": ["b", "c", "a"]}))
    seqs = user_sequences(ds, ds.user_map(), ds.item_map(), max_len=3)
    assert _items(ds, seqs, pad=3) == [["b", "a"], ["c"]]


def test_left_padding_and_pad_value() -> None:
    ds = _ds([("u1", "a", 1.0), ("u1", "b", 2.0), ("u2", "c", 1.0)])
    users, items = ds.user_map(), ds.item_map()
    seqs = user_sequences(ds, users, items, max_len=4)
    assert seqs.dtype == np.int64 and seqs.shape == (2, 4)
    np.testing.assert_array_equal(seqs, [[3, 3, 0, 1], [3, 3, 3, 2]])  # pad = n_items
    np.testing.assert_array_equal(user_sequences(ds, users, items, 4, pad=-1)[1], [-1, -1, -1, 2])


def test_truncation_keeps_most_recent() -> None:
    rows = [("u", f"i{t}", float(t)) for t in range(7)][::-1]  # file in reverse time order
    ds = _ds(rows)
    seqs = user_sequences(ds, ds.user_map(), ds.item_map(), max_len=3)
    assert _items(ds, seqs, pad=7) == [["i4", "i5", "i6"]]


def test_users_and_items_outside_the_maps() -> None:
    ds = _ds([("u", "a", 1.0), ("u", "zz", 2.0), ("ghost", "a", 1.0), ("u", "b", 3.0)])
    users, items = IdMap(["u", "nobody"]), IdMap(["b", "a"])
    np.testing.assert_array_equal(user_sequences(ds, users, items, 3), [[2, 1, 0], [2, 2, 2]])


def test_training_windows_train_each_pair_once() -> None:
    indptr = np.array([0, 9, 10, 12])  # lengths 9, 1 (no pair), 2
    seq = np.arange(100, 112)
    for stride in (None, 2, 4):
        inputs, targets = training_windows(indptr, seq, max_len=4, pad=-1, stride=stride)
        assert inputs.shape == targets.shape and inputs.shape[1] == 4
        trained = targets != -1
        pairs = sorted(zip(inputs[trained].tolist(), targets[trained].tolist(), strict=True))
        expected = [(a, a + 1) for a in [*range(100, 108), 110]]
        assert pairs == expected, stride
        # inputs are consecutive runs, left-padded
        for row in inputs:
            real = row[row != -1]
            assert (row[: 4 - len(real)] == -1).all() and (np.diff(real) == 1).all()
    inputs, targets = training_windows(indptr, seq, max_len=4, pad=-1, stride=2)
    # with stride 2 each trained pair has at least 4 - 2 = 2 earlier items in view
    first = inputs[targets[:, -1] == 108][0]
    np.testing.assert_array_equal(first, [104, 105, 106, 107])
    np.testing.assert_array_equal(targets[targets[:, -1] == 108][0], [-1, -1, 107, 108])


def test_last_items_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 12, size=50)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    seq = rng.integers(0, 30, size=indptr[-1])
    got = last_items(indptr, seq, max_len=5, pad=30)
    for u in range(50):
        tail = seq[indptr[u] : indptr[u + 1]][-5:]
        np.testing.assert_array_equal(got[u], np.r_[np.full(5 - len(tail), 30), tail])


# -- lmrec's leave-one-out picks what RecBole 1.2.1 picks --------------------------------
def _ml100k() -> Dataset:
    from lmrec.data.atomic import read_atomic
    from lmrec.data.fetch import default_cache_dir

    for folder in (
        Path("/tmp/rb/recbole/dataset_example/ml-100k"),
        default_cache_dir() / "ml-100k",
    ):
        if (folder / "ml-100k.inter").is_file():
            return read_atomic(folder, name="ml-100k")
    pytest.skip("ML-100K atomic files not found")


def _loo_text(split: Split) -> tuple[str, dict[str, tuple[str, str]]]:
    test, valid = (
        dict(zip(p.interactions["user_id"], p.interactions["item_id"], strict=True))
        for p in (split.test, split.valid)
    )
    picks = {u: (test[u], valid.get(u, "")) for u in sorted(test, key=int)}
    text = "user_id,test_item,valid_item\n" + "".join(
        f"{u},{t},{v}\n" for u, (t, v) in picks.items()
    )
    return text, picks


def test_split_loo_matches_recbole_on_ml100k() -> None:
    ds = _ml100k()
    fixture = json.loads(FIXTURE.read_text())
    # RecBole's timestamps: min-max normalised, then float32 (see the fixture's note)
    inter = ds.interactions.copy()
    ts = inter["timestamp"].to_numpy()
    norm = ((ts - ts.min()) / (ts.max() - ts.min())).astype(np.float32).astype(np.float64)
    text, as_recbole = _loo_text(split_loo(ds.with_interactions(inter.assign(timestamp=norm))))
    assert len(as_recbole) == fixture["n_users"]
    assert hashlib.sha256(text.encode()).hexdigest() == fixture["sha256"]
    # with exact timestamps lmrec breaks those float32 ties by time, not file order
    _, exact = _loo_text(split_loo(ds))
    differ = sorted((u for u in exact if exact[u] != as_recbole[u]), key=int)
    assert differ == fixture["users_differing_with_raw_timestamps"]
