"""`AnnIndex`: recall against exact search, tombstones, rebuilds and fallbacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lmrec.errors import ConfigError
from lmrec.index import AnnIndex, ExactIndex

Clustered = Callable[..., tuple[list[str], np.ndarray]]
Big = tuple[list[str], np.ndarray, np.ndarray, list[list[str]]]


@pytest.fixture(scope="module")
def big(clustered: Clustered) -> Big:
    """20k x 64 clustered vectors, 300 queries drawn the same way, and exact top-10."""
    ids, x = clustered(n=20_300, dim=64, n_centers=200, seed=7)
    ids, x, q = ids[:20_000], x[:20_000], x[20_000:]
    exact = ExactIndex(64)
    exact.upsert(ids, x)
    truth, _ = exact.search(q, 10)
    return ids, x, q, truth


def recall(res: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(r) & set(t)) / len(t) for r, t in zip(res, truth, strict=True)]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_at_10_with_defaults(big: Big, kind: str) -> None:
    ids, x, q, truth = big
    index = AnnIndex(64, kind)
    index.upsert(ids, x)
    res, _ = index.search(q, 10)
    assert recall(res, truth) >= 0.9
    # seen-item style exclusions: results stay full and match exact search with them
    excl = [set(t[:5]) for t in truth]
    exact = ExactIndex(64)
    exact.upsert(ids, x)
    want, _ = exact.search(q, 10, exclude=excl)
    res, _ = index.search(q, 10, exclude=excl)
    assert all(len(r) == 10 and not set(r) & e for r, e in zip(res, excl, strict=True))
    assert recall(res, want) >= 0.9


def test_rebuild_after_many_deletes(clustered: Clustered) -> None:
    ids, x = clustered(n=1000)
    index = AnnIndex(16, "hnsw", rebuild_share=0.25)
    index.upsert(ids, x)
    index.search(x[:1], 1)
    index.delete(ids[:200])  # 20%: tombstones stay
    calls: list[int] = []
    search = index._faiss_search

    def spy(x: np.ndarray, fetch: int, sel: object) -> tuple[np.ndarray, np.ndarray]:
        calls.append(fetch)
        return search(x, fetch, sel)

    index._faiss_search = spy
    res, _ = index.search(x[:200], 10)  # the deleted vectors themselves
    assert all(len(r) == 10 and not set(r) & set(ids[:200]) for r in res)
    assert calls == [10]  # tombstones are skipped inside faiss: no over-fetch, no retry
    assert (index._n_dead, index._faiss.ntotal) == (200, 1000)
    index.upsert(ids[200:300], x[200:300] * -1)  # replaced: 100 more dead labels
    res, _ = index.search(x[200:300], 10)
    assert index._faiss.ntotal == len(index) and index._n_dead == 0  # rebuilt
    assert all(not set(r) & set(ids[:200]) for r in res)
    index.rebuild()
    assert index._faiss.ntotal == 800


def test_compaction_remaps_labels_without_rebuild(clustered: Clustered) -> None:
    ids, x = clustered(n=800)
    index = AnnIndex(16, "hnsw", rebuild_share=1.0)
    index.upsert(ids, x)
    index.search(x[:1], 1)
    index.delete(ids[::3])  # > compaction share; no rebuild allowed
    assert index._n_slots == len(index)  # compacted
    res, sc = index.search(x[1::3], 5)
    assert index._n_dead == len(ids[::3])  # still the old faiss index
    assert [r[0] for r in res] == ids[1::3]
    got = np.einsum("ij,ij->i", index.get([r[0] for r in res]), x[1::3])
    np.testing.assert_allclose(sc[:, 0], got / np.linalg.norm(x[1::3], axis=1), atol=1e-5)


def test_ivf_exhausted_lists_fall_back_to_exact(clustered: Clustered) -> None:
    ids, x = clustered(n=2000, n_centers=20)
    index = AnnIndex(16, "ivf", nlist=32, nprobe=1)
    index.upsert(ids, x)
    res, _ = index.search(x[:3], 1000)  # far more than one list holds
    assert all(len(r) == 1000 for r in res)
    exact = ExactIndex(16)
    exact.upsert(ids, x)
    assert res == exact.search(x[:3], 1000)[0]  # answered by exact search


def test_ivf_nlist_grows_with_the_index(clustered: Clustered) -> None:
    ids, x = clustered(n=20_000, n_centers=50)
    index = AnnIndex(16, "ivf")
    index.upsert(ids[:400], x[:400])
    index.search(x[:1], 1)
    small = index._faiss.nlist
    index.upsert(ids[400:], x[400:])
    res, _ = index.search(x[:5], 1)
    assert small == 10 and index._faiss.nlist == 512
    assert [r[0] for r in res] == ids[:5]


def test_set_search_params_and_bad_config() -> None:
    index = AnnIndex(8, "hnsw")
    index.set_search_params(ef_search=200)
    assert index.params["ef_search"] == 200
    with pytest.raises(ConfigError, match="not a search parameter"):
        index.set_search_params(nprobe=3)
    with pytest.raises(ConfigError, match="kind must be"):
        AnnIndex(8, "lsh")
    with pytest.raises(ConfigError, match=r"unknown hnsw parameter\(s\) \['nprobe'\]"):
        AnnIndex(8, "hnsw", nprobe=4)
    with pytest.raises(ConfigError, match="m must be an integer >= 1"):
        AnnIndex(8, "hnsw", m=0)
    with pytest.raises(ConfigError, match="rebuild_share"):
        AnnIndex(8, "ivf", rebuild_share=0)


def test_hnsw_rebuilds_after_growth_ivf_adds(clustered: Clustered) -> None:
    ids, x = clustered(n=1200)
    for kind, built_after in (("hnsw", 1200), ("ivf", 1000)):
        index = AnnIndex(16, kind)
        index.upsert(ids[:1000], x[:1000])
        index.search(x[:1], 1)
        index.upsert(ids[1000:1050], x[1000:1050])  # 5% more: added to the built index
        index.search(x[:1], 1)
        assert (index._n_built, index._faiss.ntotal) == (1000, 1050)
        index.upsert(ids[1050:], x[1050:])  # 17% more: HNSW is rebuilt, IVF adds
        res, _ = index.search(x[1000:], 1)
        assert (index._n_built, index._faiss.ntotal) == (built_after, 1200)
        assert [r[0] for r in res] == ids[1000:]
