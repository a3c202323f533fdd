"""Item text rendering from catalog fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmrec.data.item_text import ItemTextConfig, item_texts
from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError


def catalog() -> Dataset:
    items = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "title": ["Toy Story", "Heat"],
            "year": [1995.0, np.nan],
            "genres": ["Animation Children's Comedy", ""],
            "description": ["Toys come alive.", None],
        }
    )
    return Dataset.build(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}), items)


def test_default_template_labels_fields_and_skips_empty_ones() -> None:
    a, b = item_texts(catalog())
    expected = "Toy Story. Year: 1995. Genres: Animation, Children's, Comedy."
    assert a == expected + " Description: Toys come alive."
    assert b == "Heat."  # no 'nan', no dangling labels


def test_field_list_labels_and_truncation() -> None:
    cfg = ItemTextConfig(fields=["title", "genres"], labels={"genres": "Kind"})
    texts = item_texts(catalog(), cfg, truncate=lambda t: t[:20])
    assert texts[0] == "Toy Story. Kind: Ani"
    with pytest.raises(ConfigError, match="plot"):
        item_texts(catalog(), ItemTextConfig(fields=["title", "plot"]))


def test_kg_facts_need_entity_names() -> None:
    ds = catalog()
    kg = pd.DataFrame(
        {
            "head_id": ["m.1", "m.1"],
            "relation_id": ["film.film.director", "film.film.genre"],
            "tail_id": ["m.9", "m.8"],
        }
    )
    links = pd.DataFrame(
        {
            "item_id": ["a", "x"],
            "entity_id": ["m.1", "m.9"],
            "entity_name": ["Toy Story", "John Lasseter"],
        }
    )
    ds = Dataset.build(ds.interactions, ds.items, kg=kg, links=links)
    text = item_texts(
        ds, ItemTextConfig(fields=["title"], kg_relations=["film.film.director", "film.film.genre"])
    )[0]
    assert text == "Toy Story. director: John Lasseter."  # m.8 has no name: left out
