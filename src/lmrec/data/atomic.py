"""RecBole atomic files (``.inter/.item/.user/.kg/.link``): reading and writing.

Headers are typed, e.g. ``movie_title:token_seq``; columns are tab-separated and values of
``token_seq``/``float_seq`` fields are space-separated. The format has no quoting or escaping,
so the writer replaces tabs and line breaks inside values with spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset, FieldType
from lmrec.errors import InputError

SUFFIXES = ("inter", "item", "user", "kg", "link")
_FLOAT_TYPES = {FieldType.FLOAT}
_BREAKS = re.compile(r"[\t\r\n]")


def decode_text(raw: bytes, path: Path, encoding: str = "utf-8") -> str:
    """Decode file bytes; an undecodable byte raises `InputError` with its line number."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"cannot decode byte 0x{raw[e.start]:02x} as {encoding} (pass encoding=...)",
            path=path,
            line=line,
        ) from None
    return text.removeprefix("\ufeff")  # a BOM would otherwise stick to the first field name


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    return decode_text(path.read_bytes(), path, encoding)


def parse_header(header: list[str], path: Path) -> dict[str, FieldType]:
    """Map ``name:type`` header cells to ``{name: FieldType}``."""
    fields: dict[str, FieldType] = {}
    for cell in header:
        name, sep, typ = cell.strip().partition(":")
        if not sep or not name:
            raise InputError(f"header cell {cell!r} is not 'name:type'", path=path, line=1)
        if name in fields:
            raise InputError(f"field {name!r} appears twice in the header", path=path, line=1)
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

    ``float`` fields become float64 (empty values become NaN; bad values raise `InputError`
    with line and column); ``float_seq`` fields become float32 arrays; other fields stay
    strings. Blank lines are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", path=p)
    text = _read_text(p, encoding)
    if not text.strip():
        raise InputError("file is empty", path=p)
    # Split lines by hand: the format has no quoting, and csv.reader caps field size.
    lines = text.split("\n")
    fields = parse_header(lines[0].rstrip("\r").split("\t"), p)
    names = list(fields)
    body: list[list[str]] = []
    line_no: list[int] = []
    for i, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        row = line.split("\t")
        if len(row) != len(names):
            raise InputError(
                f"expected {len(names)} tab-separated values, got {len(row)}", path=p, line=i
            )
        body.append(row)
        line_no.append(i)
    df = pd.DataFrame(body, columns=names, dtype=object)
    for name, typ in fields.items():
        if typ in _FLOAT_TYPES:
            num = pd.to_numeric(df[name].replace("", np.nan), errors="coerce")
            bad = num.isna() & (df[name] != "")
            if bad.any():
                j = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(
                    f"not a number: {df[name].iloc[j]!r}", path=p, line=line_no[j], column=name
                )
            df[name] = num.astype(np.float64)
        elif typ == FieldType.FLOAT_SEQ:
            df[name] = pd.Series(
                [_float_seq(v, p, ln, name) for v, ln in zip(df[name], line_no, strict=True)],
                index=df.index,
                dtype=object,
            )
    return df, fields


def _float_seq(value: str, path: Path, line: int, column: str) -> np.ndarray:
    try:
        return np.asarray(value.split(), dtype=np.float32)
    except ValueError:
        raise InputError(
            f"not a list of numbers: {value[:50]!r}", path=path, line=line, column=column
        ) from None


def _format_float(x: object) -> str:
    if x is None or pd.isna(x):  # type: ignore[call-overload]
        return ""
    f = float(x)  # type: ignore[arg-type]
    # Integers print without ".0"; others use the shortest repr that round-trips exactly
    # (a fixed precision would corrupt millisecond timestamps).
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    return repr(f)


def _format_text(x: object) -> str:
    if x is None or (not isinstance(x, str) and pd.isna(x)):  # type: ignore[call-overload]
        return ""
    return _BREAKS.sub(" ", str(x))


def write_atomic_file(df: pd.DataFrame, path: str | Path, fields: Mapping[str, FieldType]) -> Path:
    """Write ``df``'s columns named in ``fields`` as an atomic file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols: list[list[str]] = []
    for name, typ in fields.items():
        col = df[name]
        if typ == FieldType.FLOAT_SEQ:
            # str() of a numpy float32 is its shortest exact repr.
            cols.append([" ".join(str(x) for x in v) if v is not None else "" for v in col])
        elif typ == FieldType.FLOAT:
            cols.append([_format_float(x) for x in col])
        else:
            cols.append([_format_text(x) for x in col])
    header = "\t".join(f"{n}:{t.value}" for n, t in fields.items())
    body = "".join("\t".join(row) + "\n" for row in zip(*cols, strict=True))
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


def _table_fields(
    table: pd.DataFrame, fields: Mapping[str, FieldType], id_col: str
) -> dict[str, FieldType]:
    return {
        id_col: FieldType.TOKEN,
        **{c: fields.get(c, FieldType.TOKEN_SEQ) for c in table.columns},
    }


def write_table(table: pd.DataFrame, path: str | Path, fields: Mapping[str, FieldType]) -> Path:
    """Write an item or user table (indexed by its ID) as an atomic file."""
    id_col = str(table.index.name or ITEM)
    flat = table.reset_index(names=id_col)
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
    try:
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
    except InputError as e:
        if e.path is not None or e.line is None:
            raise
        # Schema checks count rows, which match lines only without blank lines; name the file.
        raise InputError(e.message, path=inter_path, line=e.line, column=e.column) from None
