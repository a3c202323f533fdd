"""Item text: the catalog fields (and knowledge-graph facts) an encoder reads, as one string.

The default renders ``Title. Year: 1995. Genres: Animation, Comedy. Description...``: each
present field becomes one labelled sentence and empty fields are left out, so sparse catalogs
do not produce "nan" or dangling labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.schema import TITLE_FIELDS, Dataset, FieldType

#: Fields tried, in this order, when no field list is configured (after the title).
DEFAULT_FIELDS = ("year", "genres", "categories", "description", "features", "store", "tags")
#: Fields whose space-separated tokens are listed with commas (underscores become spaces).
LIST_FIELDS = ("genres", "categories", "tags", "class")


class ItemTextConfig(BaseModel):
    """How an item's text is built from its catalog row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] | None = Field(
        None, description="Item fields in order (default: title, then DEFAULT_FIELDS present)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Label per field, e.g. {'year': 'Released'}."
    )
    kg_relations: list[str] | None = Field(
        None, description="KG relations to add as facts (None: none; needs entity names)."
    )
    max_facts: int = Field(10, ge=0, description="Most KG facts per item.")


def _label(field: str, cfg: ItemTextConfig) -> str:
    return cfg.labels.get(field, field.replace("_", " ").capitalize())


def _render_value(field: str, value: object, ftype: FieldType | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, list | tuple | np.ndarray):
        return "" if ftype == FieldType.FLOAT_SEQ else ", ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if field in LIST_FIELDS:
        return ", ".join(t.replace("_", " ") for t in text.split())
    return text


def text_fields(dataset: Dataset, cfg: ItemTextConfig) -> list[str]:
    """The item fields that will be rendered, in order."""
    cols = list(dataset.items.columns)
    if cfg.fields is not None:
        missing = [f for f in cfg.fields if f not in cols]
        if missing:
            from lmrec.errors import ConfigError

            raise ConfigError(f"item text fields {missing} are not in the item table {cols}")
        return list(cfg.fields)
    title = [f for f in TITLE_FIELDS if f in cols][:1]
    return title + [f for f in DEFAULT_FIELDS if f in cols]


def kg_facts(dataset: Dataset, relations: Sequence[str], limit: int) -> dict[str, list[str]]:
    """``item_id -> ["relation: entity", ...]`` from the `.kg`/`.link` tables.

    Entities are shown by name when the KG has an ``entity_name`` table column, else skipped:
    bare IDs such as Freebase ``m.0abc`` mean nothing to a language model.
    """
    if dataset.kg is None or dataset.links is None or not relations:
        return {}
    kg, links = dataset.kg, dataset.links
    names: dict[str, str] = {}
    if "entity_name" in links.columns:
        names = dict(zip(links["entity_id"], links["entity_name"], strict=True))
    facts = kg[kg["relation_id"].isin(relations)]
    ent_to_item = dict(zip(links["entity_id"], links["item_id"], strict=True))
    out: dict[str, list[str]] = {}
    for head, rel, tail in facts[["head_id", "relation_id", "tail_id"]].itertuples(index=False):
        item = ent_to_item.get(head)
        if item is None or tail not in names:
            continue
        lst = out.setdefault(str(item), [])
        if len(lst) < limit:
            lst.append(f"{rel.rsplit('.', 1)[-1].replace('_', ' ')}: {names[tail]}")
    return out


def item_texts(
    dataset: Dataset,
    cfg: ItemTextConfig | None = None,
    truncate: Callable[[str], str] | None = None,
) -> list[str]:
    """One text per catalog item, in catalog order.

    Args:
        dataset: Dataset whose item table is rendered.
        cfg: Fields, labels and KG settings.
        truncate: Cuts a text to the encoder's token limit (e.g. ``encoder.truncate``).
    """
    cfg = cfg or ItemTextConfig()
    fields = text_fields(dataset, cfg)
    facts = kg_facts(dataset, cfg.kg_relations or [], cfg.max_facts)
    items = dataset.items
    title_field = fields[0] if fields and fields[0] in TITLE_FIELDS else None
    columns = {f: items[f].tolist() for f in fields}
    texts = []
    for row, item_id in enumerate(items.index):
        parts = []
        for f in fields:
            value = _render_value(f, columns[f][row], dataset.item_fields.get(f))
            if not value:
                continue
            parts.append(value if f == title_field else f"{_label(f, cfg)}: {value}")
        parts.extend(facts.get(str(item_id), []))
        text = ". ".join(p.rstrip(".") for p in parts)
        text = (text + ".") if text else str(item_id)
        texts.append(truncate(text) if truncate else text)
    return texts


def render_row(row: pd.Series, cfg: ItemTextConfig | None = None) -> str:
    """Text of one new item given as a row (for items added after fitting)."""
    frame = pd.DataFrame([row.to_dict()], index=pd.Index([str(row.name)], name="item_id"))
    ds = Dataset(interactions=pd.DataFrame(columns=["user_id", "item_id"]), items=frame,
                 users=pd.DataFrame(index=pd.Index([], name="user_id")))  # fmt: skip
    return item_texts(ds, cfg)[0]
