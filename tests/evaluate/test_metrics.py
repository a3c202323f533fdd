"""Top-k accuracy metrics: hand-computed cases and a per-user reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.evaluate.metrics import (
    ACCURACY_METRICS,
    hits_matrix,
    per_user_metrics,
    rating_metrics,
    relevant_counts,
)

L2 = math.log2

# Four users, lists of length 5 (1 = the item at that rank is relevant).
HITS = np.array(
    [
        [0, 0, 1, 0, 0],  # A: n_rel 1
        [1, 0, 1, 0, 0],  # B: n_rel 2
        [0, 1, 0, 1, 1],  # C: n_rel 6 (more relevant items than K)
        [0, 0, 0, 0, 0],  # D: n_rel 3, no hit
    ],
    dtype=bool,
)
N_REL = np.array([1, 2, 6, 3])

# Per-user values at K=5, worked out by hand.
EXPECTED_AT_5 = {
    "hit": [1, 1, 1, 0],
    # first hit at rank 3, 1 and 2
    "mrr": [1 / 3, 1, 1 / 2, 0],
    # hits / 5
    "precision": [1 / 5, 2 / 5, 3 / 5, 0],
    # hits / n_rel
    "recall": [1 / 1, 2 / 2, 3 / 6, 0],
    # DCG over hit ranks / IDCG over min(n_rel, 5) ranks
    "ndcg": [
        (1 / L2(4)) / (1 / L2(2)),
        (1 / L2(2) + 1 / L2(4)) / (1 / L2(2) + 1 / L2(3)),
        (1 / L2(3) + 1 / L2(5) + 1 / L2(6)) / sum(1 / L2(i + 1) for i in range(1, 6)),
        0,
    ],
    # sum of precision@i at hit ranks i, / min(n_rel, 5)
    "map": [
        (1 / 3) / 1,  # P@3
        (1 / 1 + 2 / 3) / 2,  # P@1 + P@3
        (1 / 2 + 2 / 4 + 3 / 5) / 5,  # P@2 + P@4 + P@5, min(6, 5) = 5
        0,
    ],
}

# Same users at K=3 (ranks 4 and 5 dropped).
EXPECTED_AT_3 = {
    "hit": [1, 1, 1, 0],
    "mrr": [1 / 3, 1, 1 / 2, 0],
    "precision": [1 / 3, 2 / 3, 1 / 3, 0],
    "recall": [1, 1, 1 / 6, 0],
    "ndcg": [
        (1 / L2(4)) / 1,
        (1 + 1 / L2(4)) / (1 + 1 / L2(3)),
        (1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4)),  # IDCG over min(6, 3) = 3 ranks
        0,
    ],
    "map": [1 / 3, (1 + 2 / 3) / 2, (1 / 2) / 3, 0],
}


@pytest.mark.parametrize(("k", "expected"), [(5, EXPECTED_AT_5), (3, EXPECTED_AT_3)])
def test_hand_computed_values(k: int, expected: dict[str, list[float]]) -> None:
    res = per_user_metrics(HITS, N_REL, [3, 5])
    assert set(res) == {f"{m}@{kk}" for m in ACCURACY_METRICS for kk in (3, 5)}
    for name, vals in expected.items():
        np.testing.assert_allclose(res[f"{name}@{k}"], vals, rtol=1e-12, err_msg=name)


def test_mean_over_users_at_5() -> None:
    res = per_user_metrics(HITS, N_REL, [5])
    # recall@5 = (1 + 1 + 1/2 + 0) / 4 = 0.625; map@5 = (1/3 + 5/6 + 0.32 + 0) / 4
    assert res["recall@5"].mean() == pytest.approx(0.625)
    assert res["map@5"].mean() == pytest.approx((1 / 3 + 5 / 6 + 0.32) / 4)


def test_short_list_counts_missing_ranks_as_misses() -> None:
    # a 2-item list evaluated at K=5: precision still divides by 5, IDCG uses min(n_rel, 5)
    res = per_user_metrics(np.array([[True, True]]), np.array([4]), [5])
    assert res["precision@5"][0] == pytest.approx(2 / 5)
    assert res["recall@5"][0] == pytest.approx(2 / 4)
    idcg = sum(1 / L2(i + 1) for i in range(1, 5))
    assert res["ndcg@5"][0] == pytest.approx((1 + 1 / L2(3)) / idcg)
    assert res["map@5"][0] == pytest.approx((1 + 1) / 4)


def test_rejects_users_without_relevant_items() -> None:
    with pytest.raises(ValueError, match="n_rel"):
        per_user_metrics(HITS, np.array([1, 2, 0, 3]), [5])


def test_hits_matrix_hand_example() -> None:
    # user 0 likes items {1, 4}; user 1 likes {0}, and item 3 is stored as an explicit 0
    relevant = sp.csr_matrix(
        (np.array([1.0, 1.0, 1.0, 0.0]), (np.array([0, 0, 1, 1]), np.array([1, 4, 0, 3]))),
        shape=(2, 5),
    )
    topk = np.array([[4, 2, 1], [3, 0, -1]])
    expected = np.array([[True, False, True], [False, True, False]])
    np.testing.assert_array_equal(hits_matrix(topk, relevant), expected)
    np.testing.assert_array_equal(relevant_counts(relevant), [2, 1])
    mask = np.array([False, True, False, False, False])
    np.testing.assert_array_equal(relevant_counts(relevant, item_mask=mask), [1, 0])


def test_hits_matrix_rejects_out_of_range_items() -> None:
    with pytest.raises(ValueError, match="out of range"):
        hits_matrix(np.array([[5]]), sp.csr_matrix((1, 5)))


# ---- reference implementation: one user at a time, straight from the definitions ----------


def reference(topk: list[int], rel: set[int], k: int) -> dict[str, float]:
    hits = [1 if (i >= 0 and i in rel) else 0 for i in topk[:k]]
    hits += [0] * (k - len(hits))
    n = len(rel)
    ranks = [i + 1 for i, h in enumerate(hits) if h]
    dcg = sum(1 / math.log2(r + 1) for r in ranks)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, min(n, k) + 1))
    ap = sum(sum(hits[:r]) / r for r in ranks) / min(n, k)
    return {
        "recall": sum(hits) / n,
        "precision": sum(hits) / k,
        "ndcg": dcg / idcg,
        "mrr": 1 / ranks[0] if ranks else 0.0,
        "hit": 1.0 if ranks else 0.0,
        "map": ap,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, width, ks = 60, 30, 12, [1, 5, 10, 15]  # 15 > width: short lists
    dense = rng.random((n_users, n_items)) < 0.2
    dense[np.arange(n_users), rng.integers(n_items, size=n_users)] = True  # n_rel >= 1
    relevant = sp.csr_matrix(dense.astype(np.float32))
    topk = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    topk[rng.random(topk.shape) < 0.1] = -1  # some empty slots
    hits = hits_matrix(topk, relevant)
    res = per_user_metrics(hits, relevant_counts(relevant), ks)
    for u in range(n_users):
        rel = set(relevant[u].indices.tolist())
        for k in ks:
            ref = reference(topk[u].tolist(), rel, k)
            for name in ACCURACY_METRICS:
                assert res[f"{name}@{k}"][u] == pytest.approx(ref[name], rel=1e-12), (u, k, name)


def test_rating_metrics() -> None:
    # errors 1, -2, 0, 1: rmse = sqrt((1 + 4 + 0 + 1) / 4), mae = (1 + 2 + 0 + 1) / 4
    res = rating_metrics(np.array([4.0, 1.0, 3.0, 5.0]), np.array([3.0, 3.0, 3.0, 4.0]))
    assert res["rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert res["mae"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rating_metrics(np.array([1.0]), np.array([1.0, 2.0]))
