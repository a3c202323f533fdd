"""Streaming metric accumulator: fed one batch of users at a time, with O(n_users * K) memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from lmrec.evaluate.beyond import (
    average_popularity,
    gini_index,
    intra_list_diversity,
    item_coverage,
    long_tail_items,
    nanmean,
    normalize_rows,
    novelty,
    tail_percentage,
)
from lmrec.evaluate.metrics import (
    ACCURACY_METRICS,
    hits_matrix,
    metric_key,
    per_user_metrics,
    relevant_counts,
)

#: Beyond-accuracy metric names, in report order; keys are ``f"{name}@{k}"``.
BEYOND_METRICS = ("coverage", "gini", "avg_pop", "tail", "novelty", "diversity")
#: Accuracy metrics reported by `MetricAccumulator.long_tail_result`.
LONG_TAIL_METRICS = ("recall", "ndcg", "hit")
# Beyond metrics with one value per user (coverage and gini are computed over the stored lists).
_PER_USER_BEYOND = ("avg_pop", "tail", "novelty", "diversity")


class MetricAccumulator:
    """Collects per-user metric values and top-K lists batch by batch.

    Follows RecBole: only users with at least one relevant item are evaluated, for accuracy and
    beyond-accuracy metrics alike; other rows passed to `add` are dropped. Per user it keeps a
    few floats per metric and cut-off plus the top-K list (int32), never a user x item matrix,
    so `result` can be recomputed cheaply for any subset of users.

    Args:
        ks: Cut-offs, e.g. ``[10, 20]``.
        n_items: Catalog size (columns of ``relevant``; coverage denominator).
        item_pop: ``(n_items,)`` training interaction count per item.
        n_train_users: Number of training users (novelty's denominator).
        item_features: Optional item x feature matrix; enables ``diversity@k``.
        tail_share: Share of training interactions held by the long-tail items.
    """

    def __init__(
        self,
        ks: Sequence[int],
        n_items: int,
        item_pop: np.ndarray,
        n_train_users: int,
        item_features: sp.csr_matrix | np.ndarray | None = None,
        tail_share: float = 0.2,
    ) -> None:
        self.ks = list(dict.fromkeys(int(k) for k in ks))  # dedupe, keep order
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"cut-offs must be positive integers, got {list(ks)}")
        self.kmax = max(self.ks)
        self.n_items = int(n_items)
        self.item_pop = np.asarray(item_pop, dtype=np.float64).ravel()
        if self.item_pop.shape != (self.n_items,):
            raise ValueError(f"item_pop has {self.item_pop.size} entries, expected {n_items}")
        self.n_train_users = int(n_train_users)
        self.tail_mask = long_tail_items(self.item_pop, tail_share)
        self._features: sp.csr_matrix | None = None
        if item_features is not None:
            self._features = normalize_rows(item_features)
            if self._features.shape[0] != self.n_items:
                raise ValueError(
                    f"item_features has {self._features.shape[0]} rows, expected {n_items}"
                )
        beyond = [b for b in _PER_USER_BEYOND if b != "diversity" or self._features is not None]
        self._columns = [metric_key(m, k) for k in self.ks for m in (*ACCURACY_METRICS, *beyond)]
        self._lt_columns = [metric_key(m, k) for k in self.ks for m in LONG_TAIL_METRICS]
        self._users: list[np.ndarray] = []
        self._lists: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._lt_values: list[np.ndarray] = []

    @property
    def n_users(self) -> int:
        """Number of evaluated users (rows kept so far)."""
        return sum(len(u) for u in self._users)

    def add(self, user_idx: np.ndarray, topk_idx: np.ndarray, relevant: sp.csr_matrix) -> None:
        """Record one batch.

        Args:
            user_idx: ``(B,)`` user indices, used only to select slices in `result`.
            topk_idx: ``(B, L)`` item indices, best first, -1 for empty slots; columns past
                ``max(ks)`` are ignored and missing ones count as empty.
            relevant: ``(B, n_items)`` sparse matrix of relevant (test) items, rows aligned
                with ``user_idx``.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64).ravel()
        topk_idx = np.asarray(topk_idx)
        rel = sp.csr_matrix(relevant)
        b = user_idx.size
        if topk_idx.ndim != 2 or topk_idx.shape[0] != b or rel.shape != (b, self.n_items):
            raise ValueError(
                f"batch shapes disagree: user_idx ({b},), topk_idx {topk_idx.shape}, "
                f"relevant {rel.shape}, n_items {self.n_items}"
            )
        lists = np.full((b, self.kmax), -1, dtype=np.int32)
        width = min(self.kmax, topk_idx.shape[1])
        lists[:, :width] = topk_idx[:, :width]
        n_rel = relevant_counts(rel)
        keep = n_rel > 0
        if not keep.any():
            return
        if not keep.all():
            user_idx, lists, rel, n_rel = user_idx[keep], lists[keep], rel[keep], n_rel[keep]

        hits = hits_matrix(lists, rel)
        cols = per_user_metrics(hits, n_rel, self.ks)
        for k in self.ks:
            top = lists[:, :k]
            cols[metric_key("avg_pop", k)] = average_popularity(top, self.item_pop)
            cols[metric_key("tail", k)] = tail_percentage(top, self.tail_mask)
            cols[metric_key("novelty", k)] = novelty(top, self.item_pop, self.n_train_users)
            if self._features is not None:
                cols[metric_key("diversity", k)] = intra_list_diversity(
                    top, self._features, normalized=True
                )
        self._users.append(user_idx)
        self._lists.append(lists)
        self._values.append(np.column_stack([cols[c] for c in self._columns]))
        self._lt_values.append(self._long_tail_values(lists, rel, hits))

    def _long_tail_values(
        self, lists: np.ndarray, rel: sp.csr_matrix, hits: np.ndarray
    ) -> np.ndarray:
        """Per-user long-tail accuracy columns; NaN rows for users without long-tail items."""
        n_lt = relevant_counts(rel, item_mask=self.tail_mask)
        # a hit on a tail item is exactly a hit on a long-tail relevant item
        lt_hits = hits & self.tail_mask[np.where(lists >= 0, lists, 0)]
        out = np.full((len(lists), len(self._lt_columns)), np.nan)
        has = n_lt > 0
        if has.any():
            vals = per_user_metrics(lt_hits[has], n_lt[has], self.ks)
            out[has] = np.column_stack([vals[c] for c in self._lt_columns])
        return out

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All batches concatenated (cached by collapsing the chunk lists to one chunk)."""
        if not self._users:
            n_lt = len(self._lt_columns)
            return (
                np.zeros(0, dtype=np.int64),
                np.zeros((0, self.kmax), dtype=np.int32),
                np.zeros((0, len(self._columns))),
                np.zeros((0, n_lt)),
            )
        if len(self._users) > 1:
            self._users = [np.concatenate(self._users)]
            self._lists = [np.vstack(self._lists)]
            self._values = [np.vstack(self._values)]
            self._lt_values = [np.vstack(self._lt_values)]
        return self._users[0], self._lists[0], self._values[0], self._lt_values[0]

    def _select(self, users: np.ndarray | None) -> np.ndarray:
        stored = self._arrays()[0]
        if users is None:
            return np.ones(stored.size, dtype=bool)
        return np.isin(stored, np.asarray(users, dtype=np.int64))

    def has_per_user(self, key: str) -> bool:
        """Whether `per_user` holds values of metric ``key`` (e.g. ``ndcg@10``)."""
        return key in self._columns

    def per_user(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Evaluated users (row indices) and their values of accuracy metric ``key``.

        The values behind `result`'s mean, for paired comparisons of models on one split.

        Raises:
            KeyError: ``key`` is not an accuracy metric at one of the cut-offs.
        """
        users, _, values, _ = self._arrays()
        if key not in self._columns:
            raise KeyError(f"no per-user values of {key!r}; one of {self._columns}")
        return users, values[:, self._columns.index(key)]

    def result(self, users: np.ndarray | None = None) -> dict[str, float]:
        """Mean metrics over the evaluated users, or over those of them listed in ``users``.

        Returns:
            ``{name@k: value}`` for every name in `ACCURACY_METRICS` then `BEYOND_METRICS`
            (``diversity`` only with item features), each over all cut-offs; every value is
            NaN when no evaluated user is selected.
        """
        _, lists, values, _ = self._arrays()
        sel = self._select(users)
        vals = values[sel]
        means = {c: nanmean(vals[:, j]) for j, c in enumerate(self._columns)}
        out: dict[str, float] = {}
        for name in ACCURACY_METRICS:
            for k in self.ks:
                out[metric_key(name, k)] = means[metric_key(name, k)]
        top = lists[sel]
        for name in BEYOND_METRICS:
            for k in self.ks:
                key = metric_key(name, k)
                if name == "coverage":
                    out[key] = item_coverage(top[:, :k], self.n_items) if len(top) else np.nan
                elif name == "gini":
                    out[key] = gini_index(top[:, :k], self.n_items)
                elif key in means:
                    out[key] = means[key]
        return out

    def long_tail_result(self, users: np.ndarray | None = None) -> dict[str, float]:
        """Accuracy on long-tail test items only.

        Relevant items are restricted to the long-tail items (see `long_tail_items`); users
        with no long-tail relevant item are skipped. ``n_rel`` is the number of long-tail
        relevant items, so e.g. ``recall@k`` is the share of a user's long-tail test items
        found in the top k.

        Returns:
            ``{name@k: value}`` for every name in `LONG_TAIL_METRICS` and cut-off; NaN when
            no selected user has a long-tail test item.
        """
        _, _, _, lt = self._arrays()
        vals = lt[self._select(users)]
        return {
            metric_key(name, k): nanmean(vals[:, self._lt_columns.index(metric_key(name, k))])
            for name in LONG_TAIL_METRICS
            for k in self.ks
        }
