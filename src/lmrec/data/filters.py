"""Interaction filters: rating threshold, k-core and duplicate removal.

Each filter takes a `Dataset` and returns one with fewer interactions; the item and user
tables are kept whole, so the catalog (and thus every ID map) does not change.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset
from lmrec.errors import ConfigError, InputError


def _keep_rows(ds: Dataset, mask: np.ndarray) -> Dataset:
    """``ds`` with only the interactions where ``mask`` holds (input order kept)."""
    inter = ds.interactions.loc[mask].reset_index(drop=True)
    # `replace` rather than `with_interactions`: the rows are already normalised and the
    # catalog tables must stay the very same objects.
    return replace(ds, interactions=inter)


def filter_rating(ds: Dataset, threshold: float) -> Dataset:
    """Keep interactions rated at least ``threshold`` (RecBole's ``val_interval: [t,inf)``).

    Raises:
        InputError: The interactions have no rating column.
    """
    if not ds.has(RATING):
        raise InputError("filter_rating needs a rating column", column=RATING)
    return _keep_rows(ds, ds.interactions[RATING].to_numpy() >= threshold)


def kcore(ds: Dataset, user_k: int = 0, item_k: int = 0) -> Dataset:
    """Drop users with < ``user_k`` and items with < ``item_k`` interactions, until stable.

    Interactions are counted, not distinct pairs, as in RecBole's ``_filter_by_inter_num``
    (``user_inter_num_interval: [k,inf)``). Each round drops the users and the items below
    their threshold at once; dropping some can push others below it, hence the loop.
    """
    if user_k < 0 or item_k < 0:
        raise ConfigError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    users = pd.factorize(ds.interactions[USER])[0]
    items = pd.factorize(ds.interactions[ITEM])[0]
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_cnt = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        i_cnt = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        drop = keep & ((u_cnt[users] < user_k) | (i_cnt[items] < item_k))
        if not drop.any():
            break
        keep &= ~drop
    return _keep_rows(ds, keep)


def dedupe(ds: Dataset, keep: Literal["first", "last"] = "last") -> Dataset:
    """Keep one interaction per (user, item) pair: the last (or first) by timestamp.

    Ties in timestamp, and data without one, are resolved by file order (a stable sort).
    Kept rows stay in input order. RecBole's ``rm_dup_inter`` instead leaves the data sorted
    by time, after pandas' default (unstable) sort.
    """
    if keep not in ("first", "last"):
        raise ConfigError(f"keep must be 'first' or 'last', got {keep!r}")
    inter = ds.interactions
    n = len(inter)
    order = (
        np.argsort(inter[TIMESTAMP].to_numpy(), kind="stable")
        if ds.has(TIMESTAMP)
        else np.arange(n)
    )
    pairs = inter[[USER, ITEM]].iloc[order]
    dup_sorted = pairs.duplicated(keep=keep).to_numpy()
    dup = np.empty(n, dtype=bool)
    dup[order] = dup_sorted
    return _keep_rows(ds, ~dup)


__all__ = ["dedupe", "filter_rating", "kcore"]
