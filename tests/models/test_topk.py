"""Top-k selection against a full stable sort."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.models.topk import topk


def reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.full((scores.shape[0], k), -1)
    val = np.full((scores.shape[0], k), -np.inf, dtype=scores.dtype)
    for r, row in enumerate(scores):
        order = [j for j in np.argsort(-row, kind="stable") if np.isfinite(row[j]) or row[j] > 0]
        order = order[:k]
        idx[r, : len(order)] = order
        val[r, : len(order)] = row[order]
    return idx, val


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_topk_matches_stable_sort_with_ties_and_exclusions(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 5, size=(30, 40)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # excluded entries
    scores[0] = -np.inf  # a row with nothing left
    idx, val = topk(scores, k)
    ref_idx, ref_val = reference(scores, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


def test_topk_k_larger_than_row() -> None:
    idx, val = topk(np.array([[1.0, 3.0, 2.0]], dtype=np.float32), 10)
    assert idx.tolist() == [[1, 2, 0]]
    assert val.tolist() == [[3.0, 2.0, 1.0]]


def test_topk_large_ties_keep_lowest_columns() -> None:
    scores = np.zeros((2, 5000), dtype=np.float32)
    scores[1, 4000] = 1.0
    idx, _ = topk(scores, 3)
    assert idx.tolist() == [[0, 1, 2], [4000, 0, 1]]
