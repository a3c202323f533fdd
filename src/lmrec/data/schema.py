"""Core data schema: ID maps and the `Dataset` (interactions, item table, user table).

External IDs are strings and are the only IDs users ever see; dense integer indices are an
internal detail of models and the evaluator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.errors import InputError, UnknownIdError

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
EVENT = "event"
#: Interaction columns with a fixed meaning; any other columns are kept as extras.
CORE_COLUMNS = (USER, ITEM, RATING, TIMESTAMP, EVENT)


class FieldType(StrEnum):
    """Type of a catalog or user field, named as in RecBole's atomic-file headers."""

    TOKEN = "token"  # one categorical value, e.g. gender
    TOKEN_SEQ = "token_seq"  # space-separated values or free text, e.g. genres, title
    FLOAT = "float"  # one number, e.g. price
    FLOAT_SEQ = "float_seq"  # a vector, e.g. an image embedding


class IdMap:
    """A bijection between external string IDs and dense indices ``0..n-1``."""

    def __init__(self, ids: Iterable[object]) -> None:
        arr = np.asarray([str(i) for i in ids], dtype=object)
        self._index = pd.Index(arr, dtype=object)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()].tolist()
            raise InputError(f"duplicate ids: {dup[:5]}")
        self.ids: np.ndarray = arr

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    def __hash__(self) -> int:  # IdMap is used as a value, not a dict key
        return id(self)

    def lookup(self, ids: Iterable[object]) -> np.ndarray:
        """Indices of ``ids``, with -1 for unknown ones."""
        keys = pd.Index(np.asarray([str(i) for i in ids], dtype=object), dtype=object)
        return np.asarray(self._index.get_indexer(keys), dtype=np.int64)

    def index(self, ids: Iterable[object], kind: str = "id") -> np.ndarray:
        """Indices of ``ids``; raises `UnknownIdError` naming any unknown ones."""
        keys = [str(i) for i in ids]
        idx = self.lookup(keys)
        if (idx < 0).any():
            raise UnknownIdError(kind, [k for k, i in zip(keys, idx, strict=True) if i < 0])
        return idx

    def to_ids(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """External IDs of dense indices."""
        return self.ids[np.asarray(idx, dtype=np.int64)]


def _empty_table(id_col: str) -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([], dtype=object, name=id_col))


@dataclass(frozen=True)
class Dataset:
    """Interactions plus item and user tables, keyed by external string IDs.

    Build one with `Dataset.build`, which validates and normalises the tables. The item and
    user tables always cover every ID in the interactions, so they define the ID universe.

    Attributes:
        interactions: Columns ``user_id``, ``item_id`` (str) and optionally ``rating``,
            ``timestamp`` (float) and ``event`` (str); other columns are kept.
        items: Item table indexed by ``item_id`` (catalog order is index order).
        users: User table indexed by ``user_id``.
        item_fields: Type of each item-table column.
        user_fields: Type of each user-table column.
        kg: Knowledge-graph triples (``head_id``, ``relation_id``, ``tail_id``), if any.
        links: Item-to-entity links (``item_id``, ``entity_id``), if any.
        name: A short name used in reports and exported file names.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    item_fields: Mapping[str, FieldType] = field(default_factory=dict)
    user_fields: Mapping[str, FieldType] = field(default_factory=dict)
    kg: pd.DataFrame | None = None
    links: pd.DataFrame | None = None
    name: str = "dataset"

    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        *,
        item_fields: Mapping[str, FieldType] | None = None,
        user_fields: Mapping[str, FieldType] | None = None,
        kg: pd.DataFrame | None = None,
        links: pd.DataFrame | None = None,
        name: str = "dataset",
    ) -> Dataset:
        """Validate and normalise tables into a `Dataset`.

        ``items``/``users`` may carry their ID either as index or as an ``item_id``/``user_id``
        column. IDs seen in interactions but missing from a table are appended to it.
        """
        inter = normalize_interactions(interactions)
        items_t = _normalize_table(items, ITEM, inter[ITEM])
        users_t = _normalize_table(users, USER, inter[USER])
        return cls(
            interactions=inter,
            items=items_t,
            users=users_t,
            item_fields=dict(item_fields or _infer_fields(items_t)),
            user_fields=dict(user_fields or _infer_fields(users_t)),
            kg=kg,
            links=links,
            name=name,
        )

    # -- ID universe ---------------------------------------------------------------------
    @property
    def item_ids(self) -> np.ndarray:
        """All catalog item IDs, in catalog order."""
        return np.asarray(self.items.index, dtype=object)

    @property
    def user_ids(self) -> np.ndarray:
        """All user IDs, in user-table order."""
        return np.asarray(self.users.index, dtype=object)

    def item_map(self) -> IdMap:
        """`IdMap` over all catalog items."""
        return IdMap(self.item_ids)

    def user_map(self) -> IdMap:
        """`IdMap` over all users."""
        return IdMap(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def has(self, column: str) -> bool:
        """Whether the interactions have ``column``."""
        return column in self.interactions.columns

    # -- derived views -------------------------------------------------------------------
    def with_interactions(self, interactions: pd.DataFrame, name: str | None = None) -> Dataset:
        """The same catalog and users with other interactions (e.g. one split)."""
        inter = normalize_interactions(interactions)
        items_t = _normalize_table(self.items, ITEM, inter[ITEM])
        users_t = _normalize_table(self.users, USER, inter[USER])
        return replace(
            self, interactions=inter, items=items_t, users=users_t, name=name or self.name
        )

    def matrix(
        self,
        users: IdMap | None = None,
        items: IdMap | None = None,
        value: Literal["binary", "rating", "count"] = "binary",
    ) -> sp.csr_matrix:
        """User x item sparse matrix of the interactions.

        Args:
            users: Row ID map (default: all users).
            items: Column ID map (default: all catalog items).
            value: ``binary`` (1 per pair), ``rating`` (last rating per pair) or ``count``.

        Interactions whose user or item is not in the maps are dropped.
        """
        users = users or self.user_map()
        items = items or self.item_map()
        return interaction_matrix(self.interactions, users, items, value)


def interaction_matrix(
    inter: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    value: Literal["binary", "rating", "count"] = "binary",
) -> sp.csr_matrix:
    """User x item CSR matrix from an interactions frame (see `Dataset.matrix`)."""
    rows = users.lookup(inter[USER].to_numpy())
    cols = items.lookup(inter[ITEM].to_numpy())
    keep = (rows >= 0) & (cols >= 0)
    rows, cols = rows[keep], cols[keep]
    shape = (len(users), len(items))
    if value == "rating":
        if RATING not in inter.columns:
            raise InputError("value='rating' needs a rating column", column=RATING)
        vals = inter[RATING].to_numpy(dtype=np.float32)[keep]
        # Keep the last rating of a repeated pair: build COO, dedupe by last occurrence.
        key = rows.astype(np.int64) * shape[1] + cols
        _, last = np.unique(key[::-1], return_index=True)
        pick = len(key) - 1 - last
        m = sp.csr_matrix((vals[pick], (rows[pick], cols[pick])), shape=shape, dtype=np.float32)
    else:
        ones = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((ones, (rows, cols)), shape=shape, dtype=np.float32)
        m.sum_duplicates()
        if value == "binary":
            m.data[:] = 1.0
    m.sort_indices()
    return m


def normalize_interactions(df: pd.DataFrame) -> pd.DataFrame:
    """Check and canonicalise an interactions frame (string IDs, float rating/timestamp)."""
    missing = [c for c in (USER, ITEM) if c not in df.columns]
    if missing:
        raise InputError(f"missing required column(s) {missing}; found {list(df.columns)}")
    out = df.copy()
    for col in (USER, ITEM):
        if out[col].isna().any():
            row = int(np.flatnonzero(out[col].isna().to_numpy())[0])
            raise InputError("empty ID", line=row + 2, column=col)
        out[col] = out[col].astype(str).astype(object)
    for col in (RATING, TIMESTAMP):
        if col in out.columns:
            out[col] = _to_float(out[col], col)
    if EVENT in out.columns:
        out[EVENT] = out[EVENT].astype(str).astype(object)
    return out.reset_index(drop=True)


def _to_float(s: pd.Series, col: str) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() | ~np.isfinite(num.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"not a finite number: {s.iloc[row]!r}", line=row + 2, column=col)
    return num.astype(np.float64)


def _normalize_table(table: pd.DataFrame | None, id_col: str, seen_ids: pd.Series) -> pd.DataFrame:
    if table is None:
        table = _empty_table(id_col)
    elif id_col in table.columns:
        table = table.set_index(id_col)
    else:
        table = table.copy()
    table.index = pd.Index(table.index.astype(str), dtype=object, name=id_col)
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()].tolist()
        raise InputError(f"duplicate {id_col} in table: {dup[:5]}", column=id_col)
    extra = pd.unique(seen_ids.to_numpy())
    extra = extra[~pd.Index(extra, dtype=object).isin(table.index)]
    if len(extra):
        table = table.reindex(table.index.append(pd.Index(extra, dtype=object)))
        # pandas 3 may infer an Arrow string index here; keep one index dtype everywhere
        table.index = pd.Index(table.index, dtype=object, name=id_col)
    return table


def _infer_fields(table: pd.DataFrame) -> dict[str, FieldType]:
    fields: dict[str, FieldType] = {}
    for col in table.columns:
        s = table[col]
        if pd.api.types.is_numeric_dtype(s):
            fields[col] = FieldType.FLOAT
        elif len(s.dropna()) and isinstance(s.dropna().iloc[0], list | tuple | np.ndarray):
            fields[col] = FieldType.FLOAT_SEQ
        else:
            fields[col] = FieldType.TOKEN_SEQ
    return fields


#: Item-table columns tried, in order, as the display title.
TITLE_FIELDS = ("title", "movie_title", "name")


def item_titles(items: pd.DataFrame | None) -> pd.Series | None:
    """The item table's title column (first of `TITLE_FIELDS` present), if any."""
    if items is None:
        return None
    for name in TITLE_FIELDS:
        if name in items.columns:
            return items[name]
    return None


def split_tokens(values: pd.Series, sep: str = " ") -> list[list[str]]:
    """Split a ``token_seq`` column into token lists (missing values give [])."""
    return [str(v).split(sep) if isinstance(v, str) and v else [] for v in values]


__all__ = [
    "CORE_COLUMNS",
    "EVENT",
    "ITEM",
    "RATING",
    "TIMESTAMP",
    "USER",
    "Dataset",
    "FieldType",
    "IdMap",
    "interaction_matrix",
    "item_titles",
    "normalize_interactions",
    "split_tokens",
]
