"""The `two-tower` model: contrastive training, cold items from text, users from text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_recommender_suite import FAST, clustered_dataset

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError, InputError
from lmrec.models import TwoTower
from lmrec.models.base import Recommender


@pytest.fixture(scope="module")
def data() -> Dataset:
    return clustered_dataset()


@pytest.fixture(scope="module")
def cold_split(data: Dataset) -> tuple[Dataset, list[str]]:
    """Training data without the last two items of each cluster (cold: text only)."""
    items = list(data.item_ids)
    half = len(items) // 2
    cold = [items[half - 1], items[half - 2], items[-1], items[-2]]
    inter = data.interactions
    return data.with_interactions(inter[~inter["item_id"].isin(cold)]), cold


@pytest.fixture(scope="module")
def model(cold_split: tuple[Dataset, list[str]]) -> TwoTower:
    train, _ = cold_split
    return TwoTower(**FAST["two-tower"]).fit(train)


def group_of(data: Dataset, item: str) -> int:
    items = list(data.item_ids)
    return items.index(item) // (len(items) // 2)


def test_cold_items_are_ranked_by_text_for_the_right_cluster(
    model: TwoTower, data: Dataset, cold_split: tuple[Dataset, list[str]]
) -> None:
    _, cold = cold_split
    assert model.warm is not None and not model.warm[model.items.index(cold, "item")].any()
    users = list(data.user_ids)
    recs = model.recommend(users, k=4, candidates=cold)
    top = recs[recs["rank"] <= 2]
    user_group = {u: int(u[1:]) // 7 % 2 for u in users}
    same = np.mean(
        [user_group[u] == group_of(data, i) for u, i in top[["user_id", "item_id"]].values]
    )
    assert same > 0.9


def test_training_beats_the_untrained_network(data: Dataset) -> None:
    trained = TwoTower(**FAST["two-tower"]).fit(data)
    untrained = TwoTower(**{**FAST["two-tower"], "epochs": 1, "learning_rate": 1e-9}).fit(data)

    def own_cluster_share(m: TwoTower) -> float:
        recs = m.recommend(list(data.user_ids), k=5)
        groups = {u: int(u[1:]) // 7 % 2 for u in data.user_ids}
        pairs = recs[["user_id", "item_id"]].values
        return float(np.mean([groups[u] == group_of(data, i) for u, i in pairs]))

    assert own_cluster_share(trained) > 0.9
    assert own_cluster_share(trained) > own_cluster_share(untrained) + 0.2


def test_add_items_recommendable_without_retraining(
    cold_split: tuple[Dataset, list[str]], tmp_path: Path
) -> None:
    train, _ = cold_split
    m = TwoTower(**FAST["two-tower"]).fit(train)
    before = m.net.items.text[0].weight.detach().clone()
    added = m.add_items(
        pd.DataFrame({"item_id": ["new"], "title": ["Romantic wedding comedy, a love story"]})
    )
    assert added == ["new"]
    assert torch_equal(before, m.net.items.text[0].weight)  # nothing was retrained
    romance_fans = [u for u in train.user_ids if int(u[1:]) // 7 % 2 == 1]
    scores = m.score(romance_fans, ["new"])[:, 0]
    others = m.score(romance_fans)
    assert (scores[:, None] >= np.sort(others, axis=1)[:, -10:-9]).mean() > 0.8  # top 10
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(romance_fans[:3]), m.score(romance_fans[:3]), rtol=1e-5)
    assert "new" in set(loaded.recommend(romance_fans[:1], k=40)["item_id"])


def torch_equal(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return bool(torch.equal(a, b))


def test_user_from_text_or_one_interaction(model: TwoTower, data: Dataset) -> None:
    items = list(data.item_ids)
    half = len(items) // 2
    by_text = model.recommend_for(text="I love romantic comedies and love stories", k=5)
    assert np.mean([group_of(data, i) for i in by_text["item_id"]]) >= 0.8
    one = model.recommend_for(history=[items[0]], k=5)
    assert items[0] not in set(one["item_id"])
    assert np.mean([group_of(data, i) == 0 for i in one["item_id"]]) >= 0.8
    both = model.recommend_for(history=[items[0]], request="a romantic love story", k=3)
    assert set(both["item_id"]) & set(items[half:])
    with pytest.raises(InputError, match="no interest signal"):
        model.recommend_for(k=3)


def test_similar_items_stay_in_cluster(model: TwoTower, data: Dataset) -> None:
    sims = model.similar_items(data.item_ids[0], k=5)
    assert data.item_ids[0] not in set(sims["item_id"])
    assert all(group_of(data, i) == 0 for i in sims["item_id"])


def test_early_stopping_reports_epochs(data: Dataset) -> None:
    inter = data.interactions
    last = inter.groupby("user_id").cumcount(ascending=False) == 0
    m = TwoTower(**{**FAST["two-tower"], "epochs": 30, "patience": 2})
    m.fit(data.with_interactions(inter[~last]), valid=data.with_interactions(inter[last]))
    assert 1 <= m.fitted_params()["epochs"] <= 30
    assert len(m.history) < 30 or m.best_epoch == 30


def test_full_encoder_finetuning_is_saved_with_the_model(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "cache"))
    cfg = {**FAST["two-tower"], "epochs": 2}
    tuned = TwoTower(**cfg, finetune={"pairs": 16, "batch_size": 8, "learning_rate": 1e-4})
    tuned.fit(data)
    frozen = TwoTower(**cfg).fit(data)
    assert tuned.encoder_dir is not None and (tuned.encoder_dir / "config.json").is_file()
    assert tuned.text_vectors is not None and frozen.text_vectors is not None
    # the encoder itself moved: item text vectors differ from the packaged model's
    assert not np.allclose(tuned.text_vectors, frozen.text_vectors, atol=1e-4)
    tuned.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, TwoTower) and loaded.encoder_dir == tmp_path / "m" / "encoder"
    row = {"item_id": ["new"], "title": ["Space battle sci-fi epic (part 0)"]}
    loaded.add_items(pd.DataFrame(row))  # embedded by the saved fine-tuned encoder
    assert loaded.text_vectors is not None
    np.testing.assert_allclose(loaded.text_vectors[-1], tuned.text_vectors[0], atol=1e-5)


def test_finetuning_needs_a_sentence_transformers_encoder(data: Dataset) -> None:
    model = TwoTower(**FAST["two-tower"], encoder="e5-small", finetune={"pairs": 4})
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        model.fit(data)


def test_bad_input_is_named(model: TwoTower) -> None:
    from lmrec.errors import UnknownIdError

    twice = pd.DataFrame({"item_id": ["x", "x"], "title": ["a", "b"]})
    n_items = len(model.items or [])
    with pytest.raises(InputError, match=r"duplicate item ids: \['x'\]"):
        model.add_items(twice)
    assert len(model.items or []) == n_items  # nothing half-added
    with pytest.raises(UnknownIdError, match="no-such-item"):
        model.recommend_for(history=["no-such-item"], k=3)
    with pytest.raises(UnknownIdError, match="no-such-item"):
        model.similar_items("no-such-item")
    with pytest.raises(ConfigError, match="id_dropout"):
        TwoTower(id_dropout=1.5)
