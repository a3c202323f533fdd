"""Tests for lmrec.data.amazon (Amazon Reviews 2023 JSON Lines)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from lmrec.data.amazon import read_amazon_reviews
from lmrec.data.schema import FieldType
from lmrec.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "amazon"
REVIEW = {"rating": 5.0, "parent_asin": "B1", "user_id": "U1", "timestamp": 1588687728923}


def jsonl(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_reviews_and_meta() -> None:
    ds = read_amazon_reviews(FIXTURES / "reviews.jsonl", FIXTURES / "meta.jsonl")
    assert ds.name == "reviews"
    inter = ds.interactions
    assert inter["user_id"].tolist() == ["U1", "U1", "U2"]
    assert inter["item_id"].tolist() == ["B001", "B002", "B003"]  # parent_asin, not asin
    assert inter["asin"].tolist() == ["B001V1", "B002", "B003"]
    assert inter["rating"].tolist() == [5.0, 2.0, 4.0]
    assert inter["timestamp"].tolist() == [1588687728.923, 1588687729.0, 1600000000.5]
    assert inter["review_title"].tolist() == ["Great pan", "Meh", ""]
    assert inter["review_text"].iloc[1] == "Handle got loose after a week"
    assert inter["helpful_vote"].tolist() == [2.0, 0.0, 1.0]
    assert inter["verified_purchase"].tolist() == [True, False, True]

    pan = ds.items.loc["B001"]
    assert pan["title"] == "Cast Iron Pan"
    assert pan["description"] == "A heavy pan. Lasts for decades."
    assert pan["features"] == "Pre-seasoned 10 inch"
    assert pan["categories"] == "Home_&_Kitchen Cookware Skillets"
    assert pan["store"] == "Acme Cookware" and pan["main_category"] == "Home"
    assert (pan["price"], pan["average_rating"], pan["rating_number"]) == (24.99, 4.6, 120.0)
    assert math.isnan(ds.items.loc["B002", "price"])  # "None" in the file
    assert math.isnan(ds.items.loc["B009", "price"])  # null in the file
    assert ds.items.loc["B002", "store"] == ""
    # Items without metadata are still in the catalog; unreviewed ones are kept too.
    assert set(ds.item_ids) == {"B001", "B002", "B003", "B009"}
    assert ds.item_fields["price"] == FieldType.FLOAT
    assert ds.item_fields["categories"] == FieldType.TOKEN_SEQ


def test_gzip_and_no_meta(tmp_path: Path) -> None:
    p = tmp_path / "Toys.jsonl.gz"
    p.write_bytes(gzip.compress((FIXTURES / "reviews.jsonl").read_bytes()))
    ds = read_amazon_reviews(p)
    assert ds.name == "Toys"
    assert ds.n_interactions == 3
    assert list(ds.items.columns) == []


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    p = jsonl(tmp_path, "r.jsonl", [json.dumps(REVIEW), "", '{"rating": 5.0, "user_id": '])
    with pytest.raises(InputError, match="malformed JSON") as info:
        read_amazon_reviews(p)
    assert (info.value.path, info.value.line) == (str(p), 3)
    assert f"{p}, line 3" in str(info.value)


def test_malformed_json_in_gzipped_meta(tmp_path: Path) -> None:
    reviews = jsonl(tmp_path, "r.jsonl", [json.dumps(REVIEW)])
    meta = tmp_path / "m.jsonl.gz"
    meta.write_bytes(gzip.compress(b'{"parent_asin": "B1"}\n[1, 2\n'))
    with pytest.raises(InputError) as info:
        read_amazon_reviews(reviews, meta)
    assert (info.value.path, info.value.line) == (str(meta), 2)


@pytest.mark.parametrize("key", ["user_id", "parent_asin", "rating"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    bad = {k: v for k, v in REVIEW.items() if k != key}
    p = jsonl(tmp_path, "r.jsonl", [json.dumps(REVIEW), json.dumps(bad)])
    with pytest.raises(InputError, match=f"missing required key '{key}'") as info:
        read_amazon_reviews(p)
    assert (info.value.path, info.value.line, info.value.column) == (str(p), 2, key)


def test_bad_rating_and_partial_timestamps(tmp_path: Path) -> None:
    p = jsonl(tmp_path, "r.jsonl", [json.dumps({**REVIEW, "rating": "five"})])
    with pytest.raises(InputError, match="'five'") as info:
        read_amazon_reviews(p)
    assert (info.value.line, info.value.column) == (1, "rating")
    no_ts = {k: v for k, v in REVIEW.items() if k != "timestamp"}
    p = jsonl(tmp_path, "r.jsonl", [json.dumps(REVIEW), json.dumps(no_ts)])
    with pytest.raises(InputError) as info:
        read_amazon_reviews(p)
    assert (info.value.line, info.value.column) == (2, "timestamp")
    # No timestamps at all is fine: the column is left out.
    p = jsonl(tmp_path, "r.jsonl", [json.dumps(no_ts)])
    assert "timestamp" not in read_amazon_reviews(p).interactions.columns


def test_meta_errors(tmp_path: Path) -> None:
    reviews = jsonl(tmp_path, "r.jsonl", [json.dumps(REVIEW)])
    meta = jsonl(tmp_path, "m.jsonl", ['{"parent_asin": "B1"}', '{"title": "x"}'])
    with pytest.raises(InputError, match="parent_asin") as info:
        read_amazon_reviews(reviews, meta)
    assert (info.value.path, info.value.line) == (str(meta), 2)
    meta = jsonl(tmp_path, "m.jsonl", ['{"parent_asin": "B1"}', '{"parent_asin": "B1"}'])
    with pytest.raises(InputError, match="also on line 1") as info:
        read_amazon_reviews(reviews, meta)
    assert info.value.line == 2


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no reviews"):
        read_amazon_reviews(jsonl(tmp_path, "r.jsonl", [""]))
    with pytest.raises(InputError, match="not found"):
        read_amazon_reviews(tmp_path / "nope.jsonl")
