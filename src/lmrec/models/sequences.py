"""Per-user chronological item sequences, for sequential recommenders.

A user's sequence is their interactions sorted by timestamp, stably: interactions that share a
timestamp keep their order in the file (as RecBole's ``Interaction.sort`` and lmrec's
`lmrec.data.splits.split_loo`). Without a timestamp column, file order is the sequence.
Sequences are held as CSR-like pairs ``(indptr, items)`` over dense user and item indices,
and turned into fixed-width padded arrays for a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, TIMESTAMP, USER, Dataset, IdMap


def _lookup(ids: IdMap, column: pd.Series) -> np.ndarray:
    """Dense indices (-1 if unknown) of a column of string IDs (`Dataset` IDs are strings)."""
    index = pd.Index(ids.ids, dtype=object)
    return np.asarray(index.get_indexer(column.to_numpy(dtype=object)), dtype=np.int64)


def chronological(dataset: Dataset, users: IdMap, items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Every user's items in time order.

    Args:
        dataset: Interactions; rows whose user or item is not in the maps are dropped.
        users: Row ID map.
        items: Item ID map.

    Returns:
        ``(indptr, seq)``: user ``u``'s items, oldest first, are ``seq[indptr[u]:indptr[u+1]]``
        (``int64`` dense item indices; repeated interactions stay).
    """
    inter = dataset.interactions
    u, i = _lookup(users, inter[USER]), _lookup(items, inter[ITEM])
    keep = (u >= 0) & (i >= 0)
    u, i = u[keep], i[keep]
    if TIMESTAMP in inter.columns:
        ts = inter[TIMESTAMP].to_numpy(dtype=np.float64)[keep]
        order = np.lexsort((np.arange(len(u)), ts, u))  # user, then time, then file order
    else:
        order = np.argsort(u, kind="stable")
    counts = np.bincount(u, minlength=len(users))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, i[order].astype(np.int64)


def last_items(indptr: np.ndarray, seq: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """Each user's last ``max_len`` items, left-padded with ``pad`` (most recent last).

    Returns:
        ``(n_users, max_len)`` int64 array.
    """
    n_users = len(indptr) - 1
    out = np.full((n_users, max_len), pad, dtype=np.int64)
    take = np.minimum(np.diff(indptr), max_len)
    rows = np.repeat(np.arange(n_users), take)
    j = np.arange(len(rows)) - np.repeat(np.cumsum(take) - take, take)  # 0..take-1, oldest first
    out[rows, max_len - take[rows] + j] = seq[indptr[rows + 1] - take[rows] + j]
    return out


def user_sequences(
    dataset: Dataset, users: IdMap, items: IdMap, max_len: int, pad: int | None = None
) -> np.ndarray:
    """``(n_users, max_len)`` int64 matrix of each user's most recent items.

    Rows follow ``users``; items are dense indices of ``items``, oldest left, most recent in
    the last column; shorter histories are left-padded with ``pad`` (default ``len(items)``,
    one past the last item, so an embedding table of ``len(items) + 1`` rows can hold it).
    """
    indptr, seq = chronological(dataset, users, items)
    return last_items(indptr, seq, max_len, len(items) if pad is None else pad)


def training_windows(
    indptr: np.ndarray, seq: np.ndarray, max_len: int, pad: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training examples: windows of inputs with the item that follows each one.

    Each user's sequence ``x_1..x_n`` gives the pairs ``(x_t -> x_{t+1})``. Windows of at
    most ``max_len`` consecutive inputs end at the last pair and then every ``stride`` pairs
    earlier; a window's target is set only on the last ``stride`` positions (all of them in a
    user's earliest window) and ``pad`` elsewhere. So every pair is trained once per pass, with
    at least ``max_len - stride`` earlier items in view when the history has them; with
    ``stride == max_len`` (the default) the windows do not overlap.

    Returns:
        ``(inputs, targets)``, both ``(n_windows, max_len)`` int64, left-padded with ``pad``.
    """
    step = max_len if stride is None else stride
    if not 1 <= step <= max_len:
        raise ValueError(f"stride must be in [1, max_len={max_len}], got {stride}")
    n_pairs = np.maximum(np.diff(indptr) - 1, 0)
    per_user = -(-n_pairs // step)  # ceil
    w_user = np.repeat(np.arange(len(n_pairs)), per_user)
    # k-th window of a user (k = 0 is the most recent) ends at pair n_pairs - k * step
    k = np.arange(len(w_user)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    end = n_pairs[w_user] - k * step
    start = np.maximum(end - max_len, 0)
    length = end - start
    w = np.repeat(np.arange(len(w_user)), length)
    j = np.arange(len(w)) - np.repeat(np.cumsum(length) - length, length)  # 0..length-1
    pair = start[w] + j  # pair p predicts item p + 1 from item p
    col = max_len - length[w] + j
    base = indptr[w_user[w]]
    inputs = np.full((len(w_user), max_len), pad, dtype=np.int64)
    targets = np.full((len(w_user), max_len), pad, dtype=np.int64)
    inputs[w, col] = seq[base + pair]
    trained = pair >= end[w] - step
    targets[w[trained], col[trained]] = seq[base + pair + 1][trained]
    return inputs, targets


__all__ = ["chronological", "last_items", "training_windows", "user_sequences"]
