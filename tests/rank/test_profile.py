"""User profiles: shares, lifts, activity levels, the summary, `profile_for` and ``lmrec
profile``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import lmrec.models.kg_knn  # noqa: F401  (registers kg-knn until lmrec.models imports it)
from lmrec.cli import app
from lmrec.data.schema import Dataset
from lmrec.errors import InputError, UnknownIdError
from lmrec.models.base import create_model
from lmrec.models.kg_knn import KGKNN
from lmrec.rank.attributes import ItemAttributes
from lmrec.rank.profile import activity_level, build_profile, profile_for

ITEMS = pd.DataFrame(
    {
        "item_id": ["d1", "d2", "d3", "c1", "c2", "h1"],
        "title": ["D1", "D2", "D3", "C1", "C2", "H1"],
        "year": ["1994", "1995", "1987", "1996", "1972", "1999"],
        "genres": ["Drama", "Drama Romance", "Drama", "Comedy Romance", "Comedy", "Horror"],
    }
)
LINKS = pd.DataFrame(
    {"item_id": ["d1", "d2", "d3", "c1"], "entity_id": ["m.d1", "m.d2", "m.d3", "m.c1"]}
)
KG = pd.DataFrame(
    [
        ("m.d1", "film.film.directed_by", "m.ford"),
        ("m.ford", "film.director.film", "m.d2"),
        ("m.c1", "film.film.directed_by", "m.ford"),
        ("m.d3", "film.film.directed_by", "m.hawks"),
        ("m.c1", "film.film.directed_by", "m.hawks"),
    ],
    columns=["head_id", "relation_id", "tail_id"],
)
# u1: three dramas and a comedy, rated; others give the activity distribution
INTER = pd.DataFrame(
    [
        ("u1", "d1", 5.0),
        ("u1", "d2", 4.0),
        ("u1", "d3", 4.0),
        ("u1", "c1", 3.0),
        ("u2", "c2", 2.0),
        ("u3", "h1", 3.0),
        ("u3", "c2", 3.0),
    ],
    columns=["user_id", "item_id", "rating"],
)


def dataset() -> Dataset:
    return Dataset.build(INTER, ITEMS, kg=KG, links=LINKS, name="tiny")


def attributes() -> ItemAttributes:
    ds = dataset()
    return ItemAttributes.build(ds.item_ids, ds.items, ds.kg, ds.links, min_items=1)


def test_top_genres_and_shares_for_a_hand_built_user() -> None:
    a = attributes()
    p = build_profile(
        "u1", np.array([0, 1, 2, 3]), a, np.array([4, 1, 2]), np.array([5.0, 4, 4, 3])
    )
    assert p.n_interactions == 4
    assert p.top["genre"][0] == ("Drama", 0.75)
    assert dict(p.top["genre"]) == {"Drama": 0.75, "Romance": 0.5, "Comedy": 0.25}
    assert dict(p.counts["genre"]) == {"Drama": 3, "Romance": 2, "Comedy": 1}
    assert dict(p.top["decade"]) == {"1990s": 0.75, "1980s": 0.25}
    assert dict(p.counts["director"]) == {"m.ford": 3, "m.hawks": 2}  # both KG directions
    # lift = share / catalog rate, only for values held by >= 2 history items
    assert dict(p.lift["genre"]) == {"Drama": pytest.approx(1.5), "Romance": pytest.approx(1.5)}
    assert p.mean_rating == 4.0
    assert p.activity == "heavy" and p.activity_percentile == pytest.approx(100 * 5 / 6, abs=0.1)
    assert "Drama 75%" in p.summary and "heavy" in p.summary
    assert "mean rating 4.0" in p.summary and "4 ratings" in p.summary
    assert "Recurring directors: m.ford (3 items), m.hawks (2 items)" in p.summary
    assert "Horror" not in p.summary  # only facts of this user
    json.dumps(p.to_dict())


def test_top_n_and_empty_history() -> None:
    a = attributes()
    p = build_profile("u1", np.array([0, 1, 2, 3]), a, np.array([4, 1, 2]), top_n=1)
    assert all(len(v) == 1 for v in p.top.values()) and p.mean_rating is None
    assert "4 interactions" in p.summary
    empty = build_profile("u9", np.array([], dtype=int), a, np.array([4, 1, 2]))
    assert empty.n_interactions == 0 and empty.top == {} and empty.activity == "light"
    assert empty.summary == "User u9 has no training interactions."
    with pytest.raises(InputError, match="top_n"):
        build_profile("u1", np.array([0]), a, np.array([1]), top_n=0)
    with pytest.raises(InputError, match="out of range"):
        build_profile("u1", np.array([99]), a, np.array([1]))


def test_activity_levels() -> None:
    assert activity_level(10.0) == "light"
    assert activity_level(50.0) == "regular"
    assert activity_level(80.0) == "heavy"
    a = attributes()
    counts = np.arange(1, 101)
    light = build_profile("x", np.array([0]), a, counts)  # fewest of 100 users
    assert light.activity == "light" and "bottom 1%" in light.summary


def test_profile_for_models() -> None:
    ds = dataset()
    kg_model = KGKNN().fit(ds)
    p = profile_for(kg_model, "u1", interactions=ds.interactions)
    assert p.top["genre"][0] == ("Drama", 0.75) and "director" in p.top
    assert p.mean_rating == 4.0
    pop = create_model("pop").fit(ds)
    q = profile_for(pop, "u1")  # no attributes of its own: built from the item table
    assert q.top["genre"][0] == ("Drama", 0.75) and "director" not in q.top
    assert q.mean_rating is None
    with pytest.raises(UnknownIdError, match="nobody"):
        profile_for(pop, "nobody")


def test_cli_profile(tmp_path: Path) -> None:
    KGKNN().fit(dataset()).save(tmp_path / "m")
    runner = CliRunner()
    res = runner.invoke(app, ["profile", "--model", str(tmp_path / "m"), "--user", "u1"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("User u1 is a") and "genre: Drama (3, 75%)" in res.output
    res = runner.invoke(
        app, ["profile", "--model", str(tmp_path / "m"), "--user", "u1", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["user_id"] == "u1" and data["top"]["genre"][0] == ["Drama", 0.75]
    res = runner.invoke(app, ["profile", "--model", str(tmp_path / "m"), "--user", "ghost"])
    assert res.exit_code == 2 and "ghost" in res.output
    res = runner.invoke(
        app, ["profile", "--model", str(tmp_path / "m"), "--user", "u1", "--format", "xml"]
    )
    assert res.exit_code == 2 and "--format" in res.output
