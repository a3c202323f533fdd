"""Beyond-accuracy metrics of top-k lists: coverage, concentration, popularity bias, diversity.

Every function takes ``topk_idx``, an ``(n_users, K)`` int array of item indices, best first,
already cut to the wanted K; -1 marks an empty slot and is ignored (RecBole has no empty slots:
its lists always hold K items). Per-user functions return NaN for users whose list is too short
for the metric; the reported value is the mean over the other users (`nanmean`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp


def nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    values = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


def _valid(topk_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index array and its mask of filled slots."""
    idx = np.asarray(topk_idx)
    if idx.ndim != 2:
        raise ValueError(f"topk_idx must be 2-D, got shape {idx.shape}")
    return idx, idx >= 0


def recommendation_counts(topk_idx: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item appears over all lists, ``(n_items,)`` int64."""
    idx, valid = _valid(topk_idx)
    return np.bincount(idx[valid].astype(np.int64), minlength=n_items)


def item_coverage(topk_idx: np.ndarray, n_items: int) -> float:
    """Share of the catalog recommended to at least one user (RecBole ``ItemCoverage``).

    ``coverage@K = |union_u topK(u)| / n_items``.
    """
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    return float(np.count_nonzero(recommendation_counts(topk_idx, n_items)) / n_items)


def gini_index(topk_idx: np.ndarray, n_items: int) -> float:
    """Gini index of how often items are recommended (RecBole ``GiniIndex``).

    With ``P_(1) <= ... <= P_(n)`` the recommendation counts of all ``n = n_items`` catalog
    items sorted ascending (items never recommended count as 0)::

        gini@K = sum_i (2i - n - 1) P_(i) / (n * sum_i P_(i))

    0 means every item is recommended equally often, values near 1 that few items take all
    slots. RecBole divides by ``n_users * K``; that equals ``sum_i P_(i)`` for full lists.
    Returns NaN when nothing is recommended.
    """
    counts = np.sort(recommendation_counts(topk_idx, n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    n = counts.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * i - n - 1) * counts) / (n * total))


def _list_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row mean of ``values`` over filled slots; NaN for empty rows."""
    n = valid.sum(axis=1)
    s = np.where(valid, values, 0.0).sum(axis=1)
    out = np.full(valid.shape[0], np.nan)
    np.divide(s, n, out=out, where=n > 0)
    return out


def average_popularity(topk_idx: np.ndarray, item_pop: np.ndarray) -> np.ndarray:
    """Per-user mean training popularity of the recommended items (RecBole ``AveragePopularity``).

    ``avg_pop@K(u) = sum_{i in topK(u)} pop(i) / |topK(u)|`` with ``pop(i)`` the item's training
    interaction count. RecBole divides by K; lmrec by the number of filled slots, which is the
    same for full lists. NaN for empty lists.
    """
    idx, valid = _valid(topk_idx)
    pop = np.asarray(item_pop, dtype=np.float64)
    return _list_mean(pop[np.where(valid, idx, 0)], valid)


def long_tail_items(item_pop: np.ndarray, share: float = 0.2) -> np.ndarray:
    """Mask of long-tail items: the least popular items holding ``share`` of all interactions.

    lmrec's definition (RecBole's ``TailPercentage`` instead takes a fixed ``tail_ratio`` of
    items or a count threshold): the tail is every item with popularity ``<= p*``, where ``p*``
    is the largest popularity value such that all items at most that popular together hold at
    most ``share`` of the training interactions. Equally popular items are never split, so the
    tail may hold somewhat less than ``share``; items never interacted with are always in it.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    pop = np.asarray(item_pop, dtype=np.float64)
    if pop.size == 0:
        return np.zeros(0, dtype=bool)
    values, counts = np.unique(pop, return_counts=True)  # ascending popularity levels
    cum = np.cumsum(values * counts)
    total = cum[-1]
    # tolerance so that e.g. 0.29 * 100 = 28.999999999999996 still admits a level summing to 29
    allowed = cum <= share * total + 1e-9 * max(total, 1.0)
    if not allowed.any():
        return np.zeros(pop.size, dtype=bool)
    return pop <= values[allowed][-1]


def tail_percentage(topk_idx: np.ndarray, tail_mask: np.ndarray) -> np.ndarray:
    """Per-user share of recommended items that are long-tail (cf. RecBole ``TailPercentage``).

    ``tail@K(u) = |topK(u) ∩ T| / |topK(u)|`` with ``T`` from `long_tail_items`. NaN for empty
    lists.
    """
    idx, valid = _valid(topk_idx)
    tail = np.asarray(tail_mask, dtype=bool)
    return _list_mean(tail[np.where(valid, idx, 0)].astype(np.float64), valid)


def novelty(topk_idx: np.ndarray, item_pop: np.ndarray, n_users: int) -> np.ndarray:
    """Per-user mean self-information of the recommended items (Zhou et al., PNAS 2010).

    ``novelty@K(u) = mean_{i in topK(u)} -log2((pop(i) + 1) / (n_users + 1))`` with ``pop(i)``
    the number of training users of item ``i`` and ``n_users`` the number of training users;
    the +1 keeps never-seen items finite. No RecBole equivalent. NaN for empty lists.
    """
    idx, valid = _valid(topk_idx)
    pop = np.asarray(item_pop, dtype=np.float64)
    info = -np.log2((pop + 1.0) / (float(n_users) + 1.0))
    return _list_mean(info[np.where(valid, idx, 0)], valid)


def normalize_rows(features: sp.spmatrix | sp.sparray | np.ndarray) -> sp.csr_matrix:
    """Item features as CSR float64 with unit-length rows (zero rows stay zero)."""
    f = sp.csr_matrix(features, dtype=np.float64)
    norms = np.sqrt(np.asarray(f.multiply(f).sum(axis=1)).ravel())
    inv = np.zeros_like(norms)
    np.divide(1.0, norms, out=inv, where=norms > 0)
    out = sp.csr_matrix(sp.diags(inv) @ f)
    out.eliminate_zeros()
    return out


def intra_list_diversity(
    topk_idx: np.ndarray,
    features: sp.spmatrix | sp.sparray | np.ndarray,
    *,
    normalized: bool = False,
) -> np.ndarray:
    """Per-user intra-list diversity: 1 - mean pairwise cosine similarity of the list's items.

    ``diversity@K(u) = 1 - (2 / (m(m-1))) * sum_{a<b} cos(f_a, f_b)`` over the ``m`` items of
    the list, with ``f`` the item feature rows (e.g. one-hot genres); an item whose feature row
    is all zero has similarity 0 to everything. No RecBole equivalent. NaN when ``m < 2``.

    Vectorised with ``sum_{a<b} f_a.f_b = (|sum_a f_a|^2 - sum_a |f_a|^2) / 2``, so the cost is
    one sparse product per batch rather than K^2 pairs per user.

    Args:
        topk_idx: ``(n_users, K)`` item indices, -1 for empty slots.
        features: Item x feature matrix, sparse or dense.
        normalized: ``features`` already came from `normalize_rows` (skips that step when
            called batch after batch).
    """
    idx, valid = _valid(topk_idx)
    unit_features = sp.csr_matrix(features) if normalized else normalize_rows(features)
    n_users = idx.shape[0]
    n_items = unit_features.shape[0]
    rows = np.repeat(np.arange(n_users), idx.shape[1])[valid.ravel()]
    cols = idx[valid]
    lists = sp.csr_matrix(
        (np.ones(cols.size), (rows, cols)), shape=(n_users, n_items), dtype=np.float64
    )  # duplicate slots add up, so sums run over slots, not distinct items
    summed = lists @ unit_features
    sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    row_sq = np.asarray(unit_features.multiply(unit_features).sum(axis=1)).ravel()
    self_sim = lists @ row_sq  # sum_a |f_a|^2: 1 per slot whose feature row is nonzero
    m = valid.sum(axis=1).astype(np.float64)
    pairs = m * (m - 1) / 2
    out = np.full(n_users, np.nan)
    np.divide((sq - self_sim) / 2, pairs, out=out, where=pairs > 0)
    return np.where(pairs > 0, 1.0 - out, np.nan)
