"""User interest vectors in the item-text space: pooled history, own text and typed requests."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, IdMap

Weighting = Literal["none", "rating", "centered"]


class InterestConfig(BaseModel):
    """How a user's history becomes one or several interest vectors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weighting: Weighting = Field(
        "rating", description="Per-item weight: none, rating, or rating minus the user's mean + 1."
    )
    recency_half_life: float | None = Field(
        None, gt=0, description="Halve an item's weight every this many later interactions."
    )
    interests: int = Field(1, ge=1, le=16, description="Interest centroids per user (k-means).")
    text_weight: float = Field(0.5, ge=0, description="Weight of the user's own text vector.")
    request_weight: float = Field(1.0, ge=0, description="Weight of a typed request vector.")


def history_weights(
    inter: pd.DataFrame, users: IdMap, items: IdMap, cfg: InterestConfig
) -> sp.csr_matrix:
    """User x item weight matrix from interactions (ratings and recency as configured).

    Repeated pairs keep their largest weight; interactions outside the maps are dropped.
    """
    rows = users.lookup(inter[USER].to_numpy())
    cols = items.lookup(inter[ITEM].to_numpy())
    keep = (rows >= 0) & (cols >= 0)
    w = np.ones(len(inter), dtype=np.float64)
    if cfg.weighting != "none" and RATING in inter.columns:
        r = inter[RATING].to_numpy(dtype=np.float64)
        if cfg.weighting == "rating":
            w = r / max(float(np.nanmax(r)), 1e-9)
        else:
            mean = inter.groupby(USER)[RATING].transform("mean").to_numpy(dtype=np.float64)
            w = np.maximum(r - mean + 1.0, 0.05)
    if cfg.recency_half_life is not None:
        order = inter[TIMESTAMP] if TIMESTAMP in inter.columns else pd.Series(np.arange(len(inter)))
        # age = how many of the user's interactions came later (stable on timestamp ties)
        tmp = pd.DataFrame({"u": inter[USER].to_numpy(), "t": order.to_numpy()})
        tmp = tmp.sort_values("t", kind="stable")
        age = tmp.groupby("u").cumcount(ascending=False).reindex(range(len(inter))).to_numpy()
        w = w * 0.5 ** (age / cfg.recency_half_life)
    m = sp.coo_matrix(
        (w[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(len(users), len(items))
    ).tocsr()
    m.sum_duplicates()  # repeated pairs add up: a re-watched item counts more
    return m


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis; zero vectors stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def pool(weights: sp.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """One normalised interest vector per user: the weighted mean of their item vectors."""
    return normalize(np.asarray(weights @ item_vectors, dtype=np.float32))


def multi_interest(
    weights: sp.csr_matrix, item_vectors: np.ndarray, k: int, iters: int = 8, seed: int = 0
) -> np.ndarray:
    """``(n_users, k, d)`` centroids from weighted spherical k-means over each user's items.

    Users with fewer than ``k`` items repeat their pooled vector in the empty slots.
    """
    n_users, d = weights.shape[0], item_vectors.shape[1]
    out = np.repeat(pool(weights, item_vectors)[:, None, :], k, axis=1)
    if k == 1:
        return out
    rng = np.random.default_rng(seed)
    for u in range(n_users):
        lo, hi = weights.indptr[u], weights.indptr[u + 1]
        if hi - lo <= k:
            continue
        x = item_vectors[weights.indices[lo:hi]]
        w = weights.data[lo:hi]
        cent = x[rng.choice(len(x), size=k, replace=False)]
        for _ in range(iters):
            assign = np.argmax(x @ cent.T, axis=1)
            for c in range(k):
                sel = assign == c
                if sel.any():
                    cent[c] = (w[sel, None] * x[sel]).sum(axis=0)
            cent = normalize(cent)
        out[u] = cent
    return out.reshape(n_users, k, d)


def combine(
    parts: list[tuple[np.ndarray | None, float]],
) -> np.ndarray:
    """Normalised weighted sum of the given ``(vectors, weight)`` parts (None parts skipped)."""
    present = [(v, w) for v, w in parts if v is not None and w > 0]
    if not present:
        raise ValueError("no interest signal: give history, text or a request")
    total = sum(w * normalize(v) for v, w in present)
    return normalize(np.asarray(total, dtype=np.float32))
