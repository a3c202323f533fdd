"""The interface tests every `VectorIndex` kind must pass (exact, HNSW, IVF)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lmrec.errors import ConfigError, InputError, UnknownIdError
from lmrec.index import AnnIndex, ExactIndex, VectorIndex

# exact_below=0: ``allow`` sets above 10% of the index go through faiss's ID selector.
Make = Callable[[int], VectorIndex]
Filled = tuple[VectorIndex, list[str], np.ndarray]
KINDS: dict[str, Make] = {
    "exact": lambda d: ExactIndex(d),
    "hnsw": lambda d: AnnIndex(d, "hnsw", m=16, exact_below=0),
    "ivf": lambda d: AnnIndex(d, "ivf", exact_below=0),
}


@pytest.fixture(params=list(KINDS))
def make(request: pytest.FixtureRequest) -> Make:
    return KINDS[request.param]


@pytest.fixture
def filled(make: Make, clustered: Callable[..., tuple[list[str], np.ndarray]]) -> Filled:
    ids, x = clustered()
    index = make(x.shape[1])
    index.upsert(ids, x)
    return index, ids, x


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def check_results(index: VectorIndex, q: np.ndarray, res: list[list[str]], sc: np.ndarray) -> None:
    """Scores are the cosines of the returned IDs, best first, padded with -inf."""
    for i, row in enumerate(res):
        assert len(set(row)) == len(row)
        if row:
            cos = index.get(row) @ unit(q[i])
            np.testing.assert_allclose(sc[i, : len(row)], cos, atol=1e-5)
            assert np.all(np.diff(sc[i, : len(row)]) <= 1e-6)
        assert np.all(np.isneginf(sc[i, len(row) :]))


def test_basic_search_and_contents(filled: Filled) -> None:
    index, ids, x = filled
    assert len(index) == len(ids) and ids[5] in index and "nope" not in index
    assert index.ids == ids
    np.testing.assert_allclose(index.get(ids[:3]), unit(x[:3]), rtol=1e-6)
    res, sc = index.search(x[:20], 10)
    assert sc.shape == (20, 10) and sc.dtype == np.float32
    assert all(len(r) == 10 for r in res)
    assert [r[0] for r in res] == ids[:20]  # each vector is its own nearest neighbour
    check_results(index, x[:20], res, sc)
    one, _ = index.search(x[3], 4)  # a single 1-D query
    assert one[0][0] == ids[3]


def test_exclude_keeps_k_results(filled: Filled) -> None:
    index, ids, x = filled
    exact = ExactIndex(x.shape[1])
    exact.upsert(ids, x)
    truth, _ = exact.search(x[:10], 60)
    excl = [set(t[:50]) | {"unknown-id"} for t in truth]  # the 50 nearest of each query
    res, sc = index.search(x[:10], 10, exclude=excl)
    assert all(len(r) == 10 for r in res)
    assert all(not set(r) & e for r, e in zip(res, excl, strict=True))
    check_results(index, x[:10], res, sc)


def test_exclude_all_but_a_few(filled: Filled) -> None:
    index, ids, x = filled
    keep = [ids[100], ids[7], ids[450]]
    excl = [set(ids) - set(keep), set(ids) - {ids[1]}]
    res, sc = index.search(x[:2], 10, exclude=excl)
    assert sorted(res[0]) == sorted(keep) and res[1] == [ids[1]]
    assert np.isneginf(sc[0, 3:]).all() and np.isneginf(sc[1, 1:]).all()
    check_results(index, x[:2], res, sc)


@pytest.mark.parametrize("share", [0.01, 0.5])  # small: exact path; large: faiss selector
def test_allow_restricts_candidates(filled: Filled, share: float) -> None:
    index, ids, x = filled
    allow = set(ids[:: int(1 / share)]) | {"not-in-index"}
    exact = ExactIndex(x.shape[1])
    exact.upsert(ids, x)
    res, sc = index.search(x[:15], 5, allow=allow, exclude=[{ids[0]}] * 15)
    truth, _ = exact.search(x[:15], 5, allow=allow, exclude=[{ids[0]}] * 15)
    assert all(len(r) == 5 and set(r) <= allow and ids[0] not in r for r in res)
    overlap = np.mean([len(set(r) & set(t)) / 5 for r, t in zip(res, truth, strict=True)])
    assert overlap >= 0.9
    check_results(index, x[:15], res, sc)


def test_allow_smaller_than_k(filled: Filled) -> None:
    index, ids, x = filled
    res, sc = index.search(x[:3], 10, allow=[ids[4], ids[9]])
    assert all(sorted(r) == sorted([ids[4], ids[9]]) for r in res)
    res, sc = index.search(x[:3], 10, allow=["unknown"])
    assert res == [[], [], []] and np.isneginf(sc).all()


def test_upsert_replaces_in_place(filled: Filled) -> None:
    index, ids, x = filled
    old = x[10].copy()
    index.search(x[:2], 3)  # ANN: builds faiss first, so the replace leaves a tombstone
    index.upsert([ids[10], "new-1"], np.stack([x[400], x[401]]))
    assert len(index) == len(ids) + 1
    assert index.ids == [*ids, "new-1"]  # the replaced ID keeps its place
    np.testing.assert_allclose(index.get([ids[10]])[0], unit(x[400]), rtol=1e-6)
    res, sc = index.search(np.stack([old, x[400]]), 5)
    assert sc[0, 0] < 0.999  # nothing identical to the old vector is left
    assert set(res[1][:2]) == {ids[10], ids[400]}  # both now hold x[400]
    check_results(index, np.stack([old, x[400]]), res, sc)


def test_delete_removes_and_tombstones_never_return(filled: Filled) -> None:
    index, ids, x = filled
    index.search(x[:2], 3)  # ANN: deletes below become tombstones in a built faiss index
    gone = ids[:60]  # 10%: below the compaction and rebuild shares
    index.delete(gone)
    assert len(index) == len(ids) - 60 and ids[0] not in index
    with pytest.raises(UnknownIdError, match="item-3"):
        index.get([ids[0]])
    res, sc = index.search(x[:60], 10)  # queries are the deleted vectors themselves
    assert all(len(r) == 10 and not set(r) & set(gone) for r in res)
    check_results(index, x[:60], res, sc)
    with pytest.raises(UnknownIdError, match="missing"):
        index.delete([ids[100], "missing"])
    assert ids[100] in index  # nothing deleted by a failing call
    index.delete(ids[60:300])  # past both shares: compaction and rebuild
    assert index.ids == ids[300:]
    res, _ = index.search(x[:300], 10)
    assert all(len(r) == 10 and not set(r) & set(ids[:300]) for r in res)


def test_fewer_items_than_k(make: Make) -> None:
    index = make(4)
    res, sc = index.search(np.ones((2, 4)), 3)
    assert res == [[], []] and sc.shape == (2, 3) and np.isneginf(sc).all()
    index.upsert(["a", "b"], np.eye(4)[:2])
    res, sc = index.search(np.array([[1.0, 0.1, 0, 0]]), 5)
    assert res == [["a", "b"]]
    np.testing.assert_allclose(sc[0, :2], unit(np.array([1.0, 0.1]))[[0, 1]], rtol=1e-6)


def test_search_ids(filled: Filled) -> None:
    index, ids, _ = filled
    res, _ = index.search_ids(ids[:5], 3)
    assert all(q not in r and len(r) == 3 for q, r in zip(ids[:5], res, strict=True))
    res, _ = index.search_ids(ids[:5], 3, exclude_self=False, exclude=[[ids[9]]] * 5)
    assert [r[0] for r in res] == ids[:5] and all(ids[9] not in r for r in res)
    with pytest.raises(UnknownIdError, match="ghost"):
        index.search_ids(["ghost"], 3)
    with pytest.raises(InputError, match="not a string"):
        index.search_ids(ids[:1], 3, exclude=[ids[2]])


def test_save_load_round_trip(filled: Filled, tmp_path: Path) -> None:
    index, ids, x = filled
    index.upsert([ids[3], "extra"], x[:2] + 1.0)
    index.delete(ids[200:400])  # compaction and, for ANN, label remapping
    q = x[::7]
    before = index.search(q, 10, exclude=[{ids[1]}] * len(q))
    index.save(tmp_path / "idx")
    for loaded in (VectorIndex.load(tmp_path / "idx"), type(index).load(tmp_path / "idx")):
        assert type(loaded) is type(index) and loaded.ids == index.ids
        after = loaded.search(q, 10, exclude=[{ids[1]}] * len(q))
        assert after[0] == before[0]
        np.testing.assert_array_equal(after[1], before[1])
    other = AnnIndex if isinstance(index, ExactIndex) else ExactIndex
    with pytest.raises(ConfigError, match="holds"):
        other.load(tmp_path / "idx")
    with pytest.raises(InputError, match="not an lmrec vector index"):
        VectorIndex.load(tmp_path)


def test_save_load_empty(make: Make, tmp_path: Path) -> None:
    index = make(3)
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert len(loaded) == 0 and loaded.dim == 3
    loaded.upsert(["a"], np.ones((1, 3)))
    assert loaded.search(np.ones(3), 2)[0] == [["a"]]


@pytest.mark.parametrize(
    ("ids", "vectors", "match"),
    [
        (["a", "b"], np.ones((2, 5)), r"shape \(n, 4\)"),
        (["a", "b"], np.ones((3, 4)), "2 ids but 3 vectors"),
        (["a", "b", "a"], np.ones((3, 4)), "duplicate ids.*'a'"),
        (["a", "b"], np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]]), "'b' contains NaN"),
        (["a", "b"], np.array([[1, 0, 0, 0], [0, 0, 0, 0]]), "'b' is all zeros"),
        (["a"], np.array([["x", "y", "z", "w"]]), "real numeric"),
        ("ab", np.ones((2, 4)), "single string"),
        (["a"], np.ones(4), r"shape \(n, 4\)"),
    ],
)
def test_bad_upserts(make: Make, ids: list[str], vectors: np.ndarray, match: str) -> None:
    index = make(4)
    index.upsert(["z"], np.ones((1, 4)))
    with pytest.raises(InputError, match=match):
        index.upsert(ids, vectors)
    assert index.ids == ["z"]  # a failed upsert changes nothing


def test_bad_searches(filled: Filled) -> None:
    index, ids, x = filled
    with pytest.raises(InputError, match=r"shape \(n, 16\)"):
        index.search(np.ones((2, 15)), 3)
    with pytest.raises(InputError, match="query 1 contains NaN"):
        index.search(np.stack([x[0], np.full(16, np.nan)]), 3)
    with pytest.raises(InputError, match="query 0 is all zeros"):
        index.search(np.zeros(16), 3)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="k must be an integer >= 1"):
            index.search(x[:1], k)
    with pytest.raises(InputError, match="one collection of IDs per query"):
        index.search(x[:2], 3, exclude=[{ids[0]}])
    with pytest.raises(InputError, match=r"exclude\[0\] is a single string"):
        index.search(x[:1], 3, exclude=[ids[0]])
    with pytest.raises(InputError, match="allow must be a collection"):
        index.search(x[:1], 3, allow=ids[0])


def test_dim_must_be_positive(make: Make) -> None:
    with pytest.raises(ConfigError, match="dim must be a positive integer"):
        make(0)
