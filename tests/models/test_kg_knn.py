"""`kg-knn`: item-kNN over KG entities, on two clusters of films that share entities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmrec.models.kg_knn  # noqa: F401  (registers kg-knn until lmrec.models imports it)
from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender
from lmrec.models.kg_knn import KGKNN
from lmrec.rank.attributes import ItemAttributes

# Cluster A (a0..a4) shares director dA and actor xA, cluster B (b0..b4) dB and xB; the
# director triples go film -> person for half the films and person -> film for the rest.
# a4 and b4 have no interactions (cold) but share the entities; "lone" shares nothing.
A = [f"a{i}" for i in range(5)]
B = [f"b{i}" for i in range(5)]
ITEMS = pd.DataFrame(
    {
        "item_id": [*A, *B, "lone"],
        "title": [*A, *B, "lone"],
        "genres": ["Drama"] * 5 + ["Comedy"] * 5 + ["Drama"],
    }
)


def kg_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    triples = []
    for cluster, films in (("A", A), ("B", B)):
        for n, film in enumerate(films):
            ent = f"m.{film}"
            if n % 2:
                triples.append((f"d{cluster}", "film.director.film", ent))
            else:
                triples.append((ent, "film.film.directed_by", f"d{cluster}"))
            triples.append((ent, "film.film.actor", f"x{cluster}"))
            triples.append((ent, "film.film.actor", f"solo-{film}"))  # one film only
    triples.append(("m.lone", "film.film.actor", "nobody"))
    kg = pd.DataFrame(triples, columns=["head_id", "relation_id", "tail_id"])
    ids = [*A, *B, "lone"]
    links = pd.DataFrame({"item_id": ids, "entity_id": [f"m.{i}" for i in ids]})
    return kg, links


def dataset(with_kg: bool = True, items: pd.DataFrame = ITEMS) -> Dataset:
    rows = []
    for u in range(6):
        films = A if u < 3 else B
        for f in films[:4]:
            if (u + int(f[1])) % 4 != 0:  # every user misses one warm film of the cluster
                rows.append((f"u{u}", f))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    kg, links = kg_frames() if with_kg else (None, None)
    return Dataset.build(inter, items, kg=kg, links=links, name="clusters")


def test_recommends_items_sharing_entities() -> None:
    ds = dataset()
    model = KGKNN(k=5).fit(ds)
    recs = model.recommend([f"u{u}" for u in range(6)], k=2)
    for u, grp in recs.groupby("user_id"):
        own = A if int(str(u)[1]) < 3 else B
        assert set(grp["item_id"]) <= set(own), (u, list(grp["item_id"]))
    # the cold film of the cluster is reachable through the shared director and actor
    scores = model.score(["u0"], ["a4", "b4", "lone"])[0]
    assert scores[0] > 0 and scores[1] == 0 and scores[2] == 0


def test_similarity_learns_the_clusters() -> None:
    model = KGKNN(k=10).fit(dataset())
    assert model.items is not None and model.similarity is not None
    sim = model.similarity.toarray()
    idx = {i: n for n, i in enumerate(model.items.ids)}
    within = [sim[idx[i], idx[j]] for i in A[:4] for j in A if i != j]
    across = [sim[idx[i], idx[j]] for i in A[:4] for j in B]
    assert min(within) > 0 and max(across) == 0
    assert np.allclose(np.diag(sim), 0)
    # default groups: the KG ones (the Drama/Comedy genres would link the clusters too)
    assert model.groups_used == ["actor", "director"]
    assert model.fitted_params() == {"groups": ["actor", "director"]}


def test_groups_idf_and_k() -> None:
    ds = dataset()
    genre_only = KGKNN(groups=["genre"]).fit(ds)
    assert genre_only.similarity is not None and genre_only.items is not None
    idx = {i: n for n, i in enumerate(genre_only.items.ids)}
    assert genre_only.similarity[idx["a0"], idx["lone"]] > 0  # both Drama
    assert genre_only.fitted_params() == {}
    top1 = KGKNN(k=1, idf=False).fit(ds)
    assert top1.similarity is not None
    assert (np.diff(top1.similarity.tocsc().indptr) <= 1).all()
    with pytest.raises(ConfigError, match="unknown attribute group"):
        KGKNN(groups=["studio"]).fit(ds)
    with pytest.raises(ConfigError, match="bad config"):
        KGKNN(groups=[])
    with pytest.raises(ConfigError, match="not in the item table"):
        KGKNN(fields=["studio"]).fit(ds)
    titles = KGKNN(fields=["title"], groups=["title"], min_items=1).fit(ds)
    assert titles.attributes is not None and "title: a0" in set(titles.attributes.labels)


def test_without_kg_uses_item_attributes() -> None:
    model = KGKNN().fit(dataset(with_kg=False))
    assert model.groups_used == ["genre"]
    assert model.attributes is not None and model.attributes.kg_groups() == []


def test_no_kg_no_attributes_is_a_config_error() -> None:
    bare = ITEMS[["item_id", "title"]]
    with pytest.raises(ConfigError, match="no knowledge graph"):
        KGKNN().fit(dataset(with_kg=False, items=bare))
    ds = dataset(items=bare)
    kg, _ = kg_frames()
    wrong_links = pd.DataFrame({"item_id": ["zz"], "entity_id": ["m.a0"]})
    broken = Dataset.build(ds.interactions, bare, kg=kg, links=wrong_links)
    with pytest.raises(ConfigError, match="links match"):
        KGKNN().fit(broken)


def test_save_load_round_trip(tmp_path: Path) -> None:
    ds = dataset()
    model = KGKNN(k=5).fit(ds)
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "attributes" / "attributes.npz").is_file()
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, KGKNN)
    users = [f"u{u}" for u in range(6)]
    np.testing.assert_allclose(loaded.score(users), model.score(users))
    assert loaded.groups_used == model.groups_used
    assert isinstance(loaded.attributes, ItemAttributes) and model.attributes is not None
    assert list(loaded.attributes.labels) == list(model.attributes.labels)
    assert (loaded.attributes.matrix != model.attributes.matrix).nnz == 0
    pd.testing.assert_frame_equal(loaded.recommend(users, k=3), model.recommend(users, k=3))
