"""What every text-based model shares: its encoder, item embedding and catalog growth.

`TextItems` gives a model ``encoder()`` and ``embed_items()`` from its config's ``encoder``,
``item_text`` and ``encode_batch_size`` fields. `grow_catalog` is the bookkeeping of
``add_items``: new IDs are appended to the item map, the seen matrix gains empty columns and
the item table takes the new rows; the caller then writes the new items' vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.data.item_text import item_texts
from lmrec.data.schema import ITEM, USER, Dataset, IdMap
from lmrec.errors import InputError


class TextItems:
    """Mixin for models whose config has ``encoder``, ``item_text``, ``encode_batch_size``."""

    config: Any

    def encoder(self) -> Any:
        """The (process-wide cached) encoder named in the config."""
        from lmrec.encoders import load_encoder

        return load_encoder(self.config.encoder)

    def embed_items(self, dataset: Dataset) -> np.ndarray:
        """Encoder vectors of every catalog item of ``dataset`` (catalog order)."""
        enc = self.encoder()
        texts = item_texts(dataset, self.config.item_text, truncate=enc.truncate)
        vecs = enc.encode_items(texts, batch_size=self.config.encode_batch_size)
        return np.asarray(vecs, dtype=np.float32)

    def embed_table(self, table: pd.DataFrame) -> np.ndarray:
        """Vectors of the rows of an item table (indexed by ``item_id``)."""
        return self.embed_items(Dataset.build(pd.DataFrame({USER: [], ITEM: []}), table))


def new_items_table(items: pd.DataFrame) -> pd.DataFrame:
    """Items given to ``add_items`` as a table indexed by string ``item_id``.

    Raises:
        InputError: If an ID appears twice.
    """
    table = items.set_index(ITEM) if ITEM in items.columns else items.copy()
    table.index = pd.Index(table.index.astype(str), dtype=object, name=ITEM)
    if table.index.has_duplicates:
        raise InputError(f"duplicate item ids: {table.index[table.index.duplicated()].tolist()}")
    return table


@dataclass(frozen=True)
class CatalogGrowth:
    """Where the rows of an ``add_items`` table went.

    Attributes:
        idx: Each row's item index after the update (old items keep theirs).
        old: Rows that replaced an existing item.
        n_before: Catalog size before the update; new items follow in row order.
    """

    idx: np.ndarray
    old: np.ndarray
    n_before: int


def grow_catalog(model: Any, table: pd.DataFrame) -> CatalogGrowth:
    """Append ``table``'s new IDs to ``model``'s item map, seen matrix and item table."""
    umap, imap, seen = model._check()
    idx = imap.lookup(table.index)
    old = idx >= 0
    new_ids = table.index[~old]
    n_before = len(imap)
    catalog = model.item_table if model.item_table is not None else pd.DataFrame(index=imap.ids)
    if len(new_ids):
        imap = IdMap(np.concatenate([imap.ids, np.asarray(new_ids, dtype=object)]))
        model.items = imap
        model.seen = sp.csr_matrix(sp.hstack([seen, sp.csr_matrix((len(umap), len(new_ids)))]))
        idx = idx.copy()
        idx[~old] = np.arange(n_before, n_before + len(new_ids))
    merged = pd.concat([catalog.drop(index=table.index, errors="ignore"), table])
    model.item_table = merged.reindex(imap.ids)
    return CatalogGrowth(idx=idx, old=old, n_before=n_before)


def place_rows(array: np.ndarray, growth: CatalogGrowth, values: np.ndarray) -> np.ndarray:
    """``array`` (one row per item) grown to the new catalog, ``values`` at the table's rows."""
    n_new = int((~growth.old).sum())
    if n_new:
        array = np.concatenate([array, np.zeros((n_new, *array.shape[1:]), dtype=array.dtype)])
    array[growth.idx] = values
    return array


def ranked_row(
    imap: IdMap,
    scores: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    candidates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The top-k of one ``(1, n_items)`` score row as ``item_id, rank, score``.

    ``exclude`` item indices and items outside ``candidates`` never come out.
    """
    from lmrec.models.topk import topk

    scores = np.array(scores, dtype=np.float32)
    if exclude is not None:
        scores[:, exclude] = -np.inf
    if candidates is not None:
        allowed = np.zeros(len(imap), dtype=bool)
        allowed[imap.index(candidates, "item")] = True
        scores[:, ~allowed] = -np.inf
    idx, vals = topk(scores, k)
    ok = idx[0] >= 0
    return pd.DataFrame(
        {ITEM: imap.to_ids(idx[0][ok]), "rank": np.arange(1, ok.sum() + 1), "score": vals[0][ok]}
    )


def similar_by_vectors(imap: IdMap, vectors: np.ndarray, item_id: str, k: int) -> pd.DataFrame:
    """Items whose (normalised) ``vectors`` are nearest to ``item_id``'s, itself excluded."""
    i = int(imap.index([item_id], "item")[0])
    return ranked_row(imap, vectors[i : i + 1] @ vectors.T, k, exclude=np.array([i]))
