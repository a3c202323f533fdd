"""Early stopping on a validation metric for iteratively trained models."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from lmrec.evaluate.metrics import hits_matrix, per_user_metrics
from lmrec.models.base import Recommender
from lmrec.models.topk import keep_columns, user_batch_size


def validation_ndcg(model: Recommender, relevant: sp.csr_matrix, k: int = 10) -> float:
    """Mean NDCG@k over users with validation items (training items excluded).

    While fitting with ``valid_candidates``, only those items are ranked (and relevant).
    """
    cand = model.valid_candidates
    relevant = keep_columns(relevant, cand)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    total = 0.0
    step = user_batch_size(relevant.shape[1])
    for start in range(0, len(users), step):
        batch = users[start : start + step]
        idx, _ = model.topk_idx(batch, k, candidates=cand)
        rel = relevant[batch]
        hits = hits_matrix(idx, rel)
        total += float(per_user_metrics(hits, np.diff(rel.indptr), [k])[f"ndcg@{k}"].sum())
    return total / max(len(users), 1)


@dataclass
class EarlyStopping:
    """Tracks the best validation score; ``patience`` checks without improvement stop training.

    Attributes:
        patience: Checks without improvement before stopping.
        best: Best score so far.
        best_step: Epoch count at the best score.
        history: ``(epoch, score)`` per check.
    """

    patience: int = 3
    best: float = -np.inf
    best_step: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    _bad: int = 0

    def update(self, step: int, score: float) -> tuple[bool, bool]:
        """Record a check; returns ``(improved, should_stop)``."""
        self.history.append((step, score))
        if score > self.best:
            self.best, self.best_step, self._bad = score, step, 0
            return True, False
        self._bad += 1
        return False, self._bad >= self.patience
