"""Knowledge-graph item-kNN: items are similar when they share KG entities and attributes.

Each item is the binary vector of its `ItemAttributes` (actors, directors, writers, ... from
the knowledge graph; genres and decades from the item table) restricted to the configured
groups, optionally idf-weighted so that a shared rare entity (a director) counts more than a
shared common one (English language). sim(i, j) is the cosine of two items' vectors; each
item keeps its ``k`` most similar items among those with interactions, and a user's score
for j is the sum of sim(i, j) over the items i in their history, as in `ItemKNN`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError, InputError
from lmrec.models.base import ModelConfig, register
from lmrec.models.itemknn import ItemSimilarityModel
from lmrec.models.metadata import feature_similarity, idf_weights
from lmrec.rank.attributes import ItemAttributes

#: Subfolder of the model directory holding the item attributes (read by ``lmrec profile``).
ATTRIBUTES_DIR = "attributes"


class KGKNNConfig(ModelConfig):
    """Configuration of `KGKNN`."""

    k: int = Field(50, gt=0, description="Neighbours kept per item.")
    groups: list[str] | None = Field(
        None,
        min_length=1,
        description="Attribute groups to use (None: the KG groups, else all groups).",
    )
    fields: list[str] | None = Field(
        None, description="Item-table columns used as attributes (None: genre-like and year ones)."
    )
    idf: bool = Field(True, description="Weight attributes by idf so rare shared ones count more.")
    min_items: int = Field(2, ge=1, description="Drop attributes held by fewer items than this.")
    block_size: int = Field(512, gt=0, description="Items per block when computing similarities.")


@register
class KGKNN(ItemSimilarityModel):
    """Item-kNN over knowledge-graph entities (actors, directors...) and item attributes.

    Attributes:
        attributes: All item attributes (every group), after `fit` or `load`.
        groups_used: The groups the similarity was computed from.
        similarity: Item x item top-k cosine similarities.
    """

    name = "kg-knn"
    Config = KGKNNConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "k": [20, 50, 100, 200],
        "idf": [True, False],
    }
    config: KGKNNConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.attributes: ItemAttributes | None = None
        self.groups_used: list[str] = []
        self.similarity: sp.csr_matrix | None = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        c = self.config
        missing = [f for f in c.fields or [] if f not in dataset.items.columns]
        if missing:
            raise ConfigError(
                f"kg-knn: fields {missing} are not in the item table {list(dataset.items.columns)}"
            )
        attrs = ItemAttributes.build(
            dataset.item_ids,
            dataset.items,
            dataset.kg,
            dataset.links,
            fields=c.fields,
            min_items=c.min_items,
            item_fields=dataset.item_fields,
        )
        if attrs.n_attributes == 0:
            fields = list(dataset.items.columns)
            source = (
                "no knowledge graph"
                if dataset.kg is None
                else "a knowledge graph that gives none (do the links match the item IDs?)"
            )
            raise ConfigError(
                f"kg-knn needs item attributes shared by >= {c.min_items} items; dataset "
                f"'{dataset.name}' has {source}, and its item fields {fields} give none "
                "(set `fields` to categorical columns)"
            )
        if c.groups is not None:
            groups = list(c.groups)
        else:
            groups = attrs.kg_groups() or attrs.group_names()
        try:
            cols = attrs.columns(groups)
        except InputError as e:
            raise ConfigError(f"kg-knn: {e}") from None
        self.attributes, self.groups_used = attrs, groups
        features = sp.csr_matrix(attrs.matrix[:, cols])
        if c.idf:
            features = sp.csr_matrix(features @ sp.diags(idf_weights(features)))
        # Only items someone interacted with can add to a score, so only they fill the slots.
        active = np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0)
        self.similarity = feature_similarity(features, active, c.k, c.block_size)

    def fitted_params(self) -> dict[str, Any]:
        """The groups the default picked (so a tuned config names them)."""
        return {"groups": list(self.groups_used)} if self.config.groups is None else {}

    def _state(self) -> dict[str, np.ndarray]:
        return {
            **self._similarity_state(),
            "groups_used": np.asarray(self.groups_used, dtype=str),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_similarity_state(state)
        self.groups_used = [str(g) for g in state["groups_used"]]

    def _save_files(self, out: Path) -> None:
        if self.attributes is not None:
            self.attributes.save(out / ATTRIBUTES_DIR)

    def _load_files(self, src: Path) -> None:
        folder = src / ATTRIBUTES_DIR
        self.attributes = ItemAttributes.load(folder) if folder.is_dir() else None
