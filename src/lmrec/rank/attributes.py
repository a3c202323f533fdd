"""Readable item attributes from the catalog and the knowledge graph, and user affinities.

An `ItemAttributes` is a binary item x attribute matrix. Attributes come in groups:

* from the item table: ``genre`` (tokens of genre-like fields: ``genres``, ``class``...),
  ``decade`` (from ``year``/``release_year``), and one group per other categorical field;
* from the knowledge graph: one group per kind of relation, with the two directions of a
  relation collapsed into one (``film.film.directed_by`` and ``film.director.film`` both give
  ``director``). The related entity is the attribute value (``director: m.0abc``); linked
  sequels and prequels are joined into series (``sequel: <first film of the series>``).

Which end of a triple is the item is decided per relation: the end that is more often a
linked entity. So ``m.04ctbw8 film.producer.film m.0bln8`` gives the film ``m.0bln8`` the
attribute ``producer: m.04ctbw8``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.data.schema import ITEM, FieldType, item_titles
from lmrec.errors import InputError
from lmrec.rank.kg_facts import KG_KEYWORDS, is_missing, kg_facts

#: Item-table genre tokens that say nothing (ML-100K tags two films "unknown").
PLACEHOLDER_TOKENS = frozenset({"unknown", "(no", "genres", "listed)"})
#: Dense cells per block of user profiles in `ItemAttributes.pair_affinity` (64 MB float32).
AFFINITY_CELLS = 1 << 24
ARRAYS_FILE = "attributes.npz"
META_FILE = "attributes.json"


def _field_group(name: str) -> str:
    from lmrec.models.metadata import TOKEN_FIELDS, YEAR_FIELDS

    if name in YEAR_FIELDS:
        return "decade"
    if name in TOKEN_FIELDS:
        return "category" if name == "categories" else "genre"
    return name


def _decade(value: Any) -> str | None:
    # The first 4-digit run covers 1995, "1995.0" and dates such as "01-Jan-1995".
    text = "" if value is None else str(value)
    digits = next((text[i : i + 4] for i in range(len(text) - 3) if text[i : i + 4].isdigit()), "")
    return f"{int(digits) // 10 * 10}s" if digits else None


def _table_facts(
    items: pd.DataFrame, fields: Sequence[str], item_fields: Mapping[str, FieldType]
) -> list[tuple[int, str, str, str]]:
    """(row, group, key, value) per item-table attribute of each item."""
    from lmrec.models.metadata import TOKEN_FIELDS

    facts: list[tuple[int, str, str, str]] = []
    for name in fields:
        group = _field_group(name)
        tokens = name in TOKEN_FIELDS or item_fields.get(name) == FieldType.TOKEN_SEQ
        for row, raw in enumerate(items[name].tolist()):
            if is_missing(raw):
                continue
            if group == "decade":
                values = [d] if (d := _decade(raw)) else []
            elif tokens:
                values = [t for t in str(raw).split() if t.lower() not in PLACEHOLDER_TOKENS]
            else:
                values = [str(raw).strip()] if str(raw).strip() else []
            facts.extend((row, group, v, v) for v in dict.fromkeys(values))
    return facts


@dataclass
class ItemAttributes:
    """Sparse item x attribute matrix with readable labels and groups.

    Attributes:
        item_ids: External item IDs, in row order.
        matrix: ``(n_items, n_attrs)`` binary float32 CSR.
        labels: ``"group: value"`` per attribute, e.g. ``"genre: Comedy"``.
        groups: Group per attribute (``genre``, ``decade``, ``actor``, ``director``...).
        values: The value part of each label (``Comedy``).
        kg_group_names: The groups that came from the knowledge graph.
    """

    item_ids: np.ndarray
    matrix: sp.csr_matrix
    labels: np.ndarray
    groups: np.ndarray
    values: np.ndarray
    kg_group_names: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        item_ids: Sequence[str] | np.ndarray,
        items: pd.DataFrame | None,
        kg: pd.DataFrame | None = None,
        links: pd.DataFrame | None = None,
        fields: Sequence[str] | None = None,
        min_items: int = 2,
        item_fields: Mapping[str, FieldType] | None = None,
    ) -> ItemAttributes:
        """Attributes of ``item_ids`` from the item table and the KG.

        Args:
            item_ids: The items, in row order.
            items: Item table indexed by item ID (or with an ``item_id`` column), or None.
            kg: Triples ``head_id, relation_id, tail_id``, or None.
            links: ``item_id, entity_id`` pairs; None matches KG entities to item IDs.
            fields: Item-table columns to use (None: genre-like, year and categorical ones).
            min_items: Attributes held by fewer items are dropped.
            item_fields: Column types (decide token lists vs whole values); inferred if None.

        Raises:
            InputError: On duplicate item IDs, missing fields or KG/link columns.
        """
        if min_items < 1:
            raise InputError(f"min_items must be >= 1, got {min_items}")
        index = pd.Index([str(i) for i in item_ids], dtype=object)
        if not index.is_unique:
            raise InputError(f"duplicate item ids: {index[index.duplicated()].tolist()[:5]}")
        # Imported here: lmrec.models imports this module (the fusion ranker's features).
        from lmrec.models.metadata import auto_fields

        facts: list[pd.DataFrame] = []
        titles = None
        if items is not None:
            table = items.set_index(ITEM) if ITEM in items.columns else items
            table = table.set_axis(table.index.astype(str)).reindex(index)
            types = dict(item_fields or {})
            used = list(fields) if fields is not None else auto_fields(table, types)
            missing = [f for f in used if f not in table.columns]
            if missing:
                raise InputError(f"fields {missing} are not in the item table {list(table)}")
            rows = _table_facts(table, used, types)
            facts.append(pd.DataFrame(rows, columns=["row", "group", "key", "value"]))
            titles = item_titles(table)
        elif fields:
            raise InputError(f"fields {list(fields)} given but there is no item table")
        table_groups = set(pd.concat(facts)["group"]) if facts else set()
        kg_names: list[str] = []
        if kg is not None:
            kg_frame = kg_facts(index, kg, links, titles, table_groups)
            facts.append(kg_frame)
            kg_names = [str(g) for g in pd.unique(kg_frame["group"])]
        return cls._from_facts(index, facts, min_items, kg_names)

    @classmethod
    def _from_facts(
        cls, index: pd.Index, facts: list[pd.DataFrame], min_items: int, kg_names: list[str]
    ) -> ItemAttributes:
        cols = ["row", "group", "key", "value"]
        frame = pd.concat([f for f in facts if len(f)] or [pd.DataFrame(columns=cols)])
        frame = frame.drop_duplicates(["row", "group", "key"])
        df = frame.groupby(["group", "key"], sort=False)["row"].transform("size")
        frame = frame[df >= min_items]
        # Group order: genre-like, decade, other item fields, then KG groups (keyword order).
        kg_rank = {g: i for i, (_, g) in enumerate(KG_KEYWORDS)}
        seen = list(pd.unique(frame["group"])) if len(frame) else []
        first = ("genre", "category", "decade")
        table_part = sorted(
            (g for g in seen if g not in kg_names),
            key=lambda g: first.index(g) if g in first else len(first),
        )
        kg_part = sorted(
            (g for g in seen if g in kg_names), key=lambda g: (kg_rank.get(g, len(kg_rank)), g)
        )
        order = {g: i for i, g in enumerate(table_part + kg_part)}
        attrs = (
            frame.groupby(["group", "key"], sort=False)
            .agg(value=("value", "first"), n=("row", "size"))
            .reset_index()
        )
        attrs["order"] = attrs["group"].map(order)
        attrs = attrs.sort_values(["order", "n", "key"], ascending=[True, False, True])
        attrs = attrs.reset_index(drop=True)
        col = pd.MultiIndex.from_frame(attrs[["group", "key"]]).get_indexer(
            pd.MultiIndex.from_frame(frame[["group", "key"]])
        )
        matrix = sp.csr_matrix(
            (np.ones(len(frame), dtype=np.float32), (frame["row"].to_numpy(int), col)),
            shape=(len(index), len(attrs)),
        )
        matrix.sum_duplicates()
        matrix.sort_indices()
        groups = attrs["group"].astype(str).to_numpy()
        values = attrs["value"].astype(str).to_numpy()
        return cls(
            item_ids=index.to_numpy().astype(str),
            matrix=matrix,
            labels=np.array([f"{g}: {v}" for g, v in zip(groups, values, strict=True)], dtype=str),
            groups=groups.astype(str),
            values=values.astype(str),
            kg_group_names=tuple(kg_part),
        )

    # -- description ---------------------------------------------------------------------
    @property
    def n_attributes(self) -> int:
        return int(self.matrix.shape[1])

    def group_names(self) -> list[str]:
        """Groups in column order (item-table groups first, then KG groups)."""
        # cached: the ranker asks for every candidate block (pd.unique over object labels)
        cached = self.__dict__.get("_group_names")
        if cached is None:
            cached = [str(g) for g in pd.unique(self.groups)] if len(self.groups) else []
            self.__dict__["_group_names"] = cached
        return list(cached)

    def kg_groups(self) -> list[str]:
        """The groups that came from the knowledge graph."""
        return [g for g in self.group_names() if g in self.kg_group_names]

    def columns(self, groups: Sequence[str] | None = None) -> np.ndarray:
        """Attribute indices of ``groups`` (all when None).

        Raises:
            InputError: If a group is unknown; the message lists the known ones.
        """
        if groups is None:
            return np.arange(self.n_attributes)
        unknown = [g for g in groups if g not in set(self.group_names())]
        if unknown:
            raise InputError(f"unknown attribute group(s) {unknown}; have {self.group_names()}")
        return np.flatnonzero(np.isin(self.groups, list(groups)))

    def catalog_rate(self) -> np.ndarray:
        """Share of all items holding each attribute (float64)."""
        df = np.bincount(self.matrix.indices, minlength=self.n_attributes)
        return df / max(self.matrix.shape[0], 1)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``attributes.npz`` (matrix, IDs) and ``attributes.json`` (names) into a folder."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        m = self.matrix
        np.savez(
            out / ARRAYS_FILE,
            item_ids=self.item_ids.astype(str),
            indptr=m.indptr,
            indices=m.indices,
            shape=np.asarray(m.shape, dtype=np.int64),
        )
        names = {k: getattr(self, k).tolist() for k in ("labels", "groups", "values")}
        meta = {**names, "kg_groups": list(self.kg_group_names)}
        (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> ItemAttributes:
        """Read what `save` wrote; `InputError` if the folder holds none."""
        src = Path(directory)
        if not (src / ARRAYS_FILE).is_file() or not (src / META_FILE).is_file():
            raise InputError(f"no saved item attributes ({ARRAYS_FILE}, {META_FILE})", path=src)
        meta = json.loads((src / META_FILE).read_text())
        with np.load(src / ARRAYS_FILE, allow_pickle=False) as z:
            shape = tuple(int(s) for s in z["shape"])
            indices = z["indices"]
            matrix = sp.csr_matrix(
                (np.ones(len(indices), dtype=np.float32), indices, z["indptr"]), shape=shape
            )
            item_ids = z["item_ids"].astype(str)
        return cls(
            item_ids=item_ids,
            matrix=matrix,
            labels=np.asarray(meta["labels"], dtype=str),
            groups=np.asarray(meta["groups"], dtype=str),
            values=np.asarray(meta["values"], dtype=str),
            kg_group_names=tuple(meta["kg_groups"]),
        )

    # -- user affinities -----------------------------------------------------------------
    def user_profiles(
        self, history: sp.csr_matrix, weights: sp.csr_matrix | None = None
    ) -> sp.csr_matrix:
        """Users x attributes lift: how much more often a user's items hold an attribute.

        ``w[u, a] = share[u, a] / rate[a]`` where ``share[u, a] = sum_i h[u, i] x[i, a] /
        sum_i h[u, i]`` is the (weighted) share of the user's history holding ``a``, and
        ``rate[a]`` the share of all items holding it. 1 means "as often as the catalog", 0
        "never" (stored as no entry, so the result stays sparse); users without history
        get an all-zero row.

        Args:
            history: Users x items matrix (nonzero = in the history), columns in row order.
            weights: Optional non-negative users x items weights (e.g. ratings) of the
                history entries; entries outside ``history`` are ignored.

        Raises:
            InputError: On a shape mismatch or negative weights.
        """
        n_items = self.matrix.shape[0]
        if history.shape[1] != n_items:
            raise InputError(f"history has {history.shape[1]} item columns, attributes {n_items}")
        h = sp.csr_matrix(history, dtype=np.float32, copy=True)
        h.eliminate_zeros()  # a stored 0 is not in the history
        h.data[:] = 1.0
        if weights is not None:
            if weights.shape != history.shape:
                raise InputError(f"weights shape {weights.shape} != history {history.shape}")
            if weights.nnz and weights.min() < 0:
                raise InputError("history weights must be non-negative")
            h = sp.csr_matrix(h.multiply(sp.csr_matrix(weights, dtype=np.float32)))
        total = np.asarray(h.sum(axis=1), dtype=np.float64).ravel()
        rate = self.catalog_rate()
        inv_total = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
        inv_rate = np.divide(1.0, rate, out=np.zeros_like(rate), where=rate > 0)
        counts = sp.csr_matrix(h @ self.matrix)
        lift = (
            sp.diags(inv_total.astype(np.float32)) @ counts @ sp.diags(inv_rate.astype(np.float32))
        )
        out = sp.csr_matrix(lift, dtype=np.float32)
        out.eliminate_zeros()
        return out

    def pair_affinity(
        self,
        profiles: sp.csr_matrix,
        user_rows: np.ndarray,
        item_idx: np.ndarray,
        groups: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per group, the mean profile weight of a user over an item's attributes.

        For pair ``j``: ``mean_{a in attrs(item_idx[j]) in group} profiles[user_rows[j], a]``,
        0 when the item has no attribute in the group. Vectorised: the user rows of a block
        of users are made dense, and all the pairs' (item, attribute) entries are looked up
        at once.

        Args:
            profiles: Users x attributes weights (e.g. from `user_profiles`).
            user_rows: Row of ``profiles`` per pair.
            item_idx: Row of ``matrix`` per pair, aligned with ``user_rows``.
            groups: Groups to compute (None: all).

        Returns:
            ``{group: float32 array of len(pairs)}``.

        Raises:
            InputError: On misaligned pairs, out-of-range rows or unknown groups.
        """
        users = np.asarray(user_rows, dtype=np.int64).ravel()
        items = np.asarray(item_idx, dtype=np.int64).ravel()
        if len(users) != len(items):
            raise InputError(f"{len(users)} user rows but {len(items)} item indices")
        if profiles.shape[1] != self.n_attributes:
            raise InputError(f"profiles have {profiles.shape[1]} columns, not {self.n_attributes}")
        for name, idx, size in (
            ("user", users, profiles.shape[0]),
            ("item", items, len(self.item_ids)),
        ):
            if len(idx) and (idx.min() < 0 or idx.max() >= size):
                raise InputError(f"{name} index out of range [0, {size})")
        names = self.group_names() if groups is None else list(groups)
        cached = self.__dict__.get("_all_codes") if groups is None else None
        if cached is None:
            cols = self.columns(names)
            code = np.full(self.n_attributes, -1, dtype=np.int64)
            code[cols] = pd.Index(names).get_indexer(self.groups[cols])
            if groups is None:
                self.__dict__["_all_codes"] = (cols, code)
        else:
            cols, code = cached
        n_pairs, n_groups = len(users), len(names)
        table = np.zeros((n_pairs, n_groups), dtype=np.float32)
        if n_pairs and n_groups:
            whole = len(cols) == self.n_attributes
            sub = self.matrix if whole else sp.csr_matrix(self.matrix[:, cols])
            prof = sp.csr_matrix(profiles if whole else profiles[:, cols], dtype=np.float32)
            sub_code = code[cols]
            uniq, inv = np.unique(users, return_inverse=True)
            # Pairs in user order: each lookup then lands in the row just read (cache).
            order = np.argsort(inv, kind="stable")
            inv_sorted = inv[order]
            step = max(1, AFFINITY_CELLS // max(len(cols), 1))
            for start in range(0, len(uniq), step):  # blocks of users, not pairs
                stop = min(start + step, len(uniq))
                lo, hi = np.searchsorted(inv_sorted, [start, stop])
                sel = order[lo:hi]
                dense = prof[uniq[start:stop]].toarray().ravel()
                rows_of = sub[items[sel]]
                pos = np.repeat(np.arange(len(sel)), np.diff(rows_of.indptr))
                flat = (inv_sorted[lo:hi][pos] - start) * len(cols) + rows_of.indices
                key = pos * n_groups + sub_code[rows_of.indices]
                size = len(sel) * n_groups
                sums = np.bincount(key, weights=dense[flat], minlength=size).astype(np.float64)
                counts = np.bincount(key, minlength=size)
                mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
                table[sel] = mean.reshape(len(sel), n_groups)
        return {g: np.ascontiguousarray(table[:, j]) for j, g in enumerate(names)}

    def group_sizes(self) -> dict[str, int]:
        """Number of attributes per group."""
        return {g: int((self.groups == g).sum()) for g in self.group_names()}
