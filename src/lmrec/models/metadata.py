"""Metadata-only baseline: item-kNN over one-hot catalog features, no interaction signal.

Each item is a one-hot vector of its catalog metadata: one feature per genre-like token
(``genres``, ``class``, ``categories``...), per value of other categorical fields, and per
release-year bucket (decades by default). sim(i, j) is the cosine of two items' vectors; each
item keeps its ``k`` most similar items, and a user's score for j is the sum of sim(i, j)
over the items i in their history, as in `ItemKNN`. An item needs no interactions to get a
vector, so items held out whole (a cold-item split) are scored like any other: this is the
"what do genres and year alone buy" baseline for the text models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from lmrec.data.schema import TITLE_FIELDS, Dataset, FieldType, split_tokens
from lmrec.errors import ConfigError
from lmrec.models.base import ModelConfig, register
from lmrec.models.itemknn import ItemSimilarityModel

#: Genre-like fields of space-separated tokens, used by default (as in the evaluator's
#: ``CATEGORY_FIELDS``: ``class`` is RecBole's name for ML-100K genres).
TOKEN_FIELDS = ("genres", "class", "categories", "genre")
#: Fields holding a release year (RecBole's ML-100K calls it ``release_year``).
YEAR_FIELDS = ("year", "release_year")
#: Automatic selection skips a categorical field with more distinct values than this share
#: of the items: a value (almost) unique per item, such as a product code, links nothing.
MAX_DISTINCT_SHARE = 0.5
#: Feature matrices with at most this many cells (256 MB as float32) are multiplied dense
#: (BLAS): genres + decades are a few dozen columns, and a sparse product of such shared
#: features is nearly dense anyway. Wider ones (title words) stay sparse.
DENSE_CELLS = 1 << 26


class MetadataKNNConfig(ModelConfig):
    """Configuration of `MetadataKNN`."""

    k: int = Field(100, gt=0, description="Neighbours kept per item.")
    fields: list[str] | None = Field(
        None,
        description="Item fields to use (None: the genre-like, categorical and year fields).",
    )
    year_bucket: int = Field(10, gt=0, description="Years per release-year bucket (10: decades).")
    weighting: Literal["binary", "idf"] = Field(
        "binary", description="Feature weights: plain one-hot, or idf so rare values count more."
    )
    block_size: int = Field(512, gt=0, description="Items per block when computing similarities.")


def _field_kind(name: str, ftype: FieldType | None) -> Literal["year", "tokens", "value"]:
    """How a field becomes features: a year bucket, its tokens, or its whole value."""
    if name in YEAR_FIELDS:
        return "year"
    if name in TOKEN_FIELDS or ftype == FieldType.TOKEN_SEQ:
        return "tokens"
    return "value"


def auto_fields(items: pd.DataFrame, item_fields: Mapping[str, FieldType]) -> list[str]:
    """The fields used when none are configured, in table order.

    Genre-like token fields and year fields are taken when they hold a value; other text
    fields when they look categorical: some value is shared and at most
    `MAX_DISTINCT_SHARE` of the items have a distinct value. That leaves out free text
    (titles, descriptions: nearly one value per item), whatever type the field was given
    (`Dataset.build` infers ``token_seq`` for every text column), and numbers other than
    years, which are not categories.
    """
    chosen = []
    for name in items.columns:
        col = items[name]
        present = col[col.notna() & (col.astype(str).str.strip() != "")]
        ftype = item_fields.get(name)
        if present.empty or name in TITLE_FIELDS:
            continue
        if name in TOKEN_FIELDS or name in YEAR_FIELDS:
            chosen.append(str(name))
        elif ftype in (FieldType.TOKEN, FieldType.TOKEN_SEQ) or (
            ftype is None and not pd.api.types.is_numeric_dtype(col)
        ):
            distinct = present.astype(str).nunique()
            if distinct < len(present) and distinct <= MAX_DISTINCT_SHARE * len(items):
                chosen.append(str(name))
    return chosen


def _year_tokens(values: pd.Series, bucket: int) -> list[list[str]]:
    # The first 4-digit run covers 1995, 1995.0 and dates such as "01-Jan-1995".
    years = pd.to_numeric(values.astype(str).str.extract(r"(\d{4})")[0], errors="coerce")
    out: list[list[str]] = []
    for y in years.to_numpy(dtype=np.float64):
        if np.isnan(y):
            out.append([])
        else:
            lo = int(y) // bucket * bucket
            out.append([f"{lo}-{lo + bucket - 1}"])
    return out


def _value_tokens(values: pd.Series) -> list[list[str]]:
    out: list[list[str]] = []
    for v in values:
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        text = "" if missing else str(v).strip()
        out.append([text] if text else [])
    return out


def metadata_features(
    items: pd.DataFrame,
    item_fields: Mapping[str, FieldType],
    fields: Sequence[str] | None = None,
    year_bucket: int = 10,
) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """One-hot item x feature matrix of catalog metadata.

    Token fields give one feature per (lower-cased) space-separated token, year fields one per
    bucket of ``year_bucket`` years, other fields one per value. Features are named
    ``field=value`` so equal values of two fields stay apart.

    Args:
        items: Item table (rows in catalog order).
        item_fields: Type of each column (decides tokens vs whole values).
        fields: Columns to use; None picks them with `auto_fields`.
        year_bucket: Years per bucket for `YEAR_FIELDS`.

    Returns:
        The binary float32 CSR matrix, the feature names and the fields used.

    Raises:
        ConfigError: If a named field is missing, a field holds vectors, or no feature is
            found; the message lists the fields present.
    """
    present = [str(c) for c in items.columns]
    used = list(fields) if fields is not None else auto_fields(items, item_fields)
    missing = [f for f in used if f not in items.columns]
    if missing:
        raise ConfigError(f"meta-knn: fields {missing} are not in the item table {present}")
    vectors = [f for f in used if item_fields.get(f) == FieldType.FLOAT_SEQ]
    if vectors:
        raise ConfigError(f"meta-knn: fields {vectors} hold vectors, not categories")
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for name in used:
        kind = _field_kind(name, item_fields.get(name))
        if kind == "year":
            tokens = _year_tokens(items[name], year_bucket)
        elif kind == "tokens":
            tokens = [[t.lower() for t in ts] for ts in split_tokens(items[name])]
        else:
            tokens = _value_tokens(items[name])
        for r, ts in enumerate(tokens):
            for t in dict.fromkeys(ts):  # a repeated token is still one feature
                rows.append(r)
                cols.append(vocab.setdefault(f"{name}={t}", len(vocab)))
    if not vocab:
        how = f"fields {used} hold" if used else "no field was picked:"
        raise ConfigError(
            f"meta-knn: {how} no usable metadata (item table fields: {present}); "
            "set `fields` to genre-like, categorical or year columns"
        )
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(items), len(vocab)),
    )
    return matrix, list(vocab), used


def feature_similarity(
    features: sp.csr_matrix,
    neighbours: np.ndarray,
    k: int,
    block: int,
    dense_cells: int = DENSE_CELLS,
) -> sp.csr_matrix:
    """Item x item cosine similarities of feature rows, keeping the top ``k`` per column.

    Column j holds j's ``k`` most similar items among ``neighbours`` (the items that can
    contribute to a score), itself excluded. Computed for a block of targets at a time, each
    block as a (block x neighbours) array with the selection along its contiguous rows, so
    memory stays O(block * len(neighbours)) however large the catalog.

    Args:
        features: Item x feature matrix (any non-negative weights).
        neighbours: Item indices that may be kept as neighbours.
        k: Neighbours kept per item.
        block: Target items per block.
        dense_cells: Multiply with dense arrays when the feature matrix has at most this
            many cells, else with sparse ones.
    """
    n = features.shape[0]
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1), dtype=np.float64))
    unit = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms.ravel(), 1e-12)) @ features)
    unit = unit.astype(np.float32)
    dense = features.shape[0] * features.shape[1] <= dense_cells
    left: np.ndarray | sp.csr_matrix = unit.toarray() if dense else unit
    cand_t: np.ndarray | sp.csr_matrix = (
        np.ascontiguousarray(left[neighbours].T) if dense else sp.csr_matrix(unit[neighbours].T)
    )  # (features, m)
    # position of each item among the neighbours (-1 if not one), to drop self-similarity
    pos = np.full(n, -1, dtype=np.int64)
    pos[neighbours] = np.arange(len(neighbours))
    kk = min(k, len(neighbours))
    if kk <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows_out, cols_out, vals_out = [], [], []
    starts = range(0, n, block)
    for start in tqdm(starts, desc="meta-knn", disable=len(starts) < 4, leave=False):
        stop = min(start + block, n)
        prod = left[start:stop] @ cand_t
        sim = np.asarray(prod if dense else prod.toarray(), dtype=np.float32)  # (b, m)
        targets = np.arange(start, stop)
        self_pos = pos[targets]
        own = self_pos >= 0
        sim[np.flatnonzero(own), self_pos[own]] = 0.0
        # Select on the negated scores, in place: no second (b, m) copy, and numpy's
        # partition stays fast on rows that are mostly equal values (benchmarks/README.md).
        np.negative(sim, out=sim)
        top = np.argpartition(sim, kk - 1, axis=1)[:, :kk]
        vals = -np.take_along_axis(sim, top, axis=1)
        keep = vals > 0
        rows_out.append(neighbours[top[keep]])
        cols_out.append(np.broadcast_to(targets[:, None], top.shape)[keep])
        vals_out.append(vals[keep])
        del prod, sim, top, vals, keep  # free this block before the next is computed
    if not rows_out:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n),
        dtype=np.float32,
    )


def idf_weights(features: sp.csr_matrix) -> np.ndarray:
    """Smoothed idf per feature, ``log((1 + n) / (1 + df)) + 1`` (scikit-learn's form)."""
    n = features.shape[0]
    df = np.bincount(features.indices, minlength=features.shape[1]).astype(np.float64)
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)


@register
class MetadataKNN(ItemSimilarityModel):
    """Item-kNN over catalog metadata (genres, categories, release decade) only.

    Attributes:
        features: Item x feature matrix (rows in catalog order), after `fit`.
        feature_names: ``field=value`` name of each feature column.
        fields_used: The item fields the features came from.
        similarity: Item x item top-k cosine similarities.
    """

    name = "meta-knn"
    Config = MetadataKNNConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "k": [20, 50, 100, 200],
        "weighting": ["binary", "idf"],
    }
    config: MetadataKNNConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.features: sp.csr_matrix | None = None
        self.feature_names: list[str] = []
        self.fields_used: list[str] = []
        self.similarity: sp.csr_matrix | None = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        c = self.config
        features, names, used = metadata_features(
            dataset.items, dataset.item_fields, c.fields, c.year_bucket
        )
        self.features, self.feature_names, self.fields_used = features, names, used
        if c.weighting == "idf":
            features = sp.csr_matrix(features @ sp.diags(idf_weights(features)))
        # Only items someone interacted with can add to a score, so only they may fill
        # neighbour slots: a cold item's k slots then all go to items that carry signal.
        active = np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0)
        self.similarity = feature_similarity(features, active, c.k, c.block_size)

    def fitted_params(self) -> dict[str, Any]:
        """The fields the automatic selection picked (so a tuned config names them)."""
        return {"fields": list(self.fields_used)} if self.config.fields is None else {}

    def _state(self) -> dict[str, np.ndarray]:
        return {
            **self._similarity_state(),
            "feature_names": np.asarray(self.feature_names, dtype=str),
            "fields_used": np.asarray(self.fields_used, dtype=str),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_similarity_state(state)
        self.feature_names = [str(x) for x in state["feature_names"]]
        self.fields_used = [str(x) for x in state["fields_used"]]
