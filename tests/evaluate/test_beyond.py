"""Beyond-accuracy metrics: hand-computed examples."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.evaluate.beyond import (
    average_popularity,
    gini_index,
    intra_list_diversity,
    item_coverage,
    long_tail_items,
    nanmean,
    novelty,
    recommendation_counts,
    tail_percentage,
)


def test_item_coverage() -> None:
    # items {0, 1, 2} of 6 recommended -> 3/6
    assert item_coverage(np.array([[0, 1], [1, 2]]), 6) == pytest.approx(3 / 6)
    # empty slots (-1) are not items: {0, 3} of 6 -> 2/6
    assert item_coverage(np.array([[0, -1], [0, 3]]), 6) == pytest.approx(2 / 6)


def test_gini_hand_example() -> None:
    # counts [2, 1, 1, 0] sorted -> [0, 1, 1, 2], n = 4, total = 4
    # sum (2i - 5) P_i = -3*0 - 1*1 + 1*1 + 3*2 = 6 -> 6 / (4 * 4) = 0.375
    assert gini_index(np.array([[0, 1], [0, 2]]), 4) == pytest.approx(0.375)
    # every item recommended once -> perfectly equal -> 0
    assert gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    # one item takes every slot of 5 items: P = [0, 0, 0, 0, 2], only i = 5 counts:
    # (2*5 - 5 - 1) * 2 = 8 -> 8 / (5 * 2) = 0.8 = 1 - 1/n
    assert gini_index(np.array([[4], [4]]), 5) == pytest.approx(0.8)
    assert math.isnan(gini_index(np.array([[-1]]), 3))


def recbole_gini(items: np.ndarray, n_items: int) -> float:
    """RecBole 1.2.1 ``GiniIndex.get_gini``, copied (full lists only)."""
    counts = np.array(sorted(Counter(items.flatten()).values()))
    idx = np.arange(n_items - counts.shape[0] + 1, n_items + 1)
    return float(np.sum((2 * idx - n_items - 1) * counts) / items.size / n_items)


def test_gini_equals_recbole_on_random_lists() -> None:
    rng = np.random.default_rng(3)
    items = np.stack([rng.choice(50, 10, replace=False) for _ in range(40)])
    assert gini_index(items, 50) == pytest.approx(recbole_gini(items, 50), rel=1e-12)


def test_recommendation_counts_skip_empty_slots() -> None:
    np.testing.assert_array_equal(
        recommendation_counts(np.array([[2, -1], [2, 0]]), 4), [1, 0, 2, 0]
    )


def test_average_popularity() -> None:
    pop = np.array([10.0, 5.0, 1.0, 0.0])
    # user 0: (10 + 5) / 2 = 7.5; user 1: (1 + 0) / 2 = 0.5; user 2: only item 0 filled -> 10
    res = average_popularity(np.array([[0, 1], [2, 3], [0, -1]]), pop)
    np.testing.assert_allclose(res, [7.5, 0.5, 10.0])
    assert math.isnan(average_popularity(np.array([[-1, -1]]), pop)[0])


def test_long_tail_items() -> None:
    # total 20, 20% = 4: levels 0 (cum 0), 1 (cum 2), 2 (cum 4) fit, 16 does not
    np.testing.assert_array_equal(
        long_tail_items(np.array([0, 1, 1, 2, 16])), [True, True, True, True, False]
    )
    # total 20, 20% = 4: 2 fits (cum 2), 3 would make cum 5 > 4
    np.testing.assert_array_equal(long_tail_items(np.array([10, 5, 3, 2])), [0, 0, 0, 1])
    # three items with 1 interaction hold 3 of 10 > 2: ties are not split, so no tail at all
    assert not long_tail_items(np.array([1, 1, 1, 7])).any()
    # share 0.5 of 10 = 5: the three 1s (cum 3) are in, 7 is not
    np.testing.assert_array_equal(long_tail_items(np.array([1, 1, 1, 7]), 0.5), [1, 1, 1, 0])
    # 0.29 * 100 = 28.999999999999996 in floating point; the level summing to 29 still counts
    pop = np.array([29.0, 71.0])
    np.testing.assert_array_equal(long_tail_items(pop, 0.29), [True, False])
    with pytest.raises(ValueError):
        long_tail_items(pop, 1.5)


def test_tail_percentage() -> None:
    tail = np.array([False, True, True, False])
    # user 0: 1 of 2 tail; user 1: 2 of 2; user 2: 0 of 1 filled slot
    np.testing.assert_allclose(
        tail_percentage(np.array([[0, 1], [2, 1], [3, -1]]), tail), [0.5, 1.0, 0.0]
    )


def test_novelty() -> None:
    # 7 users; (pop + 1) / 8 = [1, 1/2, 1/4, 1/8] -> self-information [0, 1, 2, 3] bits
    pop = np.array([7, 3, 1, 0])
    res = novelty(np.array([[0, 1], [2, 3], [3, -1]]), pop, 7)
    np.testing.assert_allclose(res, [(0 + 1) / 2, (2 + 3) / 2, 3.0])


GENRES = sp.csr_matrix(
    np.array(
        [
            [1, 0],  # item 0: genre a
            [1, 1],  # item 1: genres a, b
            [0, 1],  # item 2: genre b
            [0, 0],  # item 3: no genre (zero row)
        ],
        dtype=np.float32,
    )
)


def test_intra_list_diversity_hand_example() -> None:
    # list [0, 1, 2]: cos(0,1) = 1/sqrt2, cos(0,2) = 0, cos(1,2) = 1/sqrt2
    #   -> mean similarity (2/sqrt2) / 3 = sqrt2/3 -> diversity 1 - sqrt2/3
    # list [0, 3]: zero row counts as similarity 0 -> diversity 1
    # list [0, 0, 2]: (duplicate slot) cos 1, 0, 0 -> 1 - 1/3
    # list [1, -1, -1]: a single item has no pair -> NaN
    topk = np.array([[0, 1, 2], [0, 3, -1], [0, 0, 2], [1, -1, -1]])
    res = intra_list_diversity(topk, GENRES)
    np.testing.assert_allclose(res[:3], [1 - math.sqrt(2) / 3, 1.0, 2 / 3])
    assert math.isnan(res[3])
    # dense features, unnormalised (scaled) rows: same cosine, same answer
    dense = GENRES.toarray() * np.array([[3.0], [2.0], [0.5], [1.0]])
    np.testing.assert_allclose(intra_list_diversity(topk, dense), res, equal_nan=True)


def test_intra_list_diversity_matches_pairwise_loop() -> None:
    rng = np.random.default_rng(5)
    feats = (rng.random((30, 6)) < 0.3).astype(np.float64)
    topk = np.stack([rng.choice(30, 8, replace=False) for _ in range(20)])
    norms = np.linalg.norm(feats, axis=1)
    expected = []
    for row in topk:
        sims = []
        for a in range(len(row)):
            for b in range(a + 1, len(row)):
                na, nb = norms[row[a]], norms[row[b]]
                dot = feats[row[a]] @ feats[row[b]]
                sims.append(dot / (na * nb) if na > 0 and nb > 0 else 0.0)
        expected.append(1 - np.mean(sims))
    np.testing.assert_allclose(intra_list_diversity(topk, feats), expected, rtol=1e-10)


def test_nanmean() -> None:
    assert nanmean(np.array([1.0, np.nan, 3.0])) == pytest.approx(2.0)
    assert math.isnan(nanmean(np.array([np.nan])))
    assert math.isnan(nanmean(np.array([])))
