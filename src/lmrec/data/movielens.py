"""MovieLens loaders: ML-100K, ML-1M/10M (``::`` files) and the CSV releases (ml-latest,
ml-latest-small, ml-20m/25m/32m).

All formats give the same columns: interactions ``user_id, item_id, rating, timestamp``; items
``title`` (without the year), ``year``, ``genres`` (space-separated, inner spaces as ``_``) and,
for CSV releases with ``tags.csv``, ``tags``; users (100K and 1M only) ``age, gender,
occupation, zip_code``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, USER, Dataset, FieldType
from lmrec.data.tabular import read_interactions
from lmrec.errors import InputError

#: Genre names of ML-100K, in ``u.item`` flag order (used when ``u.genre`` is absent).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: ML-1M occupation codes (from its README); names are more useful to language models.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad_student",
    "customer_service", "doctor/health_care", "executive/managerial", "farmer", "homemaker",
    "K-12_student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
ITEM_FIELDS = {
    "title": FieldType.TOKEN_SEQ,
    "year": FieldType.TOKEN,
    "genres": FieldType.TOKEN_SEQ,
    "tags": FieldType.TOKEN_SEQ,  # CSV releases with tags.csv and ML-10M only
}
USER_FIELDS = {
    "age": FieldType.TOKEN,
    "gender": FieldType.TOKEN,
    "occupation": FieldType.TOKEN,
    "zip_code": FieldType.TOKEN,
}
_INTER = ["user_id", "item_id", "rating", "timestamp"]
_MARKERS = ("u.data", "ratings.dat", "ratings.csv")
# "Title (1995)"; ml-latest also has ranges such as "(2006-2007)" for series.
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")


def read_movielens(path: str | Path) -> Dataset:
    """Read a MovieLens release from its unzipped folder, detecting the format.

    Args:
        path: Folder holding ``u.data`` (100K), ``ratings.dat`` (1M/10M) or ``ratings.csv``
            (CSV releases), or a folder with exactly one such subfolder.

    Returns:
        A `Dataset` named after the folder.

    Raises:
        InputError: When no known layout is found or a file is malformed.
    """
    d = _find_root(Path(path))
    if (d / "u.data").is_file():
        inter, items, users = _read_100k(d)
    elif (d / "ratings.dat").is_file():
        inter, items, users = _read_dat(d)
    else:
        inter, items, users = _read_csv_release(d)
    return Dataset.build(
        inter,
        items,
        users,
        item_fields={k: v for k, v in ITEM_FIELDS.items() if k in items.columns},
        user_fields=USER_FIELDS if users is not None else None,
        name=d.name,
    )


def _find_root(d: Path) -> Path:
    if not d.is_dir():
        raise InputError("not a folder (unzip the MovieLens archive first)", path=d)
    if any((d / m).is_file() for m in _MARKERS):
        return d
    subs = [s for s in d.iterdir() if s.is_dir() and any((s / m).is_file() for m in _MARKERS)]
    if len(subs) == 1:
        return subs[0]
    found = sorted(p.name for p in d.iterdir())[:20]
    raise InputError(
        f"no MovieLens files found: expected one of {list(_MARKERS)}; found {found}", path=d
    )


def _decode(path: Path) -> str:
    # ML-100K and ML-1M are latin-1, ML-10M and the CSV releases utf-8.
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_sep(
    path: Path, sep: str, names: list[str], numeric: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read a header-less MovieLens file; ``numeric`` columns become float64.

    ``::`` becomes a tab first so that pandas' fast C parser can read it.
    """
    if not path.is_file():
        raise InputError("file not found", path=path)
    text = _decode(path)
    if sep == "::":
        text, sep = text.replace("::", "\t"), "\t"

    def parse(typed: tuple[str, ...]) -> pd.DataFrame:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            names=names,
            quoting=csv.QUOTE_NONE,  # titles may start with '"'
            # object, not str: pandas 3 Arrow strings are slow to build for big logs
            dtype={n: "float64" if n in typed else object for n in names},
            keep_default_na=False,
            na_filter=False,
            index_col=False,
        )

    try:
        df = parse(numeric)
    except pd.errors.ParserError as e:
        msg = f"cannot parse as {len(names)} {sep!r}-separated fields: {e}"
        raise InputError(msg, path=path) from None
    except ValueError as e:  # a bad number: parse strings to find and quote it
        _raise_first_bad_number(parse(()), numeric, path)
        raise InputError(f"cannot parse: {e}", path=path) from None
    if df.empty:
        raise InputError("file is empty", path=path)
    return df


def _raise_first_bad_number(df: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    for col in columns:
        bad = pd.to_numeric(df[col], errors="coerce").isna().to_numpy()
        if bad.any():
            j = int(np.argmax(bad))  # files have no header, so row j is line j + 1
            what = f"not a number: {df[col].iloc[j]!r}" if df[col].iloc[j] else "missing value"
            raise InputError(what, path=path, line=j + 1, column=col)


def _read_ratings(path: Path, sep: str) -> pd.DataFrame:
    return _read_sep(path, sep, _INTER, ("rating", "timestamp"))


def _split_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Titles without the trailing "(year)", and the year (None where absent)."""
    parts = titles.str.strip().str.extract(_TITLE_YEAR)
    title = parts[0].where(parts[0].notna(), titles.str.strip())
    year = parts[1].astype(object).where(parts[1].notna(), None)
    return title.astype(object), year


def _genre_tokens(names: list[str]) -> list[str]:
    return [g.strip().replace(" ", "_") for g in names if g.strip() != "(no genres listed)"]


def _items(ids: pd.Series, titles: pd.Series, genres: list[str]) -> pd.DataFrame:
    title, year = _split_title(titles)
    return pd.DataFrame(
        {"title": title.to_numpy(), "year": year.to_numpy(), "genres": genres},
        index=pd.Index(ids.to_numpy(), dtype=object, name=ITEM),
    )


def _read_100k(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    inter = _read_ratings(d / "u.data", "\t")
    genres = list(ML100K_GENRES)
    if (d / "u.genre").is_file():
        g = _read_sep(d / "u.genre", "|", ["name", "idx"])
        g = g[g["name"].str.strip() != ""]
        genres = g.sort_values("idx", key=lambda s: s.astype(int))["name"].tolist()
    names = ["item_id", "title", "release", "video", "url", *[f"g{i}" for i in range(len(genres))]]
    raw = _read_sep(d / "u.item", "|", names)
    flags = raw[names[5:]].to_numpy() == "1"
    tokens = _genre_tokens(genres)
    genre_col = [" ".join(t for t, f in zip(tokens, row, strict=True) if f) for row in flags]
    items = _items(raw["item_id"], raw["title"], genre_col)
    # The release date ("01-Jan-1995") gives the year where the title lacks one.
    release_year = raw["release"].str.extract(r"(\d{4})\s*$")[0].to_numpy()
    items["year"] = items["year"].where(items["year"].notna(), release_year)
    items["year"] = items["year"].where(items["year"].notna(), None)
    users = _users(_read_sep(d / "u.user", "|", [USER, "age", "gender", "occupation", "zip_code"]))
    return inter, items, users


def _users(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index(USER)[list(USER_FIELDS)].astype(object)


def _read_dat(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    inter = _read_ratings(d / "ratings.dat", "::")
    raw = _read_sep(d / "movies.dat", "::", ["item_id", "title", "genres"])
    items = _items(raw["item_id"], raw["title"], _genre_col(raw["genres"]))
    users = None
    if (d / "users.dat").is_file():  # ML-1M only
        u = _read_sep(d / "users.dat", "::", [USER, "gender", "age", "occupation", "zip_code"])
        u["occupation"] = [_occupation(o) for o in u["occupation"]]
        users = _users(u)
    if (d / "tags.dat").is_file():  # ML-10M
        tags = _read_sep(d / "tags.dat", "::", ["user_id", "item_id", "tag", "timestamp"])
        items["tags"] = _tag_col(items.index, tags["item_id"], tags["tag"])
    return inter, items, users


def _occupation(code: str) -> str:
    ok = code.isdigit() and int(code) < len(ML1M_OCCUPATIONS)
    return ML1M_OCCUPATIONS[int(code)] if ok else code


def _genre_col(genres: pd.Series) -> list[str]:
    return [" ".join(_genre_tokens(str(g).split("|"))) for g in genres]


def _tag_col(index: pd.Index, item_ids: pd.Series, tags: pd.Series) -> np.ndarray:
    """Per item: its distinct tags, lower-cased, inner spaces as ``_``, space-separated."""
    t = pd.DataFrame({"item": item_ids.astype(str), "tag": tags.astype(str).str.strip()})
    t["tag"] = t["tag"].str.lower().str.replace(r"\s+", "_", regex=True)
    t = t[t["tag"] != ""].drop_duplicates()
    joined = t.groupby("item", sort=False)["tag"].agg(" ".join)
    return joined.reindex(index).fillna("").to_numpy(dtype=object)


def _read_csv_file(path: Path, dtype: dict[str, str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=dtype, keep_default_na=False, na_filter=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(f"cannot parse: {e}", path=path) from None
    missing = [c for c in dtype if c not in df.columns]
    if missing:
        raise InputError(
            f"missing column(s) {missing}; found {list(df.columns)}", path=path, line=1
        )
    return df


def _read_csv_release(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    # ratings.csv is the big file: read it with the generic loader's checks and messages.
    mapping = {USER: "userId", ITEM: "movieId", "rating": "rating", "timestamp": "timestamp"}
    inter = read_interactions(d / "ratings.csv", mapping, on_duplicate="keep")[_INTER]
    m = _read_csv_file(
        d / "movies.csv", {"movieId": "object", "title": "object", "genres": "object"}
    )
    items = _items(m["movieId"], m["title"], _genre_col(m["genres"]))
    if (d / "tags.csv").is_file():
        t = _read_csv_file(d / "tags.csv", {"movieId": "object", "tag": "object"})
        items["tags"] = _tag_col(items.index, t["movieId"], t["tag"])
    return inter, items, None


__all__ = ["ML100K_GENRES", "read_movielens"]
