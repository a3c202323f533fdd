"""Tests for lmrec.data.atomic: RecBole atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmrec.data.atomic import (
    read_atomic,
    read_atomic_file,
    write_atomic_file,
    write_inter,
    write_table,
)
from lmrec.data.schema import Dataset, FieldType
from lmrec.errors import InputError

HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def error_of(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        read_atomic_file(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def test_read_types_blank_lines_and_crlf(tmp_path: Path) -> None:
    p = write(tmp_path, "x.inter", HEAD.replace("\n", "\r\n") + "1\t2\t3\t10\r\n\r\n1\t3\t\t11\r\n")
    df, fields = read_atomic_file(p)
    assert fields == {
        "user_id": FieldType.TOKEN,
        "item_id": FieldType.TOKEN,
        "rating": FieldType.FLOAT,
        "timestamp": FieldType.FLOAT,
    }
    assert df["item_id"].tolist() == ["2", "3"]
    assert df["rating"].iloc[0] == 3.0 and np.isnan(df["rating"].iloc[1])
    assert df["timestamp"].tolist() == [10.0, 11.0]


def test_bom_is_ignored(tmp_path: Path) -> None:
    df, fields = read_atomic_file(write(tmp_path, "x.inter", "\ufeff" + HEAD + "1\t2\t3\t4\n"))
    assert "user_id" in fields and df["user_id"].tolist() == ["1"]


def test_quotes_and_backslashes_are_plain_text(tmp_path: Path) -> None:
    p = write(tmp_path, "x.item", 'item_id:token\ttitle:token_seq\n1\t"Cats" \\o/\n')
    df, _ = read_atomic_file(p)
    assert df["title"].tolist() == ['"Cats" \\o/']


def test_float_seq(tmp_path: Path) -> None:
    p = write(tmp_path, "x.item", "item_id:token\temb:float_seq\n1\t0.1 2 -3e-2\n2\t\n")
    df, _ = read_atomic_file(p)
    assert df["emb"].iloc[0].dtype == np.float32
    np.testing.assert_array_equal(df["emb"].iloc[0], np.float32([0.1, 2, -0.03]))
    assert len(df["emb"].iloc[1]) == 0


@pytest.mark.parametrize(
    ("content", "line", "column", "word"),
    [
        ("user_id\titem_id:token\n1\t2\n", 1, None, "'user_id'"),
        ("user_id:tok\titem_id:token\n1\t2\n", 1, "user_id", "'tok'"),
        ("a:token\ta:float\n1\t2\n", 1, None, "twice"),
        (HEAD + "1\t2\t3\t4\n\n1\t2\t3\n", 4, None, "got 3"),
        (HEAD + "1\t2\t3\t4\n1\t2\tx\t4\n", 3, "rating", "'x'"),
        ("item_id:token\temb:float_seq\n1\t0.5 y\n", 2, "emb", "'0.5 y'"),
    ],
)
def test_read_errors(
    tmp_path: Path, content: str, line: int, column: str | None, word: str
) -> None:
    err = error_of(write(tmp_path, "x.inter", content))
    assert (err.line, err.column) == (line, column)
    assert f"line {line}" in str(err) and word in str(err)


def test_undecodable_empty_and_missing(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "a.inter", HEAD.encode() + b"1\t2\t3\t4\n\xff\t2\t3\t4\n"))
    assert err.line == 3 and "0xff" in str(err)
    assert "empty" in str(error_of(write(tmp_path, "b.inter", "\n")))
    assert "not found" in str(error_of(tmp_path / "c.inter"))


def test_write_read_round_trip_exact(tmp_path: Path) -> None:
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "rating": [4.5, 0.1],
            "timestamp": [1588687728.923, 1588687728923.0],  # ms values need 13 digits
        }
    )
    p = write_inter(inter, tmp_path / "x.inter")
    assert p.read_text().splitlines()[0] == HEAD.strip()
    back, _ = read_atomic_file(p)
    assert back["rating"].tolist() == [4.5, 0.1]
    assert back["timestamp"].tolist() == [1588687728.923, 1588687728923.0]


def test_write_table_sanitises_text(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "title": ['"Cats" \\o/', "tab\there", "two\nlines", None],
            "emb": [np.float32([0.1, 1 / 3]), np.float32([1]), np.float32([]), None],
        },
        index=pd.Index(["1", "2", "3", "4"], name="item_id"),
    )
    fields = {"title": FieldType.TOKEN_SEQ, "emb": FieldType.FLOAT_SEQ}
    p = write_table(table, tmp_path / "x.item", fields)
    back, back_fields = read_atomic_file(p)
    assert back_fields == {"item_id": FieldType.TOKEN, **fields}
    assert back["title"].tolist() == ['"Cats" \\o/', "tab here", "two lines", ""]
    np.testing.assert_array_equal(back["emb"].iloc[0], np.float32([0.1, 1 / 3]))


def test_write_atomic_file_formats_floats(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, 2.5, np.nan, 1e20]})
    p = write_atomic_file(df, tmp_path / "x.item", {"x": FieldType.FLOAT})
    assert p.read_text().splitlines()[1:] == ["1", "2.5", "", "1e+20"]


def test_read_atomic_folder(tmp_path: Path) -> None:
    d = tmp_path / "toy"
    d.mkdir()
    write(d, "toy.inter", HEAD + "1\t10\t5\t100\n2\t11\t3\t101\n")
    write(d, "toy.item", "item_id:token\ttitle:token_seq\n10\tHeat\n12\tUp\n")
    write(d, "toy.user", "user_id:token\tage:token\n1\t30\n")
    write(d, "toy.kg", "head_id:token\trelation_id:token\ttail_id:token\na\tr\tb\n")
    write(d, "toy.link", "item_id:token\tentity_id:token\n10\ta\n")
    ds = read_atomic(d)
    assert isinstance(ds, Dataset) and ds.name == "toy"
    assert ds.item_ids.tolist() == ["10", "12", "11"]
    assert ds.item_fields == {"title": FieldType.TOKEN_SEQ}
    assert ds.user_fields == {"age": FieldType.TOKEN}
    assert ds.kg is not None and ds.kg.iloc[0].tolist() == ["a", "r", "b"]
    assert ds.links is not None and ds.links["entity_id"].tolist() == ["a"]


def test_read_atomic_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no toy\.inter"):
        read_atomic(tmp_path / "toy")
    d = tmp_path / "toy"
    d.mkdir()
    p = write(d, "toy.inter", HEAD + "1\t10\t5\t100\n2\t11\t\t101\n")
    with pytest.raises(InputError) as info:
        read_atomic(d)
    assert (info.value.path, info.value.line, info.value.column) == (str(p), 3, "rating")
