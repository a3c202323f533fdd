"""text-seq: SASRec over adapted text vectors scores cold and newly added items from text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

# the shared suite's checks, collected again here against this module's `fitted` model
from test_recommender_suite import FAST as SUITE_FAST
from test_recommender_suite import (  # noqa: F401
    clustered_dataset,
    test_candidates_restrict_ranking,
    test_k_larger_than_catalog,
    test_models_learn_the_clusters,
    test_recommend_returns_external_ids_and_excludes_seen,
    test_recommend_without_exclusion_can_return_seen,
    test_save_load_without_training_data,
    test_score_shape_and_item_subset,
    test_unknown_ids_raise,
    test_unknown_user_can_fall_back_to_popular,
)

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError, InputError
from lmrec.models import SASRec, TextSeq, create_model
from lmrec.models.base import NotFittedError, Recommender

FAST: dict[str, Any] = SUITE_FAST["text-seq"]
SCIFI = "Galactic starship battle: an alien invasion sci-fi epic"
ROMANCE = "A romantic love story comedy with a wedding"


def group_users(data: Dataset, group: int) -> list[str]:
    """Users of one cluster of `clustered_dataset` (``u{u*7+3}``: ``u % 2`` is the group)."""
    return [u for u in data.user_ids if int(u[1:]) // 7 % 2 == group]


def above(model: Recommender, users: list[str], item: str, others: list[str]) -> float:
    """Share of ``users`` who score ``item`` above every one of ``others``."""
    s = model.score(users, [item, *others])
    return float(np.mean(s[:, 0] > s[:, 1:].max(axis=1)))


def below(model: Recommender, users: list[str], item: str, others: list[str]) -> float:
    """Share of ``users`` who score ``item`` below every one of ``others``."""
    s = model.score(users, [item, *others])
    return float(np.mean(s[:, 0] < s[:, 1:].min(axis=1)))


def topic_items(data: Dataset, group: int) -> list[str]:
    """Items of one cluster: the first half of the catalog is sci-fi, the second romance."""
    half = len(data.item_ids) // 2
    return list(data.item_ids[group * half : (group + 1) * half])


@pytest.fixture(scope="module")
def data() -> Dataset:
    return clustered_dataset()


@pytest.fixture(scope="module")
def fitted(data: Dataset) -> TextSeq:
    return TextSeq(**FAST).fit(data)


@pytest.fixture(scope="module")
def with_cold() -> Dataset:
    """The clustered data plus a sci-fi item that nobody interacted with."""
    data = clustered_dataset()
    items = pd.concat(
        [data.items, pd.DataFrame({"title": [SCIFI]}, index=pd.Index(["cold"], name="item_id"))]
    )
    return Dataset.build(data.interactions, items)


def test_registered_and_config_checked() -> None:
    assert isinstance(create_model("text-seq"), TextSeq)
    with pytest.raises(ConfigError, match="adapter"):
        TextSeq(adapter="mlp")
    with pytest.raises(ConfigError, match="temperature"):
        TextSeq(temperature=0)
    with pytest.raises(NotFittedError):
        TextSeq().similar_items("item-5")


@pytest.mark.parametrize("item_ids", [False, True])
def test_cold_item_is_ranked_from_its_text(with_cold: Dataset, item_ids: bool) -> None:
    model = TextSeq(**FAST, item_ids=item_ids).fit(with_cold)
    scifi, romance = group_users(with_cold, 0), group_users(with_cold, 1)
    # the cold sci-fi item beats every romance item for sci-fi fans, and loses to all of
    # them for romance fans
    assert above(model, scifi, "cold", topic_items(with_cold, 1)) >= 0.9
    assert below(model, romance, "cold", topic_items(with_cold, 1)) >= 0.9
    if item_ids:  # the cold item has no ID vector: its ID row is the zero padding row
        item = model.net.item
        cold = list(with_cold.item_ids).index("cold")
        assert int(item.id_index[cold]) == item.ids.padding_idx
        assert not item.ids.weight[item.ids.padding_idx].any()


def test_added_item_is_recommendable_at_once(data: Dataset, tmp_path: Path) -> None:
    model = TextSeq(**FAST).fit(data)
    scifi, romance = group_users(data, 0), group_users(data, 1)
    before = model.score(scifi)
    assert model.add_items(pd.DataFrame({"item_id": ["new"], "title": [SCIFI]})) == ["new"]
    assert model.items is not None and model.items.ids[-1] == "new"
    assert model.seen is not None and model.seen.shape == (len(data.user_ids), 41)
    assert model.item_table is not None and model.item_table.loc["new", "title"] == SCIFI
    after = model.score(scifi)
    # known items score as before: padding must still be padding, not the new item
    np.testing.assert_allclose(after[:, :-1], before, rtol=1e-5, atol=1e-5)
    assert above(model, scifi, "new", topic_items(data, 1)) >= 0.9
    assert below(model, romance, "new", topic_items(data, 1)) >= 0.9
    recs = model.recommend(scifi, k=13)  # 12 unseen sci-fi items per user, and one more
    assert (recs["item_id"] == "new").sum() >= 0.9 * len(scifi)
    longer = model.with_history(data)
    np.testing.assert_allclose(longer.score(scifi), after, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(scifi), after)


def test_replaced_text_moves_the_item(data: Dataset) -> None:
    model = TextSeq(**FAST).fit(data)
    romance = group_users(data, 1)
    item, scifi_items = data.item_ids[0], topic_items(data, 0)[1:]
    assert below(model, romance, item, topic_items(data, 1)) >= 0.9
    assert model.add_items(pd.DataFrame({"title": [ROMANCE]}, index=[item])) == [item]
    assert model.items is not None and len(model.items) == len(data.item_ids)
    # it keeps its (sci-fi) ID vector, but its romance text now lifts it above the sci-fi
    assert above(model, romance, item, scifi_items) >= 0.9
    with pytest.raises(InputError, match="duplicate"):
        model.add_items(pd.DataFrame({"item_id": ["x", "x"], "title": ["a", "b"]}))


def test_copies_keep_their_catalog(fitted: TextSeq, data: Dataset) -> None:
    copy = fitted.with_history(data)
    copy.add_items(pd.DataFrame({"item_id": ["new"], "title": [SCIFI]}))
    assert fitted.items is not None and len(fitted.items) == len(data.item_ids)
    assert fitted.score(["u3"]).shape == (1, len(data.item_ids))
    assert copy.score(["u3"]).shape == (1, len(data.item_ids) + 1)


def test_save_load_scores_identically_without_the_encoder(
    fitted: TextSeq, data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted.save(tmp_path / "m")

    def no_encoder(self: TextSeq) -> None:
        raise AssertionError("the encoder was needed")

    monkeypatch.setattr(TextSeq, "encoder", no_encoder)
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, TextSeq)
    users = list(data.user_ids[:6])
    np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
    np.testing.assert_array_equal(
        loaded.with_history(data).score(users), fitted.with_history(data).score(users)
    )
    pd.testing.assert_frame_equal(loaded.similar_items("item-5"), fitted.similar_items("item-5"))


def test_with_history_scores_from_the_new_sequences(fitted: TextSeq, data: Dataset) -> None:
    inter = data.interactions
    first = inter[inter.groupby("user_id").cumcount() < 4]  # half of each history
    short = fitted.with_history(data.with_interactions(first))
    assert isinstance(short, TextSeq) and short.net is fitted.net
    assert short.seen is not None and short.seen.nnz == len(first)
    assert fitted.seen is not None and fitted.seen.nnz == data.n_interactions
    assert not np.allclose(short.score(["u3"]), fitted.score(["u3"]))


def test_similar_items_share_the_topic(fitted: TextSeq, data: Dataset) -> None:
    sims = fitted.similar_items("item-5", k=5)  # item 0: sci-fi
    assert list(sims.columns) == ["item_id", "rank", "score"]
    assert list(sims["rank"]) == [1, 2, 3, 4, 5] and sims["score"].is_monotonic_decreasing
    first_half = set(data.item_ids[:20])
    assert "item-5" not in set(sims["item_id"]) and set(sims["item_id"]) <= first_half
    assert (sims["score"] <= 1 + 1e-6).all()  # cosine


def test_beats_ids_alone_when_the_text_is_all_there_is(with_cold: Dataset) -> None:
    # an ID-only SASRec has nothing to go on for the cold item; text-seq has its text
    scifi, romance_items = group_users(with_cold, 0), topic_items(with_cold, 1)
    assert above(SASRec(**FAST).fit(with_cold), scifi, "cold", romance_items) < 0.5
    assert above(TextSeq(**FAST).fit(with_cold), scifi, "cold", romance_items) >= 0.9
