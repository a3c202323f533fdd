"""RecBole atomic files (``.inter/.item/.user/.kg/.link``): reading and writing.

Headers are typed, e.g. ``movie_title:token_seq``; columns are tab-separated and values of
``token_seq``/``float_seq`` fields are space-separated.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset, FieldType
from lmrec.errors import InputError

SUFFIXES = ("inter", "item", "user", "kg", "link")
_FLOAT_TYPES = {FieldType.FLOAT}


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"cannot decode byte 0x{raw[e.start]:02x} as {encoding}", path=path, line=line
        ) from None


def parse_header(header: list[str], path: Path) -> dict[str, FieldType]:
    """Map ``name:type`` header cells to ``{name: FieldType}``."""
    fields: dict[str, FieldType] = {}
    for cell in header:
        name, sep, typ = cell.strip().partition(":")
        if not sep or not name:
            raise InputError(f"header cell {cell!r} is not 'name:type'", path=path, line=1)
        try:
            fields[name] = FieldType(typ)
        except ValueError:
            valid = ", ".join(t.value for t in FieldType)
            raise InputError(
                f"unknown field type {typ!r} (valid: {valid})", path=path, line=1, column=name
            ) from None
    return fields


def read_atomic_file(
    path: str | Path, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, dict[str, FieldType]]:
    """Read one atomic file into a frame of strings/floats plus its field types.

    ``float`` fields become float64 (bad values raise `InputError` with line and column);
    ``float_seq`` fields become float32 arrays; other fields stay strings.
    """
    p = Path(path)
    text = _read_text(p, encoding)
    if not text.strip():
        raise InputError("file is empty", path=p)
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    fields = parse_header(rows[0], p)
    names = list(fields)
    body = [r for r in rows[1:] if r]
    for i, r in enumerate(rows[1:], start=2):
        if r and len(r) != len(names):
            raise InputError(f"expected {len(names)} tab-separated values, got {len(r)}", path=p, line=i)
    df = pd.DataFrame(body, columns=names, dtype=object)
    line_of = np.asarray([i for i, r in enumerate(rows[1:], start=2) if r])
    for name, typ in fields.items():
        if typ in _FLOAT_TYPES:
            num = pd.to_numeric(df[name].replace("", np.nan), errors="coerce")
            bad = num.isna() & (df[name] != "")
            if bad.any():
                j = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(
                    f"not a number: {df[name].iloc[j]!r}", path=p, line=int(line_of[j]), column=name
                )
            df[name] = num.astype(np.float64)
        elif typ == FieldType.FLOAT_SEQ:
            df[name] = [np.asarray(v.split(), dtype=np.float32) for v in df[name]]
    return df, fields


def write_atomic_file(df: pd.DataFrame, path: str | Path, fields: Mapping[str, FieldType]) -> Path:
    """Write ``df``'s columns named in ``fields`` as an atomic file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out = pd.DataFrame(index=df.index)
    for name, typ in fields.items():
        col = df[name]
        if typ == FieldType.FLOAT_SEQ:
            out[name] = [" ".join(f"{x:g}" for x in v) if v is not None else "" for v in col]
        elif typ == FieldType.FLOAT:
            out[name] = [f"{x:.10g}" if pd.notna(x) else "" for x in col]
        else:
            out[name] = col.fillna("").astype(str)
    header = "\t".join(f"{n}:{t.value}" for n, t in fields.items())
    body = out.to_csv(sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    p.write_text(header + "\n" + body, encoding="utf-8")
    return p


def inter_fields(df: pd.DataFrame) -> dict[str, FieldType]:
    """Atomic field types for an interactions frame (IDs as tokens, numbers as floats)."""
    fields = {USER: FieldType.TOKEN, ITEM: FieldType.TOKEN}
    for col in df.columns:
        if col in fields:
            continue
        is_num = col in (RATING, TIMESTAMP) or pd.api.types.is_numeric_dtype(df[col])
        fields[col] = FieldType.FLOAT if is_num else FieldType.TOKEN
    return fields


def write_inter(df: pd.DataFrame, path: str | Path) -> Path:
    """Write interactions as a RecBole ``.inter`` file."""
    return write_atomic_file(df, path, inter_fields(df))


def _table_fields(table: pd.DataFrame, fields: Mapping[str, FieldType], id_col: str) -> dict[str, FieldType]:
    return {id_col: FieldType.TOKEN, **{c: fields.get(c, FieldType.TOKEN_SEQ) for c in table.columns}}


def write_table(table: pd.DataFrame, path: str | Path, fields: Mapping[str, FieldType]) -> Path:
    """Write an item or user table (indexed by its ID) as an atomic file."""
    id_col = str(table.index.name or ITEM)
    flat = table.reset_index()
    return write_atomic_file(flat, path, _table_fields(table, fields, id_col))


def read_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """Read ``<dir>/<name>.inter`` and the optional ``.item/.user/.kg/.link`` beside it.

    Args:
        directory: Folder holding the atomic files.
        name: Dataset name (default: the folder's name, as RecBole does).
    """
    d = Path(directory)
    name = name or d.name
    inter_path = d / f"{name}.inter"
    if not inter_path.is_file():
        raise InputError(f"no {name}.inter in this folder", path=d)
    inter, _ = read_atomic_file(inter_path)
    tables: dict[str, tuple[pd.DataFrame, dict[str, FieldType]] | None] = {}
    for suffix in ("item", "user", "kg", "link"):
        p = d / f"{name}.{suffix}"
        tables[suffix] = read_atomic_file(p) if p.is_file() else None
    item, user = tables["item"], tables["user"]
    item_fields = {k: v for k, v in item[1].items() if k != ITEM} if item else {}
    user_fields = {k: v for k, v in user[1].items() if k != USER} if user else {}
    return Dataset.build(
        inter,
        item[0] if item else None,
        user[0] if user else None,
        item_fields=item_fields,
        user_fields=user_fields,
        kg=tables["kg"][0] if tables["kg"] else None,
        links=tables["link"][0] if tables["link"] else None,
        name=name,
    )
