"""Tests for lmrec.data.movielens on tiny handmade files in each MovieLens layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from lmrec.data.movielens import read_movielens
from lmrec.data.schema import FieldType
from lmrec.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"


def item(ds_items: pd.DataFrame, item_id: str) -> dict[str, object]:
    return {k: (None if pd.isna(v) else v) for k, v in ds_items.loc[item_id].items()}


def test_ml100k() -> None:
    ds = read_movielens(FIXTURES / "ml-100k")
    assert ds.name == "ml-100k"
    assert ds.n_interactions == 5
    assert ds.interactions.iloc[0].tolist() == ["1", "1", 5.0, 874965758.0]
    assert item(ds.items, "1") == {
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation Children's Comedy",
    }
    # Only the trailing "(year)" goes; other parentheses stay.
    assert ds.items.loc["2", "title"] == "Shanghai Triad (Yao a yao yao dao waipo qiao)"
    assert item(ds.items, "3") == {"title": "unknown", "year": None, "genres": "unknown"}
    # latin-1 title; year from the release date when the title has none.
    assert item(ds.items, "4") == {
        "title": "Caf\u00e9 Noir",
        "year": "1993",
        "genres": "Film-Noir Thriller",
    }
    assert ds.users.loc["2"].tolist() == ["53", "F", "other", "94043"]
    assert ds.item_fields == {
        "title": FieldType.TOKEN_SEQ,
        "year": FieldType.TOKEN,
        "genres": FieldType.TOKEN_SEQ,
    }
    assert set(ds.user_fields) == {"age", "gender", "occupation", "zip_code"}


def test_ml100k_genre_names_from_u_genre(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    shutil.copytree(FIXTURES / "ml-100k", d)
    # A renamed genre in u.genre must show up; without u.genre the standard names apply.
    text = (d / "u.genre").read_text().replace("Animation|3", "Cartoon Film|3")
    (d / "u.genre").write_text(text)
    assert read_movielens(d).items.loc["1", "genres"] == "Cartoon_Film Children's Comedy"
    (d / "u.genre").unlink()
    assert read_movielens(d).items.loc["1", "genres"] == "Animation Children's Comedy"


def test_ml1m() -> None:
    ds = read_movielens(FIXTURES / "ml-1m")
    assert ds.n_interactions == 3
    assert item(ds.items, "2") == {
        "title": '"Great Performances" Cats',
        "year": "1998",
        "genres": "Musical",
    }
    assert ds.items.loc["3", "title"] == "Caf\u00e9, Le"  # latin-1
    # Columns reordered to the common layout; occupation codes become names.
    assert ds.users.loc["1"].tolist() == ["1", "F", "K-12_student", "48067"]
    assert ds.users.loc["2", "occupation"] == "self-employed"


def test_ml10m_utf8_tags_and_no_genres() -> None:
    ds = read_movielens(FIXTURES / "ml-10m")
    assert ds.interactions["rating"].tolist() == [5.0, 3.5, 4.0]
    assert ds.items.loc["2", "title"] == "Am\u00e9lie (Fabuleux destin d'Am\u00e9lie Poulain, Le)"
    assert ds.items.loc["3", "genres"] == ""
    assert ds.items["tags"].tolist() == ["pixar", "paris", ""]
    assert ds.item_fields["tags"] == FieldType.TOKEN_SEQ
    assert len(ds.users.columns) == 0


def test_ml_latest_csv() -> None:
    ds = read_movielens(FIXTURES / "ml-latest-small")
    assert list(ds.interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ds.interactions["timestamp"].tolist() == [964982703.0, 964981247.0, 1445714835.0]
    assert item(ds.items, "2") == {
        "title": "American President, The",
        "year": "1995",
        "genres": "Comedy Drama Romance",
        "tags": "political_drama",
    }
    assert item(ds.items, "3")["title"] == "Babylon 5" and item(ds.items, "3")["year"] is None
    assert ds.items.loc["4", ["title", "year"]].tolist() == ["Fawlty Towers", "1975"]
    assert ds.items.loc["5", "genres"] == ""
    assert ds.items.loc["1", "tags"] == "pixar"
    assert ds.item_ids.tolist() == ["1", "2", "3", "4", "5"]  # unrated movies stay in the catalog


def test_finds_single_subfolder(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ml-1m", tmp_path / "download" / "ml-1m")
    assert read_movielens(tmp_path / "download").name == "ml-1m"


def test_unknown_layout_lists_expected_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"u\.data.*ratings\.dat.*notes\.txt") as info:
        read_movielens(tmp_path)
    assert info.value.path == str(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        read_movielens(tmp_path / "notes.txt")


def test_missing_companion_file(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    shutil.copytree(FIXTURES / "ml-100k", d)
    (d / "u.item").unlink()
    with pytest.raises(InputError, match="not found") as info:
        read_movielens(d)
    assert info.value.path == str(d / "u.item")


def test_short_rating_line(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    shutil.copytree(FIXTURES / "ml-1m", d)
    (d / "ratings.dat").write_text("1::1::5::978300760\n1::2::3\n")
    with pytest.raises(InputError) as info:
        read_movielens(d)
    assert (info.value.path, info.value.line) == (str(d / "ratings.dat"), 2)


def test_bad_rating_value(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    shutil.copytree(FIXTURES / "ml-100k", d)
    (d / "u.data").write_text("1\t1\tfive\t874965758\n")
    with pytest.raises(InputError, match="five") as info:
        read_movielens(d)
    assert info.value.path == str(d / "u.data")


def test_bad_value_in_ratings_csv(tmp_path: Path) -> None:
    d = tmp_path / "ml-latest-small"
    shutil.copytree(FIXTURES / "ml-latest-small", d)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,good,2\n")
    with pytest.raises(InputError, match="'good'") as info:
        read_movielens(d)
    err = info.value
    assert (err.path, err.line, err.column) == (str(d / "ratings.csv"), 3, "rating")
