"""Knowledge-graph facts of items: relation groups, item-side detection, sequel series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from lmrec.data.schema import ITEM
from lmrec.errors import InputError

KG_COLUMNS = ("head_id", "relation_id", "tail_id")
LINK_COLUMNS = (ITEM, "entity_id")
#: Relation-name keywords and the group they map to; the first match wins, so "company"
#: comes before "producer" (``production_companies``) and "cinematographer" first of all.
KG_KEYWORDS = (
    ("cinematograph", "cinematographer"), ("compan", "company"), ("sequel", "sequel"),
    ("prequel", "sequel"), ("actor", "actor"), ("starring", "actor"), ("direct", "director"),
    ("produc", "producer"), ("writ", "writer"), ("author", "writer"), ("genre", "genre_kg"),
    ("language", "language"), ("country", "country"), ("award", "award"),
    ("rating", "rating"), ("subject", "subject"),
)  # fmt: skip


def is_missing(value: Any) -> bool:
    """None or NaN (an absent table cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def kg_group(relation: str) -> str:
    """The readable group of a relation name (both of its directions give the same one)."""
    low = relation.lower()
    for key, group in KG_KEYWORDS:
        if key in low:
            return group
    return low.rsplit(".", 1)[-1] or low


def _check_columns(frame: pd.DataFrame, needed: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{what} must be a DataFrame, got {type(frame).__name__}")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}; found {list(frame.columns)}")
    return frame[list(needed)].dropna().astype(str)


def kg_facts(
    item_index: pd.Index,
    kg: pd.DataFrame,
    links: pd.DataFrame | None,
    titles: pd.Series | None,
    taken: set[str],
) -> pd.DataFrame:
    """Frame ``row, group, key, value`` of KG attributes (``taken``: item-table groups)."""
    kg = _check_columns(kg, KG_COLUMNS, "kg")
    if links is None:  # no link table: the KG names items by their own IDs
        links = pd.DataFrame({ITEM: item_index.to_numpy(), "entity_id": item_index.to_numpy()})
    links = _check_columns(links, LINK_COLUMNS, "links")
    rows = item_index.get_indexer(pd.Index(links[ITEM], dtype=object))
    ent = pd.DataFrame({"entity": links["entity_id"].to_numpy(), "row": rows})
    ent = ent[ent["row"] >= 0].drop_duplicates()  # links to items outside item_ids are ignored
    cols = ["row", "group", "key", "value"]
    if ent.empty or kg.empty:
        return pd.DataFrame(columns=cols)
    rel_group = {r: kg_group(r) for r in kg["relation_id"].unique()}
    groups = kg["relation_id"].map(rel_group)
    groups = groups.where(~groups.isin(taken) | (groups == "sequel"), groups + "_kg")
    linked = set(ent["entity"])
    head_in = kg["head_id"].isin(linked)
    tail_in = kg["tail_id"].isin(linked)
    # The item end of each relation: whichever end is more often a linked entity.
    share = pd.DataFrame({"r": kg["relation_id"], "h": head_in, "t": tail_in}).groupby("r").mean()
    head_side = kg["relation_id"].map(share["h"] >= share["t"]).astype(bool)
    seq = groups == "sequel"
    pick_h = ~seq & head_side & head_in
    pick_t = ~seq & ~head_side & tail_in
    ends = ["entity", "key"]
    facts = pd.concat(
        [
            kg.loc[pick_h, ["head_id", "tail_id"]].set_axis(ends, axis=1).assign(group=groups),
            kg.loc[pick_t, ["tail_id", "head_id"]].set_axis(ends, axis=1).assign(group=groups),
            _series_facts(kg[seq], ent),
        ],
        ignore_index=True,
    )
    facts = facts.merge(ent, on="entity")[["row", "group", "key"]].drop_duplicates()
    # A related entity that is itself a titled item reads better by its title.
    label = {}
    if titles is not None:
        first_row = ent.sort_values("row").drop_duplicates("entity")
        label = {
            e: str(titles.iloc[r])
            for e, r in zip(first_row["entity"], first_row["row"], strict=True)
            if not is_missing(titles.iloc[r])
        }
    facts["value"] = [label.get(k, k) for k in facts["key"]]
    is_seq = facts["group"] == "sequel"
    facts.loc[is_seq, "value"] = facts.loc[is_seq, "value"] + " (series)"
    return facts[cols]


def _series_facts(seq: pd.DataFrame, ent: pd.DataFrame) -> pd.DataFrame:
    """Sequel/prequel links joined into series: ``entity, group, key`` (key: first film)."""
    if seq.empty:
        return pd.DataFrame(columns=["entity", "group", "key"])
    nodes = pd.Index(pd.unique(np.concatenate([seq["head_id"], seq["tail_id"]])), dtype=object)
    h = nodes.get_indexer(pd.Index(seq["head_id"], dtype=object))
    t = nodes.get_indexer(pd.Index(seq["tail_id"], dtype=object))
    graph = sp.coo_matrix((np.ones(len(h)), (h, t)), shape=(len(nodes), len(nodes)))
    _, comp = connected_components(graph, directed=False)
    members = pd.DataFrame({"entity": nodes.to_numpy(), "comp": comp})
    first = members.merge(ent, on="entity").sort_values("row").drop_duplicates("comp")
    key = members["comp"].map(dict(zip(first["comp"], first["entity"], strict=True)))
    out = pd.DataFrame({"entity": members["entity"], "group": "sequel", "key": key})
    return out.dropna()
