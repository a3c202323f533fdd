"""The zero-shot `text` model: new items and new users served from text alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lmrec.data.schema import Dataset
from lmrec.errors import InputError
from lmrec.models import TextRecommender
from lmrec.models.base import Recommender

ITEMS = {
    "s1": "Space battle sci-fi epic",
    "s2": "Alien invasion science fiction thriller",
    "s3": "A science fiction space adventure with aliens",
    "r1": "Romantic comedy in Paris",
    "r2": "A love story and a wedding",
    "r3": "Heartwarming romance drama",
    "k1": "Animated cartoon comedy for young children",
}


@pytest.fixture(scope="module")
def model() -> TextRecommender:
    items = pd.DataFrame({"item_id": list(ITEMS), "title": list(ITEMS.values())})
    inter = pd.DataFrame({"user_id": ["scifan", "scifan", "lover"], "item_id": ["s1", "s2", "r1"]})
    return TextRecommender().fit(Dataset.build(inter, items))


def test_history_drives_text_recommendations(model: TextRecommender) -> None:
    recs = model.recommend(["scifan", "lover"], k=1)
    top = dict(zip(recs["user_id"], recs["item_id"], strict=True))
    assert top == {"scifan": "s3", "lover": recs[recs.user_id == "lover"].item_id.iloc[0]}
    assert top["lover"] in {"r2", "r3"}


def test_new_item_with_text_only_is_recommended_without_retraining(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": list(ITEMS), "title": list(ITEMS.values())})
    inter = pd.DataFrame({"user_id": ["scifan", "scifan"], "item_id": ["s1", "s2"]})
    m = TextRecommender().fit(Dataset.build(inter, items))
    added = m.add_items(
        pd.DataFrame(
            {"item_id": ["new"], "title": ["Galactic space battle: an alien invasion sci-fi epic"]}
        )
    )
    assert added == ["new"]
    assert m.recommend(["scifan"], k=1)["item_id"].iloc[0] == "new"
    assert m.item_table is not None and m.item_table.loc["new", "title"].startswith("Galactic")
    m.save(tmp_path / "m")  # the added item survives a save/load
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.recommend(["scifan"], k=1)["item_id"].iloc[0] == "new"


def test_user_with_only_text_or_one_interaction(model: TextRecommender) -> None:
    by_text = model.recommend_for(text="I love cartoons for my little kids", k=1)
    assert by_text["item_id"].tolist() == ["k1"]
    one = model.recommend_for(history=["r2"], k=2)
    assert "r2" not in set(one["item_id"]) and set(one["item_id"]) <= {"r1", "r3"}
    request = model.recommend_for(history=["r2"], request="an alien invasion movie", k=1)
    assert request["item_id"].tolist() == ["s2"]
    with pytest.raises(InputError, match="no interest signal"):
        model.recommend_for(k=3)


def test_similar_items(model: TextRecommender) -> None:
    sims = model.similar_items("r1", k=2)
    assert "r1" not in set(sims["item_id"]) and set(sims["item_id"]) <= {"r2", "r3", "k1"}
