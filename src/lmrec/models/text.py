"""Zero-shot text retrieval: items and users embedded by a pretrained language model.

Items are embedded from their catalog text (`lmrec.data.item_text`); a user is the weighted
pool (or several k-means centroids) of their items' vectors; scores are cosine similarities.
Nothing is trained, so items added later are recommendable as soon as they are embedded, and a
user known only by text or one interaction can be served (`recommend_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.item_text import ItemTextConfig
from lmrec.data.schema import Dataset, IdMap
from lmrec.errors import InputError
from lmrec.models.base import ModelConfig, Recommender, register
from lmrec.models.catalog_text import (
    TextItems,
    grow_catalog,
    new_items_table,
    place_rows,
    ranked_row,
    similar_by_vectors,
)
from lmrec.models.interest import InterestConfig, combine, history_weights, multi_interest


class TextConfig(ModelConfig):
    """Configuration of `TextRecommender`."""

    encoder: str = Field("minilm", description="Encoder spec (see lmrec.encoders.load_encoder).")
    item_text: ItemTextConfig = Field(default_factory=ItemTextConfig, description="Item text.")
    interest: InterestConfig = Field(default_factory=InterestConfig, description="User pooling.")
    encode_batch_size: int = Field(64, gt=0, description="Texts per encoder batch.")


@register
class TextRecommender(TextItems, Recommender):
    """Cosine retrieval between pooled user history and item text embeddings."""

    name = "text"
    Config = TextConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "interest": [
            {"weighting": w, "recency_half_life": h, "interests": k}
            for w in ("none", "rating", "centered")
            for h in (None, 20.0)
            for k in (1, 3)
        ]
    }
    config: TextConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.item_vectors: np.ndarray | None = None
        self.user_vectors: np.ndarray | None = None  # (n_users, k, d)

    # -- Recommender ---------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        assert self.users is not None and self.items is not None
        self.item_vectors = self.embed_items(dataset)
        self._set_user_vectors(dataset.interactions, self.users, self.items)

    def _set_user_vectors(self, inter: pd.DataFrame, users: IdMap, items: IdMap) -> None:
        assert self.item_vectors is not None
        cfg = self.config.interest
        weights = history_weights(inter, users, items, cfg)
        self.user_vectors = multi_interest(weights, self.item_vectors, cfg.interests)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.user_vectors is not None and self.item_vectors is not None
        sims = self.user_vectors[user_idx] @ self.item_vectors.T  # (b, k, n_items)
        return np.asarray(sims.max(axis=1), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors is not None and self.user_vectors is not None
        return {"item_vectors": self.item_vectors, "user_vectors": self.user_vectors}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"]
        self.user_vectors = state["user_vectors"]

    # -- no retraining needed ------------------------------------------------------------------
    def add_items(self, items: pd.DataFrame) -> list[str]:
        """Embed and add (or replace) catalog items; they are recommendable at once.

        Args:
            items: Rows indexed by ``item_id`` (or with an ``item_id`` column) holding the
                same kind of fields as the catalog (title, genres, description...).

        Returns:
            The IDs added or replaced.
        """
        assert self.item_vectors is not None
        table = new_items_table(items)
        vectors = self.embed_table(table)
        grown = grow_catalog(self, table)
        self.item_vectors = place_rows(self.item_vectors, grown, vectors)
        return list(table.index)

    def recommend_for(
        self,
        history: Sequence[str] = (),
        text: str | None = None,
        request: str | None = None,
        k: int = 10,
        candidates: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Top-k for someone given only a history, their own text and/or a typed request.

        The history items are excluded. Returns ``item_id, rank, score``.
        """
        _, imap, _ = self._check()
        assert self.item_vectors is not None
        hist_idx = imap.index(history, "item") if history else np.empty(0, dtype=np.int64)
        enc = self.encoder() if (text or request) else None
        cfg = self.config.interest
        hist_vec = (
            self.item_vectors[hist_idx].mean(axis=0, keepdims=True) if len(hist_idx) else None
        )
        text_vec = enc.encode_queries([text]) if enc is not None and text else None
        req_vec = enc.encode_queries([request]) if enc is not None and request else None
        try:
            query = combine(
                [(hist_vec, 1.0), (text_vec, cfg.text_weight), (req_vec, cfg.request_weight)]
            )
        except ValueError as e:
            raise InputError(str(e)) from None
        return ranked_row(imap, query @ self.item_vectors.T, k, hist_idx, candidates)

    def similar_items(self, item_id: str, k: int = 10) -> pd.DataFrame:
        """Items whose text is nearest to ``item_id``'s (the item itself excluded)."""
        _, imap, _ = self._check()
        assert self.item_vectors is not None
        return similar_by_vectors(imap, self.item_vectors, item_id, k)
