"""EASE and ItemKNN against direct, unoptimised implementations of their formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmrec.data.schema import Dataset
from lmrec.models import EASE, ItemKNN


def random_dataset(seed: int = 1) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.random((30, 25)) < 0.2
    u, i = np.nonzero(x)
    return Dataset.build(
        pd.DataFrame({"user_id": [f"u{a}" for a in u], "item_id": [f"i{b}" for b in i]})
    )


def test_ease_matches_textbook_formula() -> None:
    ds = random_dataset()
    model = EASE(reg_weight=3.0).fit(ds)
    x = ds.matrix().toarray().astype(np.float64)
    g = x.T @ x + 3.0 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck (2019), eq. 8
    np.testing.assert_allclose(model.weights, b, atol=1e-5)
    np.testing.assert_allclose(model.score(list(ds.user_ids)), x @ b, atol=1e-4)


def test_itemknn_matches_bruteforce_shrunk_cosine() -> None:
    ds = random_dataset(2)
    k, shrink = 4, 2.0
    model = ItemKNN(k=k, shrink=shrink, block_size=7).fit(ds)  # several blocks
    x = ds.matrix().toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / (np.outer(norms, norms) + shrink + 1e-6)
    np.fill_diagonal(sim, 0.0)
    expected = np.zeros_like(sim)
    for j in range(sim.shape[1]):  # keep the top k of each column
        top = np.argsort(-sim[:, j], kind="stable")[:k]
        expected[top, j] = sim[top, j]
    got = model.similarity.toarray()
    # Ties at the k-th place may pick different rows: compare column sums of kept values.
    np.testing.assert_allclose(np.sort(got, axis=0)[-k:], np.sort(expected, axis=0)[-k:], atol=1e-5)
    assert ((got > 0).sum(axis=0) <= k).all()
