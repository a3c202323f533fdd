"""The metadata-only baseline `meta-knn`: features, cold items, neighbours and bad configs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lmrec.data.schema import Dataset, FieldType
from lmrec.data.splits import make_split
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, create_model
from lmrec.models.metadata import MetadataKNN, feature_similarity, metadata_features

ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e", "cold-scifi", "cold-romance"],
        "title": ["A", "B", "C", "D", "E", "F", "G"],
        "genres": [
            "Sci-Fi Action",
            "Sci-Fi",
            "Romance Comedy",
            "Romance",
            "Documentary",
            "Sci-Fi Action",
            "Romance Comedy",
        ],
        "year": ["1995", "1997", "1994", "1972", "", "1996", "1993"],
        "studio": ["x", "x", "y", "y", "x", "x", "y"],
        # one value shared, but nearly one per item: an identifier, not a category
        "sku": ["s1", "s1", "s2", "s3", "s4", "s5", "s6"],
    }
)


def build(inter: list[tuple[str, str]], items: pd.DataFrame = ITEMS) -> Dataset:
    frame = pd.DataFrame(inter, columns=["user_id", "item_id"])
    return Dataset.build(frame, items)


def named(matrix: sp.csr_matrix, names: list[str], row: int) -> set[str]:
    return {names[j] for j in matrix[row].indices}


def test_features_from_genres_decade_and_categories() -> None:
    ds = build([("u", "a")])
    m, names, used = metadata_features(ds.items, ds.item_fields)
    # title is free text and sku nearly unique, so neither is picked; studio is categorical
    assert used == ["genres", "year", "studio"]
    assert named(m, names, 0) == {"genres=sci-fi", "genres=action", "year=1990-1999", "studio=x"}
    assert named(m, names, 3) == {"genres=romance", "year=1970-1979", "studio=y"}
    assert named(m, names, 4) == {"genres=documentary", "studio=x"}  # no year, no bucket
    assert m.dtype == np.float32 and set(m.data) == {1.0}
    assert m.shape == (len(ITEMS), len(names))


def test_titles_are_not_picked_even_when_repeated() -> None:
    items = pd.DataFrame(
        {"item_id": list("pqrs"), "title": ["Hamlet", "Hamlet", "Psycho", "Psycho"],
         "genres": ["Drama Drama", "Drama", "Horror", "Horror"]}
    )  # fmt: skip
    ds = build([("u", "p")], items)
    m, names, used = metadata_features(ds.items, ds.item_fields)
    assert used == ["genres"]
    assert names == ["genres=drama", "genres=horror"]
    assert set(m.data) == {1.0}  # "Drama Drama" is one feature, not a count of 2


def test_year_buckets_and_formats() -> None:
    items = pd.DataFrame(
        {"item_id": ["p", "q", "r", "s"], "release_year": [1995.0, np.nan, "01-Jan-1989", 1990]}
    )
    ds = build([("u", "p")], items)
    m, names, _ = metadata_features(ds.items, ds.item_fields, year_bucket=5)
    assert [sorted(named(m, names, r)) for r in range(4)] == [
        ["release_year=1995-1999"],
        [],
        ["release_year=1985-1989"],
        ["release_year=1990-1994"],
    ]


def test_title_words_as_tokens_when_chosen() -> None:
    ds = build([("u", "a")])
    _, names, used = metadata_features(ds.items, {"title": FieldType.TOKEN_SEQ}, ["title"])
    assert used == ["title"] and names[:2] == ["title=a", "title=b"]
    _, names, _ = metadata_features(
        pd.DataFrame({"title": ["Space  War", "space opera"]}), {}, ["title"]
    )
    # "title" is not a genre field and has no type here: whole values, not words
    assert names == ["title=Space  War", "title=space opera"]


def test_cold_item_with_matching_genres_ranks_first() -> None:
    # the user liked sci-fi action of the 90s; "cold-scifi" has no interactions at all
    ds = build([("u1", "a"), ("u1", "b"), ("u2", "c"), ("u2", "d"), ("u3", "e")])
    model = MetadataKNN(k=3).fit(ds)
    recs = model.recommend(["u1", "u2"], k=2)
    top = recs.groupby("user_id")["item_id"].first().to_dict()
    assert top == {"u1": "cold-scifi", "u2": "cold-romance"}
    scores = model.score(["u1"], ["cold-scifi", "cold-romance"])[0]
    assert scores[0] > 0 and scores[0] > scores[1]


def test_cold_items_do_not_fill_neighbour_slots() -> None:
    # two identical cold items and a warm one that is close to both; with k=1 each cold
    # item must keep the warm item, not its cold twin, or no user could ever reach it
    items = pd.DataFrame(
        {
            "item_id": ["warm", "cold1", "cold2", "other"],
            "genres": ["Action Drama", "Action Drama War", "Action Drama War", "Comedy"],
        }
    )
    model = MetadataKNN(k=1).fit(build([("u", "warm"), ("v", "other")], items))
    scores = model.score(["u"], ["cold1", "cold2"])[0]
    np.testing.assert_allclose(scores, [2 / np.sqrt(6)] * 2, rtol=1e-5)


def test_held_out_items_of_a_cold_split_get_scores() -> None:
    rng = np.random.default_rng(0)
    genres = ["Action", "Drama", "Comedy", "Horror"]
    n_items, n_users = 60, 40
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "genres": [genres[i % 4] for i in range(n_items)],
            "year": [str(1960 + 10 * (i % 5)) for i in range(n_items)],
        }
    )
    inter = [
        (f"u{u}", f"i{i}")
        for u in range(n_users)
        for i in rng.choice(np.arange(u % 4, n_items, 4), size=6, replace=False)
    ]
    split = make_split(build(inter, items), "cold-item", test_share=0.2, valid_share=0.1)
    held = split.test.interactions["item_id"].unique()
    users = split.test.interactions["user_id"].unique()[:10]
    meta = create_model("meta-knn", k=20).fit(split.train)
    knn = create_model("itemknn", k=20).fit(split.train)
    assert (meta.score(users, held) > 0).mean() > 0.2
    assert (knn.score(users, held) == 0).all()  # the collaborative model cannot reach them
    # a user's genre: their test items share it, so each user's top held-out pick fits it
    recs = meta.recommend(users, k=1, candidates=held)
    genre = dict(zip(items["item_id"], items["genres"], strict=True))
    liked = split.train.interactions.assign(g=lambda d: d["item_id"].map(genre))
    user_genre = liked.groupby("user_id")["g"].agg(lambda s: s.mode()[0])
    assert all(genre[i] == user_genre[u] for u, i in recs[["user_id", "item_id"]].to_numpy())


def test_neighbours_are_the_top_k_items_with_interactions() -> None:
    feats = sp.csr_matrix(
        np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    )
    active = np.array([0, 1, 2, 3])  # item 4 has no interactions: never a neighbour
    for block, cells in itertools.product((1, 2, 5), (0, 10**6)):  # sparse and dense products
        sim = feature_similarity(feats, active, k=2, block=block, dense_cells=cells).toarray()
        unit = feats.toarray() / np.linalg.norm(feats.toarray(), axis=1, keepdims=True)
        cos = unit @ unit.T
        assert (sim[4] == 0).all() and (np.diag(sim) == 0).all()
        for j in range(5):
            kept = np.flatnonzero(sim[:, j])
            cand = [i for i in active if i != j and cos[i, j] > 0]
            best = sorted(cand, key=lambda i: -cos[i, j])[:2]
            assert sorted(kept) == sorted(best), (block, j)
            np.testing.assert_allclose(sim[kept, j], cos[kept, j], rtol=1e-6)


def test_idf_weighting_favours_rare_shared_values() -> None:
    # "a" and "b" share a rare genre, "a" and "c" a common one: idf should prefer "b"
    items = pd.DataFrame(
        {
            "item_id": list("abcdef"),
            "genres": ["Noir Drama", "Noir", "Drama", "Drama", "Drama", "Drama"],
        }
    )
    ds = build([("u", "a"), ("v", "b"), ("v", "c")], items)
    binary = MetadataKNN(k=5, weighting="binary").fit(ds)
    idf = MetadataKNN(k=5, weighting="idf").fit(ds)
    s_bin = binary.score(["u"], ["b", "c"])[0]
    s_idf = idf.score(["u"], ["b", "c"])[0]
    np.testing.assert_allclose(s_bin[0], s_bin[1], rtol=1e-6)  # one shared token each
    assert s_idf[0] > s_idf[1]


def test_auto_fields_are_reported_and_saved(tmp_path: Path) -> None:
    ds = build([("u1", "a"), ("u2", "c")])
    model = MetadataKNN(k=3).fit(ds)
    assert model.fitted_params() == {"fields": ["genres", "year", "studio"]}
    assert MetadataKNN(k=3, fields=["genres"]).fit(ds).fitted_params() == {}
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, MetadataKNN)
    assert loaded.fields_used == model.fields_used
    assert loaded.feature_names == model.feature_names
    np.testing.assert_allclose(loaded.score(["u1"]), model.score(["u1"]))


def test_no_usable_field_names_the_fields_present() -> None:
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A film", "B film"], "price": [1, 2]})
    with pytest.raises(ConfigError, match=r"meta-knn.*\['title', 'price'\]"):
        MetadataKNN().fit(build([("u", "a")], items))
    ids_only = build([("u", "a"), ("u", "b")], None)
    with pytest.raises(ConfigError, match=r"no usable metadata \(item table fields: \[\]\)"):
        MetadataKNN().fit(ids_only)
    empty = pd.DataFrame({"item_id": ["a", "b"], "genres": ["", None]})
    with pytest.raises(ConfigError, match="no usable metadata"):
        MetadataKNN(fields=["genres"]).fit(build([("u", "a")], empty))


def test_bad_config_errors() -> None:
    ds = build([("u", "a")])
    with pytest.raises(ConfigError, match=r"\['brand'\] are not in the item table"):
        MetadataKNN(fields=["brand"]).fit(ds)
    with pytest.raises(ConfigError, match="meta-knn"):
        create_model("meta-knn", k=0)
    with pytest.raises(ConfigError, match="weighting"):
        create_model("meta-knn", weighting="tfidf")
    with pytest.raises(ConfigError, match="year_bucket"):
        create_model("meta-knn", year_bucket=0)
    vec = pd.DataFrame({"item_id": ["a"], "emb": [np.array([0.1, 0.2])]})
    with pytest.raises(ConfigError, match="hold vectors"):
        MetadataKNN(fields=["emb"]).fit(build([("u", "a")], vec))
