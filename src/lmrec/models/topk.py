"""Vectorised top-k selection over a block of scores, with exclusions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Largest score block (users x items) materialised at once, in float32 cells (~256 MB).
MAX_BLOCK_CELLS = 64_000_000


def user_batch_size(n_items: int, max_cells: int = MAX_BLOCK_CELLS) -> int:
    """How many users to score at once so one dense block stays under ``max_cells``."""
    return max(1, min(4096, max_cells // max(n_items, 1)))


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix | None) -> None:
    """Set ``scores[i, j] = -inf`` wherever ``exclude[i, j]`` is stored (in place)."""
    if exclude is None or exclude.nnz == 0:
        return
    coo = exclude.tocoo()
    scores[coo.row, coo.col] = -np.inf


def keep_columns(matrix: sp.csr_matrix, columns: np.ndarray | None) -> sp.csr_matrix:
    """``matrix`` with only the entries in ``columns`` (e.g. relevant items among candidates)."""
    if columns is None:
        return matrix
    keep = np.zeros(matrix.shape[1], dtype=np.float32)
    keep[columns] = 1.0
    out = sp.csr_matrix(matrix @ sp.diags(keep))
    out.eliminate_zeros()
    return out


def _first_ties(
    block: np.ndarray, thr: np.ndarray, need: np.ndarray, chunk: int = 2048
) -> np.ndarray:
    """Mask of the first ``need[i]`` columns equal to ``thr[i]`` in each row of ``block``.

    Scans column chunks and stops once every row is served, so rows tied on a common value
    (e.g. thousands of zeros) cost one chunk, not the whole row.
    """
    keep = np.zeros(block.shape, dtype=bool)
    remaining = need.astype(np.int64).copy()
    for start in range(0, block.shape[1], chunk):
        left = np.flatnonzero(remaining > 0)
        if len(left) == 0:
            break
        sub = block[left, start : start + chunk] == thr[left, None]
        r, c = np.nonzero(sub)
        rank = np.arange(len(r)) - np.searchsorted(r, r)
        ok = rank < remaining[left][r]
        keep[left[r[ok]], start + c[ok]] = True
        remaining[left] -= np.bincount(r[ok], minlength=len(left))
    return keep


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` best scores per row, best first.

    Equal scores are ordered by column index, so results are deterministic. Entries that are
    ``-inf`` (excluded) never come out: their slots hold index -1 and value ``-inf``.
    """
    n_rows, n = scores.shape
    k = min(k, n)
    out_idx = np.full((n_rows, max(k, 0)), -1, dtype=np.int64)
    out_val = np.full((n_rows, max(k, 0)), -np.inf, dtype=scores.dtype)
    if k <= 0 or n_rows == 0:
        return out_idx, out_val
    # argpartition is robust across score shapes (np.partition's quickselect degrades ~10x
    # on mostly-zero rows); it may pick any of several items tied at the k-th value, so rows
    # with such ties are redone below to keep the lowest tied columns.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    above = (scores > kth[:, None]).sum(axis=1)
    tied = (scores == kth[:, None]).sum(axis=1)
    redo = np.flatnonzero((above + tied > k) & ~np.isneginf(kth))
    rows = np.repeat(np.arange(n_rows), k)
    cols = part.ravel()
    if len(redo):
        block, thr = scores[redo], kth[redo]
        winners = (block > thr[:, None]) | _first_ties(block, thr, k - above[redo])
        r, c = np.nonzero(winners)
        keep_rows = np.ones(n_rows, dtype=bool)
        keep_rows[redo] = False
        sel = keep_rows[rows]
        rows = np.concatenate([rows[sel], redo[r]])
        cols = np.concatenate([cols[sel], c])
    vals = scores[rows, cols]
    finite = ~np.isneginf(vals)
    rows, cols, vals = rows[finite], cols[finite], vals[finite]
    order = np.lexsort((cols, -vals, rows))  # by row, then score descending, then column
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = rank < k
    out_idx[rows[keep], rank[keep]] = cols[keep]
    out_val[rows[keep], rank[keep]] = vals[keep]
    return out_idx, out_val


def gather(matrix: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[j], cols[j]]`` for aligned index arrays, as a dense 1-D float array."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(sp.csr_matrix(matrix)[rows, cols]).ravel()
