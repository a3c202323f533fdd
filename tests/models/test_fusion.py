"""The fusion model: two-stage training, candidates, features, rankers, ratings, TOML config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.schema import Dataset
from lmrec.data.splits import make_split
from lmrec.errors import ConfigError, InputError
from lmrec.models.base import Recommender
from lmrec.models.fusion import FusionRecommender
from lmrec.rank.holdout import holdout_parts
from lmrec.rank.sources import CandidateSources, SourceConfig, candidate_recall

SOURCES = [
    {"model": "ease", "budget": 8, "config": {"reg_weight": 10.0}},
    {"model": "itemknn", "budget": 8, "config": {"k": 10}},
    {"model": "pop", "budget": 4},
]
FAST = {
    "sources": SOURCES,
    "holdout": "random",
    "holdout_share": 0.2,
    "lgbm": {"n_estimators": 40, "min_child_samples": 5, "num_threads": 1},
    "mtl": {"epochs": 8, "hidden": [16], "num_threads": 1},
}


def taste_data(n_users: int = 80, n_items: int = 40, seed: int = 1) -> Dataset:
    """Users like one genre; ratings are high in it; a user table with a gender column."""
    rng = np.random.default_rng(seed)
    genres = ["Comedy", "Horror"]
    rows = []
    for u in range(n_users):
        g = u % 2
        pool = np.arange(n_items)[np.arange(n_items) % 2 == g]
        other = np.arange(n_items)[np.arange(n_items) % 2 != g]
        picks = list(rng.choice(pool, size=10, replace=False)) + list(rng.choice(other, 2))
        for t, i in enumerate(picks):
            rating = 4.5 + rng.random() / 2 if i % 2 == g else 1.0 + rng.random()
            rows.append((f"u{u}", f"i{i}", round(rating, 1), float(1000 * u + t)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"{genres[i % 2]} film {i}" for i in range(n_items)],
            "genres": [genres[i % 2] for i in range(n_items)],
            "year": [str(1970 + i) for i in range(n_items)],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(n_users)],
            "gender": ["MF"[u % 2] for u in range(n_users)],
        }
    )
    return Dataset.build(inter, items, users)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return taste_data()


@pytest.fixture(scope="module")
def split(data: Dataset):  # type: ignore[no-untyped-def]
    return make_split(data, "ratio", seed=3)


@pytest.fixture(scope="module")
def fitted(split) -> FusionRecommender:  # type: ignore[no-untyped-def]
    model = FusionRecommender(**FAST).fit(split.train, valid=split.valid)
    assert isinstance(model, FusionRecommender)
    return model


@pytest.mark.parametrize("mode", ["latest", "random", "items"])
def test_holdout_parts_are_disjoint_and_leak_free(data: Dataset, mode: str) -> None:
    parts = holdout_parts(data, mode, 0.2, folds=2, seed=0)  # type: ignore[arg-type]
    assert len(parts) == 2
    inter = data.interactions
    keys = set(zip(inter["user_id"], inter["item_id"], inter["timestamp"], strict=True))
    seen_b: set[tuple[str, str, float]] = set()
    for a, b in parts:
        ka = set(zip(a.interactions["user_id"], a.interactions["item_id"],
                     a.interactions["timestamp"], strict=True))  # fmt: skip
        kb = set(zip(b["user_id"], b["item_id"], b["timestamp"], strict=True))
        assert kb and not (ka & kb) and (ka | kb) <= keys
        assert not (kb & seen_b)  # folds hold out different interactions
        seen_b |= kb
        assert set(a.interactions["user_id"]) >= set(b["user_id"]) or mode == "items"
        if mode == "latest":  # A holds only what came before each user's B
            last_a = a.interactions.groupby("user_id")["timestamp"].max()
            first_b = b.groupby("user_id")["timestamp"].min()
            assert (last_a.reindex(first_b.index) < first_b).all()
        if mode == "items":  # B's items have no interactions in A
            assert not set(b["item_id"]) & set(a.interactions["item_id"])
    with pytest.raises(ConfigError, match="share"):
        holdout_parts(data, "random", 0.6, folds=2)


def test_holdout_folds_can_cover_all_training_data(data: Dataset) -> None:
    # share x folds = 1: full stacking, each interaction (but a user's last) held out once
    parts = holdout_parts(data, "random", 0.25, folds=4, seed=0)
    held = sum(len(b) for _, b in parts)
    n, users = len(data.interactions), data.interactions["user_id"].nunique()
    assert 0.6 * n <= held <= n - users and all(len(b) for _, b in parts)
    assert all(len(a.interactions) + len(b) == n for a, b in parts)


def test_fused_ranker_is_chosen_on_validation_and_learns(fitted: FusionRecommender, split) -> None:  # type: ignore[no-untyped-def]
    from lmrec.evaluate.protocol import evaluate

    assert fitted.chosen["ranker"] in ("lgbm", "mtl", "blend", "source")
    assert set(fitted.report["valid_ndcg@10"]) == {"lgbm", "mtl", "blend"}
    # the guard compared the ranker with every single source on validation
    sources = fitted.report["valid_ndcg@10_sources"]
    assert {"ease:z", "pop:z"} <= set(sources) or len(sources) >= 2
    if fitted.chosen["ranker"] != "source":
        assert max(sources.values()) <= fitted.report["valid_ndcg@10_chosen"]
    params = fitted.fitted_params()
    assert params["ranker"] == fitted.chosen["ranker"]
    pop = create_pop(split)
    ndcg = evaluate(fitted, split, "test").metrics["ndcg@10"]
    assert ndcg > evaluate(pop, split, "test").metrics["ndcg@10"] + 0.1


def create_pop(split) -> Recommender:  # type: ignore[no-untyped-def]
    from lmrec.models import create_model

    return create_model("pop").fit(split.train)


def test_refit_from_fitted_params_needs_no_validation(fitted: FusionRecommender, split) -> None:  # type: ignore[no-untyped-def]
    params = fitted.fitted_params()
    again = FusionRecommender(**{**FAST, **params}).fit(split.train)
    assert again.chosen["ranker"] == fitted.chosen["ranker"]
    assert len(again.recommend(["u1"], k=5)) == 5


def test_features_have_named_groups_and_ablation_drops_them(split) -> None:  # type: ignore[no-untyped-def]
    full = FusionRecommender(**FAST, ranker="lgbm").fit(split.train)
    assert full.features is not None
    groups = set(full.features.feature_groups)
    assert {"cf", "popularity", "profile", "rating", "sequence"} <= groups
    assert {"seq:trans_last", "seq:trans_recent", "seq:sim_recent"} <= set(full.features.names)
    assert any(n.startswith("attr:genre") for n in full.features.names)
    assert any(n.startswith("demo:gender") for n in full.features.names)
    no_cf = FusionRecommender(**FAST, ranker="lgbm", features={"groups": ["popularity", "profile"]})
    no_cf.fit(split.train)
    assert no_cf.features is not None
    assert set(no_cf.features.feature_groups) == {"popularity", "profile"}
    with pytest.raises(ConfigError, match="unknown feature group"):
        FusionRecommender(**FAST, features={"groups": ["nope"]}).fit(split.train)


def test_candidate_recall_grows_with_budget(split) -> None:  # type: ignore[no-untyped-def]
    sources = CandidateSources([SourceConfig(**s) for s in SOURCES]).fit(split.train)
    users, items = split.train.user_map(), split.train.item_map()
    relevant = split.valid.matrix(users, items)
    u = np.flatnonzero(np.diff(relevant.indptr) > 0)
    small = candidate_recall(sources, u, relevant)
    assert 0 < small["recall_merged"] <= 1
    assert small["recall_merged"] >= max(small["recall_ease"], small["recall_pop"])
    assert small["size"] <= 20


def test_ratings_beat_the_global_mean(fitted: FusionRecommender, split) -> None:  # type: ignore[no-untyped-def]
    test = split.test.interactions
    pred = fitted.predict_ratings(list(test["user_id"]), list(test["item_id"]))
    true = test["rating"].to_numpy()
    rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
    base = float(np.sqrt(np.mean((true - split.train.interactions["rating"].mean()) ** 2)))
    assert fitted.chosen["rating"] in ("lgbm", "mtl")
    assert rmse < 0.7 * base
    unknown = fitted.predict_ratings(["nobody"], ["i1"])
    assert np.isfinite(unknown).all()
    with pytest.raises(InputError):
        fitted.predict_ratings(["u1", "u2"], ["i1"])


def test_blend_sums_both_rankers_and_survives_save_load(split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = FusionRecommender(**FAST, ranker="blend").fit(split.train, valid=split.valid)
    assert model.chosen["ranker"] == "blend" and model.lgbm is not None and model.mtl is not None
    block, s = model.rank_block(np.arange(5))
    x = model._parts()[1].transform(block)
    m1, s1, m2, s2 = model.report["blend_scale"]
    expect = (model.lgbm.predict(x) - m1) / s1 + (model.mtl.predict(x) - m2) / s2
    np.testing.assert_allclose(s, expect, rtol=1e-5)
    assert not np.allclose(np.argsort(s), np.argsort(model.lgbm.predict(x)))  # not lgbm alone
    model.save(tmp_path / "b")
    loaded = Recommender.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.score(["u1", "u2"]), model.score(["u1", "u2"]), rtol=1e-5)
    again = FusionRecommender(**{**FAST, **model.fitted_params()}).fit(split.train)  # no valid
    assert again.chosen["ranker"] == "blend"


def test_save_load_keeps_ranker_and_ratings(fitted: FusionRecommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "f")
    loaded = Recommender.load(tmp_path / "f")
    assert isinstance(loaded, FusionRecommender)
    np.testing.assert_allclose(loaded.score(["u1", "u2"]), fitted.score(["u1", "u2"]), rtol=1e-5)
    np.testing.assert_allclose(
        loaded.predict_ratings(["u1"], ["i3"]), fitted.predict_ratings(["u1"], ["i3"]), rtol=1e-6
    )
    ranked = loaded.rank_items("u1", ["i0", "i1", "i2", "i3"])
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    assert set(ranked["item_id"]) == {"i0", "i1", "i2", "i3"}


def test_bad_source_configs_fail_before_fitting(split) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="unknown model"):
        FusionRecommender(sources=[{"model": "nope"}]).fit(split.train)
    with pytest.raises(ConfigError, match="budget"):
        FusionRecommender(sources=[{"model": "pop", "budget": 0}]).fit(split.train)
    with pytest.raises(ConfigError, match="unique"):
        FusionRecommender(sources=[{"model": "pop"}, {"model": "pop"}]).fit(split.train)


def test_cli_fits_fusion_from_a_toml_pipeline(tmp_path: Path, data: Dataset) -> None:
    train = tmp_path / "train.csv"
    items = tmp_path / "items.csv"
    data.interactions.to_csv(train, index=False)
    data.items.reset_index().to_csv(items, index=False)
    cfg = tmp_path / "fusion.toml"
    cfg.write_text(
        """
[model]
holdout = "latest"
holdout_share = 0.2
ranker = "lgbm"
lgbm = { n_estimators = 20, min_child_samples = 5, num_threads = 1 }

[[model.sources]]
model = "ease"
budget = 8
config = { reg_weight = 10.0 }

[[model.sources]]
model = "pop"
budget = 4

[model.features]
groups = ["cf", "popularity", "profile"]
"""
    )
    out = tmp_path / "model"
    res = CliRunner().invoke(
        app, ["fit", "--train", str(train), "--items", str(items), "--model", "fusion",
              "--config", str(cfg), "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    loaded = Recommender.load(out)
    assert isinstance(loaded, FusionRecommender)
    assert [s.model for s in loaded.config.sources] == ["ease", "pop"]
    res = CliRunner().invoke(app, ["recommend", "--model", str(out), "--user", "u3", "--k", "3"])
    assert res.exit_code == 0, res.stderr
    res = CliRunner().invoke(
        app, ["profile", "--model", str(out), "--user", "u3", "--format", "json"]
    )
    assert res.exit_code == 0, res.stderr
    portrait = json.loads(res.stdout)
    top_genre = portrait["top"]["genre"][0][0]
    assert top_genre == "Horror"  # odd users like the odd items, all horror films
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nranker = "magic"\n')
    res = CliRunner().invoke(
        app, ["fit", "--train", str(train), "--model", "fusion", "--config", str(bad),
              "--out", str(tmp_path / "m2")],
    )  # fmt: skip
    assert res.exit_code != 0 and "ranker" in res.stderr


def test_item_vector_column_becomes_a_cosine_feature(data: Dataset) -> None:
    """Any vector modality (e.g. image embeddings) enters as user-history/item cosine."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8))
    items = data.items.copy()
    items["image_vec"] = [
        (centres[i % 2] + 0.1 * rng.normal(size=8)).tolist() for i in range(len(items))
    ]
    ds = Dataset.build(data.interactions, items.reset_index(), data.users.reset_index())
    model = FusionRecommender(**FAST, ranker="lgbm", features={"vector_columns": ["image_vec"]})
    model.fit(ds)
    assert model.features is not None
    j = model.features.names.index("vector:image_vec")
    assert model.features.feature_groups[j] == "vectors"
    assert model.sources is not None
    block = model.sources.candidates(np.array([1, 2]))
    x = model.features.transform(block)
    # u1 likes odd items, u2 even ones, and each taste's items share a vector centre
    users = block.users[block.pair_user]
    same = users % 2 == block.pair_item % 2
    assert x[same, j].mean() > x[~same, j].mean() + 0.5
    with pytest.raises(ConfigError, match="vector column"):
        FusionRecommender(**FAST, features={"vector_columns": ["nope"]}).fit(ds)


def test_ranking_among_given_candidates_trains_among_part_b_items(split) -> None:  # type: ignore[no-untyped-def]
    shelf = sorted(set(split.valid.interactions["item_id"]))
    model = FusionRecommender(**{**FAST, "holdout": "items", "holdout_share": 0.3}, ranker="lgbm")
    model.keep_rows = True
    model.fit(split.train, valid=split.valid, valid_candidates=shelf)
    train = model.rows["train"]
    ((_, part_b),) = holdout_parts(split.train, "items", 0.3, seed=model.config.seed)
    b_items = set(model._check()[1].lookup(part_b["item_id"]))
    assert set(train["item"]) <= b_items  # only part B's own items were candidates
    allowed = set(model._check()[1].lookup(shelf))
    assert set(model.rows["valid"]["item"]) <= allowed


def test_source_guard_ranks_by_the_best_source_and_survives_save_load(
    split, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = FusionRecommender(**FAST, ranker="lgbm")
    model.keep_rows = True
    model.fit(split.train, valid=split.valid)
    model.report["valid_ndcg@10_chosen"] = -1.0  # as if the ranker had lost on validation
    model._guard(model.rows["valid"])
    assert model.chosen["ranker"] == "source"
    name = model.chosen["source"]
    label = name.split(":")[0]
    seen = set(split.train.interactions.query("user_id == 'u1'")["item_id"])
    items = [i for i in (f"i{j}" for j in range(40)) if i not in seen][:8]  # unseen: finite
    ranked = model.rank_items("u1", items)
    source = model.sources.models[label]  # type: ignore[union-attr]
    own = source.score(["u1"], items)[0]
    assert list(ranked["item_id"]) == [items[j] for j in np.argsort(-own, kind="stable")]
    model.save(tmp_path / "g")
    loaded = Recommender.load(tmp_path / "g")
    assert isinstance(loaded, FusionRecommender) and loaded.chosen["source"] == name
    assert list(loaded.rank_items("u1", items)["item_id"]) == list(ranked["item_id"])
    # refitting from fitted_params keeps the choice without validation
    params = model.fitted_params()
    assert params["ranker"] == "source" and params["source_feature"] == name
    with pytest.raises(ConfigError, match="source_feature"):
        FusionRecommender(**FAST, ranker="source", source_feature="nope").fit(split.train)
