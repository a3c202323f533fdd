"""Top-k accuracy metrics with RecBole 1.2.1's definitions, and rating-error metrics.

For one user, ``hits`` is a 0/1 vector over the ranked top-K list and ``n_rel`` is the number of
that user's relevant (test) items. Users without relevant items are not evaluated; the reported
value of a metric is the mean of the per-user values. With positions ``i = 1..K``:

- ``hit@K = 1`` if any hit, else 0;
- ``mrr@K = 1 / rank of the first hit`` (0 if none);
- ``precision@K = hits / K`` (always divided by K, even when the list is shorter);
- ``recall@K = hits / n_rel``;
- ``ndcg@K = DCG / IDCG`` with ``DCG = sum_{hit i} 1/log2(i+1)`` and
  ``IDCG = sum_{i=1}^{min(n_rel, K)} 1/log2(i+1)``;
- ``map@K = (sum_{hit i} precision@i) / min(n_rel, K)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

#: Accuracy metric names, in report order; keys are ``f"{name}@{k}"``.
ACCURACY_METRICS = ("recall", "precision", "ndcg", "mrr", "hit", "map")


def metric_key(name: str, k: int) -> str:
    """The result key of metric ``name`` at cut-off ``k``, e.g. ``ndcg@10``."""
    return f"{name}@{k}"


def _check_ks(ks: Sequence[int]) -> list[int]:
    out = [int(k) for k in ks]
    if not out or min(out) < 1:
        raise ValueError(f"cut-offs must be positive integers, got {list(ks)}")
    return out


def relevant_counts(
    relevant: sp.spmatrix | sp.sparray, item_mask: np.ndarray | None = None
) -> np.ndarray:
    """Number of relevant items per row: stored nonzero entries, optionally only masked items.

    Args:
        relevant: ``(n_users, n_items)`` sparse matrix.
        item_mask: ``(n_items,)`` bool; when given, only these items count.
    """
    rel = sp.csr_matrix(relevant)
    keep = rel.data != 0
    if item_mask is not None:
        keep &= np.asarray(item_mask, dtype=bool)[rel.indices]
    # row sums without a Python loop: cumulative sum sampled at the row boundaries
    csum = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return np.asarray(csum[rel.indptr[1:]] - csum[rel.indptr[:-1]], dtype=np.int64)


def hits_matrix(topk_idx: np.ndarray, relevant: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Which recommended items are relevant.

    Args:
        topk_idx: ``(n_users, K)`` item indices, best first; -1 marks an empty slot.
        relevant: ``(n_users, n_items)`` sparse matrix; stored nonzero entries are relevant.
            Rows are aligned with ``topk_idx``.

    Returns:
        ``(n_users, K)`` bool array; empty slots are never hits.
    """
    topk_idx = np.asarray(topk_idx)
    rel = sp.csr_matrix(relevant)
    n_users, n_items = rel.shape
    if topk_idx.ndim != 2 or topk_idx.shape[0] != n_users:
        raise ValueError(f"topk_idx shape {topk_idx.shape} does not match {n_users} users")
    if topk_idx.size and topk_idx.max() >= n_items:
        raise ValueError(f"item index {topk_idx.max()} out of range for {n_items} items")
    # Encode (row, item) pairs as one sorted int64 key so all lookups are one searchsorted.
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keep = rel.data != 0
    keys = np.sort(rows[keep] * n_items + rel.indices[keep].astype(np.int64))
    valid = topk_idx >= 0
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, topk_idx, 0)
    if keys.size == 0:
        return np.zeros(topk_idx.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return valid & (keys[pos] == query)


def per_user_metrics(
    hits: np.ndarray, n_rel: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user accuracy metrics at each cut-off.

    Args:
        hits: ``(n_users, L)`` bool, whether the item at each rank is relevant. ``L`` may be
            smaller than ``max(ks)`` (short lists); missing ranks count as misses.
        n_rel: ``(n_users,)`` number of relevant items per user; must be >= 1.
        ks: Cut-offs.

    Returns:
        ``{"recall@k": (n_users,) float64, ...}`` for every name in `ACCURACY_METRICS` and k.
    """
    ks = _check_ks(ks)
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_rel, dtype=np.int64)
    if hits.ndim != 2 or n_rel.shape != (hits.shape[0],):
        raise ValueError(f"hits {hits.shape} and n_rel {n_rel.shape} do not align")
    if n_rel.size and n_rel.min() < 1:
        raise ValueError("every user needs at least one relevant item (n_rel >= 1)")
    kmax = max(ks)
    if hits.shape[1] < kmax:
        pad = np.zeros((hits.shape[0], kmax - hits.shape[1]), dtype=bool)
        hits = np.hstack([hits, pad])
    hits = hits[:, :kmax]
    h = hits.astype(np.float64)
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1.0)
    n_hits = np.cumsum(h, axis=1)  # hits within the first i ranks
    dcg = np.cumsum(h * disc, axis=1)
    ideal = np.cumsum(disc)
    # sum of precision@i over hit ranks, as RecBole's MAP accumulates it
    ap_sum = np.cumsum(h * n_hits / ranks, axis=1)
    any_hit = hits.any(axis=1)
    first = np.where(any_hit, hits.argmax(axis=1), kmax)  # 0-based rank of first hit

    out: dict[str, np.ndarray] = {}
    for k in ks:
        cnt = n_hits[:, k - 1]
        denom = np.minimum(n_rel, k)
        vals = {
            "recall": cnt / n_rel,
            "precision": cnt / k,
            "ndcg": dcg[:, k - 1] / ideal[denom - 1],
            "mrr": np.where(first < k, 1.0 / (first + 1.0), 0.0),
            "hit": (cnt > 0).astype(np.float64),
            "map": ap_sum[:, k - 1] / denom,
        }
        for name in ACCURACY_METRICS:
            out[metric_key(name, k)] = vals[name]
    return out


def rating_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Root mean squared error and mean absolute error of rating predictions (as RecBole)."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"need equally long non-empty arrays, got {p.size} and {t.size}")
    err = p - t
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
