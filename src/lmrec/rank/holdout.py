"""Two-stage training parts: candidate models see part A, the ranker learns from part B."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, TIMESTAMP, USER, Dataset
from lmrec.errors import ConfigError

Holdout = Literal["latest", "random", "items"]


def holdout_parts(
    dataset: Dataset, mode: Holdout, share: float, folds: int = 1, seed: int = 0
) -> list[tuple[Dataset, pd.DataFrame]]:
    """``folds`` pairs (A, B): sources are fitted on A, B's interactions label the ranker.

    Args:
        dataset: The training data.
        mode: ``latest``: each user's latest ``share`` of interactions (fold k takes the k-th
            latest slice, and A is what came before it); ``random``: a random ``share`` of each
            user's interactions (disjoint across folds); ``items``: every interaction of a
            random ``share`` of the items, so the ranker learns how new items behave.
        share: Fraction held out per fold.
        folds: Number of (A, B) pairs.
        seed: Random seed.

    Users with a single interaction keep it in A.
    """
    if not 0 < share * folds <= 1:
        raise ConfigError(f"holdout share x folds must be in (0, 1], got {share} x {folds}")
    inter = dataset.interactions.reset_index(drop=True)
    n = len(inter)
    rng = np.random.default_rng(seed)
    fold = np.full(n, -1, dtype=np.int64)  # -1: always in A
    if mode == "items":
        items = inter[ITEM].unique()
        perm = rng.permutation(len(items))
        cut = np.floor(np.arange(1, folds + 1) * share * len(items)).astype(int)
        item_fold = np.full(len(items), -1, dtype=np.int64)
        start = 0
        for k, end in enumerate(cut):
            item_fold[perm[start:end]] = k
            start = end
        fold = pd.Series(item_fold, index=items).reindex(inter[ITEM]).to_numpy()
    elif mode in ("latest", "random"):
        if mode == "latest":
            if TIMESTAMP not in inter or inter[TIMESTAMP].isna().all():
                raise ConfigError("holdout 'latest' needs timestamps; use 'random'")
            order = np.lexsort((-np.arange(n), -inter[TIMESTAMP].to_numpy()))  # newest first
        else:
            order = rng.permutation(n)
        users = inter[USER].to_numpy()[order]
        codes = pd.factorize(users)[0]
        pos = pd.Series(codes).groupby(codes, sort=False).cumcount().to_numpy()
        size = np.bincount(codes)[codes]
        per_fold = np.where(size >= 2, np.maximum(np.round(size * share), 1), 0).astype(int)
        slot = np.where(per_fold > 0, pos // np.maximum(per_fold, 1), -1)
        slot[(slot >= folds) | (pos >= size - 1)] = -1  # keep at least one interaction in A
        fold[order] = slot
    else:
        raise ConfigError(f"holdout must be latest, random or items, not '{mode}'")
    parts = []
    for k in range(folds):
        # latest: A is only what came before slice k
        a_rows = (fold > k) | (fold == -1) if mode == "latest" else fold != k
        b_rows = fold == k
        if not b_rows.any():
            raise ConfigError("the holdout is empty; raise holdout_share")
        a = dataset.with_interactions(inter.loc[a_rows].reset_index(drop=True))
        parts.append((a, inter.loc[b_rows].reset_index(drop=True)))
    return parts
