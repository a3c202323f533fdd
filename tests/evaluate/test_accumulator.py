"""MetricAccumulator: batching, slices, long-tail accuracy and skipped users."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.evaluate.accumulator import BEYOND_METRICS, LONG_TAIL_METRICS, MetricAccumulator
from lmrec.evaluate.beyond import (
    average_popularity,
    gini_index,
    intra_list_diversity,
    item_coverage,
    long_tail_items,
    novelty,
    tail_percentage,
)
from lmrec.evaluate.metrics import ACCURACY_METRICS, hits_matrix, per_user_metrics

KS = [2, 5]
N_ITEMS = 40
N_TRAIN_USERS = 100


def random_case(
    seed: int, n_users: int = 60
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Users (non-contiguous ids), top-5 lists, relevant matrix, popularity, features."""
    rng = np.random.default_rng(seed)
    users = np.arange(n_users) * 3 + 7
    topk = np.stack([rng.choice(N_ITEMS, 5, replace=False) for _ in range(n_users)])
    topk[rng.random(topk.shape) < 0.05] = -1
    dense = rng.random((n_users, N_ITEMS)) < 0.1
    dense[::9] = False  # some users without test items: they must be skipped everywhere
    relevant = sp.csr_matrix(dense.astype(np.float32))
    pop = rng.integers(0, 60, N_ITEMS).astype(np.float32)
    feats = (rng.random((N_ITEMS, 5)) < 0.4).astype(np.float32)
    return users, topk, relevant, pop, feats


def feed(acc: MetricAccumulator, users: np.ndarray, topk: np.ndarray, rel: sp.csr_matrix) -> None:
    for start, stop in [(0, 7), (7, 20), (20, len(users))]:  # uneven batches
        acc.add(users[start:stop], topk[start:stop], rel[start:stop])


def direct(
    topk: np.ndarray, rel: sp.csr_matrix, pop: np.ndarray, feats: np.ndarray
) -> dict[str, float]:
    """Metrics over all rows with a relevant item, computed in one go without the accumulator."""
    n_rel = np.diff(rel.indptr)
    keep = n_rel > 0
    topk, rel, n_rel = topk[keep], rel[keep], n_rel[keep]
    out = {
        k: float(v.mean()) for k, v in per_user_metrics(hits_matrix(topk, rel), n_rel, KS).items()
    }
    tail = long_tail_items(pop, 0.2)
    for k in KS:
        t = topk[:, :k]
        out[f"coverage@{k}"] = item_coverage(t, N_ITEMS)
        out[f"gini@{k}"] = gini_index(t, N_ITEMS)
        out[f"avg_pop@{k}"] = float(np.nanmean(average_popularity(t, pop)))
        out[f"tail@{k}"] = float(np.nanmean(tail_percentage(t, tail)))
        out[f"novelty@{k}"] = float(np.nanmean(novelty(t, pop, N_TRAIN_USERS)))
        out[f"diversity@{k}"] = float(np.nanmean(intra_list_diversity(t, feats)))
    return out


def make(pop: np.ndarray, feats: np.ndarray | None = None) -> MetricAccumulator:
    return MetricAccumulator(KS, N_ITEMS, pop, N_TRAIN_USERS, item_features=feats)


def test_batched_result_equals_direct_computation() -> None:
    users, topk, rel, pop, feats = random_case(0)
    acc = make(pop, sp.csr_matrix(feats))
    feed(acc, users, topk, rel)
    res = acc.result()
    expected_keys = [f"{m}@{k}" for m in (*ACCURACY_METRICS, *BEYOND_METRICS) for k in KS]
    assert list(res) == expected_keys
    exp = direct(topk, rel, pop, feats)
    for key in expected_keys:
        assert res[key] == pytest.approx(exp[key], rel=1e-12), key
    assert acc.n_users == int((np.diff(rel.indptr) > 0).sum())


def test_per_user_values_are_the_ones_result_averages() -> None:
    users, topk, rel, pop, _ = random_case(4)
    acc = make(pop)
    feed(acc, users, topk, rel)
    evaluated, ndcg = acc.per_user("ndcg@5")
    has_test = np.diff(rel.indptr) > 0
    assert np.array_equal(evaluated, users[has_test])  # users without test items are skipped
    assert ndcg.mean() == pytest.approx(acc.result()["ndcg@5"])
    assert acc.has_per_user("recall@2") and not acc.has_per_user("coverage@5")
    with pytest.raises(KeyError, match="coverage@5"):
        acc.per_user("coverage@5")


def test_no_diversity_without_features() -> None:
    users, topk, rel, pop, _ = random_case(1)
    acc = make(pop)
    feed(acc, users, topk, rel)
    res = acc.result()
    assert not any(k.startswith("diversity") for k in res)
    assert "novelty@5" in res


def test_hand_example_skips_users_without_test_items() -> None:
    pop = np.zeros(N_ITEMS)
    acc = MetricAccumulator([2], N_ITEMS, pop, N_TRAIN_USERS)
    rel = sp.csr_matrix(
        (np.ones(3), (np.array([0, 0, 1]), np.array([1, 5, 9]))), shape=(3, N_ITEMS)
    )
    # user 10: list [1, 2], relevant {1, 5} -> recall 1/2, hit at rank 1
    # user 11: list [3, 9], relevant {9} -> recall 1, hit at rank 2
    # user 12: no test items -> ignored, so its items 30, 31 do not count for coverage
    acc.add(np.array([10, 11, 12]), np.array([[1, 2], [3, 9], [30, 31]]), rel)
    res = acc.result()
    assert res["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert res["mrr@2"] == pytest.approx((1 + 1 / 2) / 2)
    assert res["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert res["coverage@2"] == pytest.approx(4 / N_ITEMS)  # items {1, 2, 3, 9}
    # per-user slice: user 11 alone; user 12 is not evaluated so selecting it alone gives NaN
    assert acc.result(np.array([11]))["recall@2"] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in acc.result(np.array([12])).values())
    assert acc.n_users == 2


@pytest.mark.parametrize("seed", [2, 3])
def test_slice_equals_accumulator_fed_only_the_slice(seed: int) -> None:
    users, topk, rel, pop, feats = random_case(seed)
    acc = make(pop, feats)
    feed(acc, users, topk, rel)
    rows = np.random.default_rng(seed).random(len(users)) < 0.4
    sub = make(pop, feats)
    sub.add(users[rows], topk[rows], rel[rows])
    # unknown user ids in the selection are ignored
    got = acc.result(np.concatenate([users[rows], [-5, 10_000]]))
    want = sub.result()
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    # and the subset really differs from the whole (so this test can fail)
    assert got != acc.result()
    got_lt, want_lt = acc.long_tail_result(users[rows]), sub.long_tail_result()
    for key in want_lt:
        assert got_lt[key] == pytest.approx(want_lt[key], rel=1e-12, nan_ok=True), key


def test_long_tail_result_hand_example() -> None:
    # pop [10, 10, 10, 1, 1]: total 32, 20% = 6.4 -> tail = items {3, 4} (together 2)
    pop = np.array([10.0, 10.0, 10.0, 1.0, 1.0])
    acc = MetricAccumulator([2], 5, pop, 50)
    np.testing.assert_array_equal(acc.tail_mask, [False, False, False, True, True])
    rows = np.array([0, 0, 1, 1, 2, 3, 3])
    cols = np.array([0, 3, 4, 2, 0, 3, 4])
    rel = sp.csr_matrix((np.ones(7), (rows, cols)), shape=(4, 5))
    topk = np.array([[3, 1], [2, 0], [0, 1], [0, 4]])
    acc.add(np.arange(4), topk, rel)
    # user 0: tail relevant {3}, hit at rank 1 -> recall 1, ndcg 1, hit 1
    # user 1: tail relevant {4}, only non-tail item 2 hit -> 0, 0, 0
    # user 2: no tail relevant item -> skipped
    # user 3: tail relevant {3, 4}, item 4 at rank 2 -> recall 1/2,
    #         ndcg (1/log2 3) / (1 + 1/log2 3), hit 1
    lt = acc.long_tail_result()
    assert list(lt) == [f"{m}@2" for m in LONG_TAIL_METRICS]
    assert lt["recall@2"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    ndcg3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert lt["ndcg@2"] == pytest.approx((1 + 0 + ndcg3) / 3)
    assert lt["hit@2"] == pytest.approx(2 / 3)
    # tail@2 (share of recommended tail items) per user: 1/2, 0, 0, 1/2
    assert acc.result()["tail@2"] == pytest.approx(1 / 4)


def test_short_and_long_lists_and_storage() -> None:
    pop = np.ones(N_ITEMS)
    acc = MetricAccumulator([3, 6], N_ITEMS, pop, 10)
    rel = sp.csr_matrix((np.ones(2), (np.array([0, 1]), np.array([4, 8]))), shape=(2, N_ITEMS))
    acc.add(np.array([0]), np.array([[4, 5]]), rel[:1])  # 2 columns < max(ks)
    acc.add(np.array([1]), np.arange(8)[None, ::-1].copy(), rel[1:])  # 8 > 6: item 8 absent
    res = acc.result()
    # user 0: hit at rank 1, precision still over K; user 1: list [7..2], item 8 not in it
    assert res["precision@6"] == pytest.approx((1 / 6 + 0) / 2)
    assert res["hit@3"] == pytest.approx(1 / 2)
    users, lists, values, _ = acc._arrays()
    assert lists.dtype == np.int32 and lists.shape == (2, 6)  # O(n_users * K) storage
    np.testing.assert_array_equal(lists[0], [4, 5, -1, -1, -1, -1])
    assert values.shape[0] == 2 and users.tolist() == [0, 1]


def test_empty_accumulator_and_bad_input() -> None:
    acc = make(np.ones(N_ITEMS))
    assert all(math.isnan(v) for v in acc.result().values())
    assert all(math.isnan(v) for v in acc.long_tail_result().values())
    with pytest.raises(ValueError, match="shapes"):
        acc.add(np.arange(2), np.zeros((3, 5), dtype=int), sp.csr_matrix((2, N_ITEMS)))
    with pytest.raises(ValueError, match="item_pop"):
        MetricAccumulator(KS, N_ITEMS, np.ones(3), 10)
