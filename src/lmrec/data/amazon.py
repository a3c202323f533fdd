"""Amazon Reviews 2023 (McAuley Lab) loader: review and item-metadata JSON Lines files.

Items are keyed by ``parent_asin`` (the product, across its variants), as the dataset's own
benchmarks do.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset, FieldType
from lmrec.errors import InputError

ITEM_FIELDS = {
    "title": FieldType.TOKEN_SEQ,
    "description": FieldType.TOKEN_SEQ,
    "features": FieldType.TOKEN_SEQ,
    "categories": FieldType.TOKEN_SEQ,
    "store": FieldType.TOKEN,
    "main_category": FieldType.TOKEN,
    "price": FieldType.FLOAT,
    "average_rating": FieldType.FLOAT,
    "rating_number": FieldType.FLOAT,
}
_REVIEW_REQUIRED = ("user_id", "parent_asin", "rating")


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, parsed object) for each non-blank line of a (gzipped) JSONL file."""
    if not path.is_file():
        raise InputError("file not found", path=path)
    with path.open("rb") as f:  # sniff gzip by content: some mirrors drop the .gz suffix
        gz = f.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rt", encoding="utf-8") if gz else path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    msg = f"malformed JSON ({e.msg} at character {e.colno})"
                    raise InputError(msg, path=path, line=i) from None
                if not isinstance(obj, dict):
                    raise InputError("expected a JSON object", path=path, line=i)
                yield i, obj
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 ({e.reason})", path=path) from None
    except (OSError, EOFError) as e:  # truncated or corrupt gzip
        raise InputError(f"cannot read ({e})", path=path) from None


def _number(value: object, path: Path, line: int, key: str) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        msg = f"{key} is not a number: {value!r}"
        raise InputError(msg, path=path, line=line, column=key) from None
    if not math.isfinite(x):
        raise InputError(f"{key} must be finite, got {value!r}", path=path, line=line, column=key)
    return x


def _optional_number(value: object) -> float:
    """Floats for price-like fields: NaN for null, "None" or any non-numeric text."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _text(value: object) -> str:
    """One line of text from a string or a list of strings (paragraphs, bullet points)."""
    if value is None:
        return ""
    parts = value if isinstance(value, list) else [value]
    return " ".join(" ".join(str(p).split()) for p in parts if p is not None and str(p).strip())


def _tokens(values: object) -> str:
    """Space-separated tokens, inner spaces replaced by ``_``."""
    if not isinstance(values, list):
        values = [] if values is None else [values]
    return " ".join("_".join(str(v).split()) for v in values if str(v).strip())


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Read a review file into interactions (see `read_amazon_reviews`)."""
    p = Path(path)
    cols: dict[str, list[Any]] = {
        k: [] for k in (USER, ITEM, RATING, TIMESTAMP, "review_title", "review_text", "asin")
    }
    extra: dict[str, list[Any]] = {"helpful_vote": [], "verified_purchase": []}
    first_without_ts: int | None = None
    for i, obj in _lines(p):
        for key in _REVIEW_REQUIRED:
            if obj.get(key) in (None, ""):
                raise InputError(f"missing required key {key!r}", path=p, line=i, column=key)
        cols[USER].append(str(obj["user_id"]))
        cols[ITEM].append(str(obj["parent_asin"]))
        cols[RATING].append(_number(obj["rating"], p, i, "rating"))
        ts = obj.get("timestamp")
        if ts is None and first_without_ts is None:
            first_without_ts = i
        # Timestamps are Unix milliseconds; lmrec uses seconds.
        cols[TIMESTAMP].append(math.nan if ts is None else _number(ts, p, i, "timestamp") / 1e3)
        cols["review_title"].append(_text(obj.get("title")))
        cols["review_text"].append(_text(obj.get("text")))
        cols["asin"].append(str(obj.get("asin") or obj["parent_asin"]))
        extra["helpful_vote"].append(_optional_number(obj.get("helpful_vote")))
        extra["verified_purchase"].append(bool(obj.get("verified_purchase", False)))
    if not cols[USER]:
        raise InputError("file has no reviews", path=p)
    if first_without_ts is not None:
        if len(cols[TIMESTAMP]) > 0 and not np.isnan(cols[TIMESTAMP]).all():
            raise InputError(
                "missing key 'timestamp' (other reviews have one)",
                path=p,
                line=first_without_ts,
                column="timestamp",
            )
        del cols[TIMESTAMP]  # no timestamps at all: leave the column out
    return pd.DataFrame({**cols, **extra})


def read_meta(path: str | Path) -> pd.DataFrame:
    """Read an item-metadata file into an item table indexed by ``item_id`` (parent_asin)."""
    p = Path(path)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, obj in _lines(p):
        asin = obj.get("parent_asin")
        if asin in (None, ""):
            raise InputError("missing required key 'parent_asin'", path=p, line=i, column=ITEM)
        asin = str(asin)
        if asin in seen:
            raise InputError(
                f"duplicate parent_asin {asin!r}: also on line {seen[asin]}",
                path=p,
                line=i,
                column="parent_asin",
            )
        seen[asin] = i
        rows.append(
            {
                ITEM: asin,
                "title": _text(obj.get("title")),
                "description": _text(obj.get("description")),
                "features": _text(obj.get("features")),
                "categories": _tokens(obj.get("categories")),
                "store": _text(obj.get("store")),
                "main_category": _text(obj.get("main_category")),
                "price": _optional_number(obj.get("price")),
                "average_rating": _optional_number(obj.get("average_rating")),
                "rating_number": _optional_number(obj.get("rating_number")),
            }
        )
    if not rows:
        raise InputError("file has no items", path=p)
    table = pd.DataFrame(rows).set_index(ITEM)
    table.index = pd.Index(table.index, dtype=object, name=ITEM)
    return table


def read_amazon_reviews(reviews: str | Path, meta: str | Path | None = None) -> Dataset:
    """Read Amazon Reviews 2023 JSON Lines files (plain or gzipped) into a `Dataset`.

    Args:
        reviews: Review file, e.g. ``Video_Games.jsonl.gz``. Each review becomes an
            interaction: ``user_id``, ``item_id`` (the ``parent_asin``), ``rating``,
            ``timestamp`` (seconds), ``review_title``, ``review_text``, ``asin``,
            ``helpful_vote`` and ``verified_purchase``.
        meta: Metadata file, e.g. ``meta_Video_Games.jsonl.gz``, giving item fields
            ``title``, ``description``, ``features``, ``categories``, ``store``,
            ``main_category``, ``price`` (NaN when missing), ``average_rating`` and
            ``rating_number``.

    Raises:
        InputError: For a malformed line or a missing required key, naming file and line.
    """
    inter = read_reviews(reviews)
    items = read_meta(meta) if meta is not None else None
    name = Path(reviews).name.split(".")[0]
    return Dataset.build(
        inter,
        items,
        item_fields=ITEM_FIELDS if items is not None else None,
        name=name,
    )


__all__ = ["read_amazon_reviews", "read_meta", "read_reviews"]
