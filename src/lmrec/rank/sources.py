"""Candidate generation from several recommenders, merged with source tags and budgets.

Each source is any registered `Recommender`. For a block of users every source scores the
whole catalog once; its ``budget`` best unseen items join the merged candidate set, and its
score and rank of *every* candidate (not only the ones it retrieved) become ranker features.
A source with ``budget = 0`` only contributes features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, create_model, get_model_class
from lmrec.models.topk import gather, mask_rows, topk

#: Feature group of each built-in model, used by ablations (``features.groups``).
DEFAULT_GROUPS = {
    "ease": "cf",
    "als": "cf",
    "bpr": "cf",
    "itemknn": "cf",
    "text": "text",
    "two-tower": "text",
    "sasrec": "sequence",
    "text-seq": "sequence",
    "kg-knn": "kg",
    "meta-knn": "profile",
    "pop": "popularity",
    "biased-mf": "rating",
}


class SourceConfig(BaseModel):
    """One candidate source: a registered model, its config and its candidate budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="Registered model name (see `lmrec models`).")
    budget: int = Field(50, ge=0, description="Candidates it adds per user (0: features only).")
    name: str | None = Field(None, description="Label in features and reports (default: model).")
    group: str | None = Field(None, description="Feature group for ablations (default by model).")
    config: dict[str, Any] = Field(default_factory=dict, description="The model's config.")

    @property
    def label(self) -> str:
        return self.name or self.model

    @property
    def feature_group(self) -> str:
        return self.group or DEFAULT_GROUPS.get(self.model, "other")


@dataclass
class CandidateBlock:
    """Candidates of a block of users, as aligned (user, item) pairs grouped by user.

    Attributes:
        users: Dense user indices of the block.
        pair_user: Row in ``users`` of each pair (pairs of one user are contiguous).
        pair_item: Dense item index of each pair.
        scores: Source label -> raw scores ``(len(users), n_items)``, seen items at -inf.
        retrieved: Source label -> bool per pair, whether that source retrieved it.
    """

    users: np.ndarray
    pair_user: np.ndarray
    pair_item: np.ndarray
    scores: dict[str, np.ndarray]
    retrieved: dict[str, np.ndarray] = field(default_factory=dict)

    def group_sizes(self) -> np.ndarray:
        """Pairs per user, in block order (LightGBM's ``group``)."""
        return np.bincount(self.pair_user, minlength=len(self.users))


class CandidateSources:
    """Fits the source models and produces merged candidates with per-source scores."""

    def __init__(self, sources: Sequence[SourceConfig]) -> None:
        if not sources:
            raise ConfigError("fusion needs at least one candidate source")
        labels = [s.label for s in sources]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"candidate source names must be unique, got {labels}")
        if not any(s.budget > 0 for s in sources):
            raise ConfigError("at least one candidate source needs budget > 0")
        for s in sources:
            get_model_class(s.model)  # fail on a bad name before any fitting
        self.sources = list(sources)
        self.models: dict[str, Recommender] = {}

    def fit(
        self, dataset: Dataset, valid: Dataset | None = None, desc: str = "fit sources"
    ) -> CandidateSources:
        """Fit every source on ``dataset`` (``valid`` drives their early stopping)."""
        self.models = {}
        for s in tqdm(self.sources, desc=desc, leave=False):
            self.models[s.label] = create_model(s.model, **s.config).fit(dataset, valid=valid)
        return self

    def fitted_configs(self) -> list[SourceConfig]:
        """The sources with what early stopping learned folded into their configs."""
        return [
            s.model_copy(update={"config": {**s.config, **self.models[s.label].fitted_params()}})
            for s in self.sources
        ]

    def score_block(
        self, user_idx: np.ndarray, exclude: sp.csr_matrix | None = None
    ) -> dict[str, np.ndarray]:
        """Every source's scores for ``user_idx``; seen and ``exclude`` items set to -inf."""
        out = {}
        for label, model in self.models.items():
            scores = model.score_idx(user_idx).astype(np.float32, copy=False)
            scores = np.nan_to_num(scores, nan=-np.inf, posinf=float(np.finfo(np.float32).max))
            seen = model.seen
            assert seen is not None
            mask_rows(scores, sp.csr_matrix(seen[user_idx]))
            mask_rows(scores, exclude)
            out[label] = scores
        return out

    def candidates(
        self,
        user_idx: np.ndarray,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
        budget_scale: float = 1.0,
    ) -> CandidateBlock:
        """Merged candidates of a block of users.

        Args:
            user_idx: Dense user indices.
            exclude: Extra items to drop per user (rows aligned with ``user_idx``).
            allowed: Only these item indices may be candidates (e.g. a shelf).
            budget_scale: Multiplies every budget (e.g. to measure recall at larger sets).
        """
        scores = self.score_block(user_idx, exclude)
        n_items = next(iter(scores.values())).shape[1]
        if allowed is not None:
            keep = np.zeros(n_items, dtype=bool)
            keep[allowed] = True
            for s in scores.values():
                s[:, ~keep] = -np.inf
        picked = np.zeros((len(user_idx), n_items), dtype=bool)
        for src in self.sources:
            budget = round(src.budget * budget_scale)
            if budget <= 0:
                continue
            idx, _ = topk(scores[src.label], budget)
            rows, cols = np.nonzero(idx >= 0)
            picked[rows, idx[rows, cols]] = True
        pair_user, pair_item = np.nonzero(picked)
        return self.block_for_pairs(user_idx, pair_user, pair_item, scores)

    def block_for_pairs(
        self,
        user_idx: np.ndarray,
        pair_user: np.ndarray,
        pair_item: np.ndarray,
        scores: dict[str, np.ndarray] | None = None,
    ) -> CandidateBlock:
        """A block for given pairs (e.g. rating prediction for known pairs)."""
        scores = scores if scores is not None else self.score_block(user_idx)
        block = CandidateBlock(
            users=np.asarray(user_idx, dtype=np.int64),
            pair_user=np.asarray(pair_user, dtype=np.int64),
            pair_item=np.asarray(pair_item, dtype=np.int64),
            scores=scores,
        )
        for src in self.sources:
            s = scores[src.label]
            if src.budget <= 0:
                block.retrieved[src.label] = np.zeros(len(pair_item), dtype=bool)
                continue
            # retrieved <=> strictly fewer than `budget` items score higher
            kth = -np.partition(-s, min(src.budget, s.shape[1]) - 1, axis=1)[
                :, min(src.budget, s.shape[1]) - 1
            ]
            val = s[block.pair_user, block.pair_item]
            block.retrieved[src.label] = np.isfinite(val) & (val >= kth[block.pair_user])
        return block


def candidate_recall(
    sources: CandidateSources,
    users: np.ndarray,
    relevant: sp.csr_matrix,
    exclude: sp.csr_matrix | None = None,
    batch: int = 256,
) -> dict[str, float]:
    """Recall of the merged candidate set (and of each source alone) over ``users``.

    Recall is the share of each user's relevant items that are candidates, averaged over users
    with at least one relevant item; ``size`` is the mean number of candidates per user.
    """
    labels = [s.label for s in sources.sources if s.budget > 0]
    per_user: dict[str, list[np.ndarray]] = {k: [] for k in ["merged", *labels]}
    sizes = []
    for start in range(0, len(users), batch):
        u = users[start : start + batch]
        block = sources.candidates(u, exclude[u] if exclude is not None else None)
        rel = relevant[u]
        n_rel = np.diff(rel.indptr).astype(np.float64)
        hit = gather(rel, block.pair_user, block.pair_item) > 0
        sizes.append(block.group_sizes())
        per_user["merged"].append(np.bincount(block.pair_user[hit], minlength=len(u)) / n_rel)
        for label in labels:
            h = hit & block.retrieved[label]
            per_user[label].append(np.bincount(block.pair_user[h], minlength=len(u)) / n_rel)
    out = {f"recall_{k}": float(np.mean(np.concatenate(v))) for k, v in per_user.items()}
    out["size"] = float(np.mean(np.concatenate(sizes)))
    return out
