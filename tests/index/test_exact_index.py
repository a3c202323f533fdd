"""`ExactIndex` against a brute-force numpy sort."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lmrec.errors import ConfigError
from lmrec.index import ExactIndex

Clustered = Callable[..., tuple[list[str], np.ndarray]]


def brute_force(
    ids: list[str], x: np.ndarray, q: np.ndarray, k: int, skip: list[set[str]] | None = None
) -> tuple[list[list[str]], list[np.ndarray]]:
    """Full stable argsort of the cosine matrix: ties by insertion order."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = (qn.astype(np.float64) @ xn.T.astype(np.float64)).astype(np.float32)
    out, vals = [], []
    for i, row in enumerate(scores):
        order = [j for j in np.argsort(-row, kind="stable") if not skip or ids[j] not in skip[i]]
        out.append([ids[j] for j in order[:k]])
        vals.append(row[order[:k]])
    return out, vals


# A tiny block bound forces many query blocks and vector blocks (and their merges).
@pytest.mark.parametrize("max_cells", [32_000_000, 500, 37])
def test_matches_brute_force(clustered: Clustered, max_cells: int) -> None:
    ids, x = clustered(n=400, dim=8, seed=1)
    q = np.random.default_rng(2).normal(size=(25, 8))
    index = ExactIndex(8, max_cells=max_cells)
    index.upsert(ids, x)
    res, sc = index.search(q, 12)
    ref, ref_sc = brute_force(ids, x, q, 12)
    assert res == ref
    np.testing.assert_allclose(sc, np.stack(ref_sc), atol=1e-5)


@pytest.mark.parametrize("max_cells", [32_000_000, 50])
def test_exclusions_allow_and_deletes_match_brute_force(
    clustered: Clustered, max_cells: int
) -> None:
    ids, x = clustered(n=300, dim=8, seed=3)
    q = np.random.default_rng(4).normal(size=(10, 8))
    index = ExactIndex(8, max_cells=max_cells)
    index.upsert(ids, x)
    rng = np.random.default_rng(5)
    excl = [set(rng.choice(ids, 40, replace=False).tolist()) for _ in range(10)]
    allow = set(ids[::2])
    res, _ = index.search(q, 7, exclude=excl, allow=allow)
    ref, _ = brute_force(ids, x, q, 7, [e | (set(ids) - allow) for e in excl])
    assert res == ref
    index.delete(ids[::3])  # 1/3 > compaction share
    index.delete(ids[1:10:3])  # tombstones after compaction
    left = [i for i in ids if i in index]
    res, _ = index.search(q, 7, exclude=excl)
    ref, _ = brute_force(left, x[[ids.index(i) for i in left]], q, 7, excl)
    assert res == ref


@pytest.mark.parametrize("max_cells", [32_000_000, 3])
def test_ties_follow_insertion_order(max_cells: int) -> None:
    index = ExactIndex(3, max_cells=max_cells)
    e = np.eye(3)
    index.upsert(["b", "x", "a", "y", "c"], np.stack([e[0], e[1], e[0], e[2], e[0]]))
    index.upsert(["a", "d"], np.stack([e[0], e[0]]))  # replacing keeps a's place
    res, sc = index.search(np.array([[1.0, 0.0, 0.0]]), 4)
    assert res == [["b", "a", "c", "d"]]
    assert (sc == 1.0).all()
    index.delete(["b", "x"])  # compaction keeps the order of the rest
    assert index.search(np.array([[1.0, 0.0, 0.0]]), 5)[0] == [["a", "c", "d", "y"]]


def test_max_cells_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_cells"):
        ExactIndex(3, max_cells=0)
