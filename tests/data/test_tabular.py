"""Tests for lmrec.data.tabular: generic interaction/table loading and its error messages."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmrec.data import tabular
from lmrec.data.schema import FieldType
from lmrec.data.tabular import load_dataset, read_interactions, read_table
from lmrec.errors import ConfigError, InputError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def raises_at(
    path: Path, line: int | None, column: str | None, *words: str, **kwargs: object
) -> InputError:
    """Read ``path`` and check the error names the file, line, column and ``words``."""
    with pytest.raises(InputError) as info:
        read_interactions(path, **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.column == column
    text = str(err)
    assert str(path) in text
    if line is not None:
        assert f"line {line}" in text
    if column is not None:
        assert f"column '{column}'" in text
    for w in words:
        assert w in text
    return err


# -- happy paths ------------------------------------------------------------------------------


def test_csv_types_and_extra_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item_id,rating,timestamp,device\n007,1,4.5,10,web\n")
    df = read_interactions(p)
    assert df["user_id"].tolist() == ["007"]  # IDs stay strings: leading zeros survive
    assert df["rating"].dtype == np.float64 and df["rating"].tolist() == [4.5]
    assert df["timestamp"].tolist() == [10.0]
    assert df["device"].tolist() == ["web"]


def test_mapping_renames_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "userId,movieId,score\nu1,m1,3\nu2,m1,5\n")
    df = read_interactions(
        p, mapping={"user_id": "userId", "item_id": "movieId", "rating": "score"}
    )
    assert list(df.columns) == ["user_id", "item_id", "rating"]
    assert df["rating"].tolist() == [3.0, 5.0]


def test_tsv_ignores_quotes_and_blank_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "r.tsv", 'user_id\titem_id\tnote\n1\t2\t"quoted\n\n3\t4\tx\n')
    df = read_interactions(p)
    assert df["note"].tolist() == ['"quoted', "x"]


def test_csv_quoted_fields_and_custom_sep(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", 'user_id;item_id;note\n1;2;"a;b"\n')
    assert read_interactions(p, sep=";")["note"].tolist() == ["a;b"]


def test_gzipped_csv(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv.gz", gzip.compress(b"user_id,item_id\n1,2\n"))
    assert read_interactions(p)["item_id"].tolist() == ["2"]


def test_parquet_float_ids_become_integer_strings(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [3.0, 4.0], "rating": [1, 2]}).to_parquet(p)
    df = read_interactions(p)
    assert df["item_id"].tolist() == ["3", "4"]
    assert df["rating"].dtype == np.float64


def test_atomic_inter(tmp_path: Path) -> None:
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    df = read_interactions(p)
    assert df.to_dict("list") == {"user_id": ["1"], "item_id": ["2"], "rating": [3.0]}


def test_duplicates_drop_and_keep(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item_id\n1,2\n1,2\n1,3\n")
    assert len(read_interactions(p, on_duplicate="drop")) == 2
    assert len(read_interactions(p, on_duplicate="keep")) == 3


# -- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    raises_at(tmp_path / "nope.csv", None, None, "not found")


@pytest.mark.parametrize("content", ["", "\n\n", "user_id,item_id\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    err = raises_at(write(tmp_path, "r.csv", content), None, None)
    assert "empty" in str(err) or "no data rows" in str(err)


def test_missing_required_columns_lists_found(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "userId,movieId\n1,2\n")
    raises_at(p, 1, None, "['user_id', 'item_id']", "['userId', 'movieId']", "mapping")


def test_mapped_column_absent(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item\n1,2\n")
    raises_at(p, 1, None, "item_id -> 'movie'", mapping={"item_id": "movie"})


def test_unknown_mapping_key(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(ConfigError, match="userid"):
        read_interactions(p, mapping={"userid": "user_id"})


@pytest.mark.parametrize(
    ("content", "line", "column", "word"),
    [
        ("user_id,item_id,rating\n1,2,3\n1,3,abc\n", 3, "rating", "'abc'"),
        ("user_id,item_id,timestamp\n1,2,3\n\n1,3,2020-01-01\n", 4, "timestamp", "'2020-01-01'"),
        ("user_id,item_id,rating\n1,2,\n", 2, "rating", "empty"),
        ("user_id,item_id,rating\n1,2,3\n1,3,NaN\n", 3, "rating", "'NaN'"),
        ("user_id,item_id,rating\n1,2,inf\n", 2, "rating", "'inf'"),
        ("user_id,item_id,rating\n1,2,-Infinity\n", 2, "rating", "finite"),
        ("user_id,item_id\n1,2\n,3\n", 3, "user_id", "empty"),
        ("user_id,item_id\n1,2\n1, \n", 3, "item_id", "empty"),
        ("user_id,item_id\n1,2\nnan,3\n", 3, "user_id", "missing value"),
        ("user_id,item_id\n1,inf\n", 2, "item_id", "missing value"),
    ],
)
def test_bad_values(tmp_path: Path, content: str, line: int, column: str, word: str) -> None:
    raises_at(write(tmp_path, "r.csv", content), line, column, word)


def test_bad_value_names_the_files_column_when_mapped(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "u,i,score\n1,2,x\n")
    raises_at(p, 2, "score", "'x'", mapping={"user_id": "u", "item_id": "i", "rating": "score"})


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", 'user_id,item_id,note\n1,2,"two\nlines"\n1,3,ok\n1,,x\n')
    raises_at(p, 5, "item_id", "empty")


def test_duplicate_rows_name_both_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item_id,rating\n1,2,3\n1,3,4\n\n1,2,3.0\n")
    raises_at(p, 5, None, "duplicate row", "line 2")


def test_undecodable_bytes(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", b"user_id,item_id\n1,2\n1,caf\xe9\n")
    raises_at(p, 3, None, "0xe9", "utf-8")
    assert read_interactions(p, encoding="latin-1")["item_id"].tolist() == ["2", "caf\u00e9"]


@pytest.mark.parametrize(
    ("content", "line", "got"),
    [
        ("user_id,item_id,rating\n1,2,3\n1,2,3,4\n", 3, "got 4"),
        ("user_id,item_id,rating\n1,2,3\n1,2\n", 3, "got 2"),
        ('user_id,item_id,rating\n1,"a,b",3\n"x\ny",2\n', 3, "got 2"),
    ],
)
def test_wrong_field_count(tmp_path: Path, content: str, line: int, got: str) -> None:
    raises_at(write(tmp_path, "r.csv", content), line, None, "expected 3", got)


def test_wrong_field_count_tsv(tmp_path: Path) -> None:
    p = write(tmp_path, "r.tsv", "user_id\titem_id\n1\t2\n\n1\t2\t3\n")
    raises_at(p, 4, None, "tab-separated", "got 3")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    raises_at(write(tmp_path, "r.json", "{}"), None, None, "'.json'", ".csv", ".parquet", ".inter")


def test_duplicate_header_column(tmp_path: Path) -> None:
    raises_at(write(tmp_path, "r.csv", "user_id,item_id,user_id\n1,2,3\n"), 1, None, "twice")


def test_parquet_errors_say_row(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", None, "z"]}).to_parquet(p)
    raises_at(p, 3, "item_id", "row 1", "empty")
    pd.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["x", "y"], "rating": [1.0, np.inf]}
    ).to_parquet(p)
    raises_at(p, 3, "rating", "row 1", "finite")
    pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "y", "x"]}).to_parquet(p)
    raises_at(p, 4, None, "row 2", "same as row 0")


def test_parquet_missing_columns_and_corrupt(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user": ["a"], "item_id": ["x"]}).to_parquet(p)
    raises_at(p, None, None, "['user_id']", "['user', 'item_id']")
    raises_at(write(tmp_path, "bad.parquet", b"not parquet at all"), None, None, "Parquet")


def test_atomic_inter_errors(tmp_path: Path) -> None:
    head = "user_id:token\titem_id:token\trating:float\n"
    raises_at(write(tmp_path, "a.inter", head + "1\t2\t3\n\n1\t3\t\n"), 4, "rating", "empty")
    raises_at(write(tmp_path, "b.inter", head + "1\t2\tx\n"), 2, "rating", "'x'")
    raises_at(write(tmp_path, "c.inter", head + "1\t2\t3\n\n1\t2\t3\n"), 4, None, "line 2")


# -- read_table and load_dataset --------------------------------------------------------------


def test_read_table_types(tmp_path: Path) -> None:
    p = write(tmp_path, "m.csv", 'movieId,title,year,price\n1,"Heat, The",1995,\n2,Up,2009,9.5\n')
    table, fields = read_table(p, "item_id", {"item_id": "movieId"})
    assert table.index.name == "item_id" and table.index.tolist() == ["1", "2"]
    assert fields == {
        "title": FieldType.TOKEN_SEQ,
        "year": FieldType.FLOAT,
        "price": FieldType.FLOAT,
    }
    assert np.isnan(table.loc["1", "price"]) and table.loc["2", "price"] == 9.5
    assert table.loc["1", "title"] == "Heat, The"


def test_read_table_atomic_keeps_header_types(tmp_path: Path) -> None:
    p = write(tmp_path, "x.item", "item_id:token\tyear:token\temb:float_seq\n1\t1995\t0.5 1\n")
    table, fields = read_table(p, "item_id")
    assert fields == {"year": FieldType.TOKEN, "emb": FieldType.FLOAT_SEQ}
    assert table.loc["1", "year"] == "1995"


def test_read_table_parquet(tmp_path: Path) -> None:
    p = tmp_path / "u.parquet"
    pd.DataFrame({"user_id": [1, 2], "age": [30, 40], "city": ["A", "B"]}).to_parquet(p)
    table, fields = read_table(p, "user_id")
    assert table.index.tolist() == ["1", "2"]
    assert fields == {"age": FieldType.FLOAT, "city": FieldType.TOKEN_SEQ}


def test_read_table_duplicate_ids_name_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "m.csv", "item_id,title\n1,a\n2,b\n\n1,c\n")
    with pytest.raises(InputError) as info:
        read_table(p, "item_id")
    assert (info.value.path, info.value.line, info.value.column) == (str(p), 5, "item_id")
    assert "also on line 2" in str(info.value)


def test_read_table_missing_id_column(tmp_path: Path) -> None:
    p = write(tmp_path, "m.csv", "movieId,title\n1,a\n")
    with pytest.raises(InputError, match=r"\['item_id'\].*\['movieId', 'title'\]") as info:
        read_table(p, "item_id")
    assert info.value.line == 1


def test_read_table_empty_id(tmp_path: Path) -> None:
    p = write(tmp_path, "m.csv", "item_id,title\n1,a\n,b\n")
    with pytest.raises(InputError) as info:
        read_table(p, "item_id")
    assert (info.value.line, info.value.column) == (3, "item_id")


def test_load_dataset_combines_files(tmp_path: Path) -> None:
    train = write(tmp_path, "ratings.csv", "userId,movieId,rating\n1,10,4\n2,11,5\n")
    items = write(tmp_path, "movies.csv", "movieId,title\n10,Heat\n12,Up\n")
    users = write(tmp_path, "users.tsv", "user_id\tage\n1\t30\n")
    ds = load_dataset(train, items, users, mapping={"user_id": "userId", "item_id": "movieId"})
    assert ds.name == "ratings"
    assert ds.item_ids.tolist() == ["10", "12", "11"]  # catalog items first, then unseen ones
    assert ds.items.loc["10", "title"] == "Heat"
    assert ds.user_fields == {"age": FieldType.FLOAT}
    assert ds.users.loc["1", "age"] == 30.0
    assert ds.n_interactions == 2


def test_field_counts_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "_BLOCK", 8)  # many tiny blocks: boundaries fall everywhere
    rows = [f"u{i},i{i}" for i in range(40)]
    rows[30] = "u30,i30,extra"
    p = write(tmp_path, "r.csv", "user_id,item_id\n" + "\n".join(rows[:10]) + "\n\n")
    p.write_text(p.read_text() + "\n".join(rows[10:]) + "\n")
    raises_at(p, 33, None, "got 3")  # header + 10 rows + blank line + 21 rows before it


def test_non_ascii_compatible_encoding(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user_id,item_id\nu1,caf\u00e9\n".encode("utf-16"))
    assert read_interactions(p, encoding="utf-16")["item_id"].tolist() == ["caf\u00e9"]
    p.write_bytes("user_id,item_id\nu1,i1,x\n".encode("utf-16"))
    raises_at(p, 2, None, "got 3", encoding="utf-16")
