"""Sequence features of (user, item) pairs: what tends to follow the user's latest items.

A CF score sums over the whole history; recent intent is a different signal. From the fit
data in time order this module learns item-to-item transitions (item ``j`` seen within
``window`` steps after item ``i``, weighted ``1/step``) and keeps each user's ``recent`` latest
items. Features: the transition score from the latest item, a recency-decayed sum from the
latest few, and (given item neighbours) the candidate's similarity to the latest items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.models.topk import gather


class SequenceFeatures:
    """First-order transitions and each user's latest items, from timestamped fit data."""

    def __init__(self, recent: int = 5, window: int = 3, decay: float = 0.7) -> None:
        self.recent, self.window, self.decay = recent, window, decay
        self.latest = np.zeros((0, recent), dtype=np.int64)  # -1 pads; most recent first
        self.trans = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(
        self, uidx: np.ndarray, iidx: np.ndarray, ts: np.ndarray, n_users: int, n_items: int
    ) -> SequenceFeatures:
        """Learn from aligned interaction arrays (user, item, timestamp)."""
        ok = np.isfinite(ts)
        u, i, t = uidx[ok], iidx[ok], ts[ok]
        order = np.lexsort((i, t, u))  # ties in time broken by item, for a stable order
        u, i = u[order], i[order]
        rows, cols, vals = [], [], []
        for step in range(1, self.window + 1):
            same = u[step:] == u[:-step]
            rows.append(i[:-step][same])
            cols.append(i[step:][same])
            vals.append(np.full(int(same.sum()), 1.0 / step, dtype=np.float32))
        trans = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
        )
        trans.sum_duplicates()
        # P(next = j | i) with add-one smoothing on the row total: rare items say little
        total = np.asarray(trans.sum(axis=1)).ravel()
        trans = sp.diags((1.0 / (total + 1.0)).astype(np.float32)) @ trans
        self.trans = sp.csr_matrix(trans, dtype=np.float32)
        self.latest = np.full((n_users, self.recent), -1, dtype=np.int64)
        ends = np.r_[np.flatnonzero(np.diff(u)) + 1, len(u)]
        starts = np.r_[0, ends[:-1]]
        for s, e in zip(starts, ends, strict=True):
            last = i[max(s, e - self.recent) : e][::-1]
            self.latest[u[s], : len(last)] = last
        return self

    def transform(
        self,
        users: np.ndarray,
        pair_user: np.ndarray,
        pair_item: np.ndarray,
        sim: sp.csr_matrix | None = None,
    ) -> dict[str, np.ndarray]:
        """Features of pairs; ``users`` are the block's user indices, ``pair_user`` rows in it.

        ``sim``: item neighbours ``sim[j, i]`` (j near i), for similarity to the latest items.
        """
        n_items = self.trans.shape[0]
        latest = self.latest[users] if len(self.latest) else np.full((len(users), 1), -1)
        weights = self.decay ** np.arange(latest.shape[1], dtype=np.float32)
        rows, cols = np.nonzero(latest >= 0)
        recent = sp.csr_matrix(
            (weights[cols], (rows, latest[rows, cols])), shape=(len(users), n_items)
        )
        first = latest[:, 0] >= 0
        last = sp.csr_matrix(
            (np.ones(int(first.sum()), np.float32), (np.flatnonzero(first), latest[first, 0])),
            shape=(len(users), n_items),
        )
        out = {
            "seq:trans_last": gather(last @ self.trans, pair_user, pair_item),
            "seq:trans_recent": gather(recent @ self.trans, pair_user, pair_item),
        }
        if sim is not None and sim.shape == self.trans.shape:
            out["seq:sim_recent"] = gather(recent @ sim, pair_user, pair_item)
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}

    def state(self) -> dict[str, np.ndarray]:
        t = self.trans
        return {"latest": self.latest, "trans_data": t.data, "trans_indices": t.indices,
                "trans_indptr": t.indptr, "trans_shape": np.asarray(t.shape),
                "params": np.asarray([self.recent, self.window, self.decay])}  # fmt: skip

    def set_state(self, state: dict[str, np.ndarray]) -> SequenceFeatures:
        recent, window, decay = state["params"]
        self.recent, self.window, self.decay = int(recent), int(window), float(decay)
        self.latest = state["latest"]
        shape = tuple(int(v) for v in state["trans_shape"])
        self.trans = sp.csr_matrix(
            (state["trans_data"], state["trans_indices"], state["trans_indptr"]), shape=shape
        )
        return self
