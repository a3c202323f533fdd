"""Generic loaders for interaction logs and item/user tables (CSV, TSV, Parquet, atomic).

Every problem in the input raises `InputError` naming the file, the 1-based line (the header
is line 1) and the column. Parsing goes through pandas' C parser for speed; line numbers are
only worked out (by a second pass) once something is wrong.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lmrec.data.atomic import decode_text, read_atomic_file
from lmrec.data.schema import (
    EVENT,
    ITEM,
    RATING,
    TIMESTAMP,
    USER,
    Dataset,
    FieldType,
    normalize_interactions,
)
from lmrec.errors import ConfigError, InputError

OnDuplicate = Literal["error", "drop", "keep"]
_TEXT = {".csv": ",", ".tsv": "\t", ".txt": "\t"}  # default separator per extension
INTERACTION_FORMATS = (*_TEXT, ".parquet", ".inter")
TABLE_FORMATS = (*_TEXT, ".parquet", ".item", ".user")
_CANONICAL = (USER, ITEM, RATING, TIMESTAMP, EVENT)
_NUMERIC = (RATING, TIMESTAMP)
# Strings that mean "no value" to most tools; as IDs they almost always hide a data bug.
_MISSING_IDS = {"nan", "inf", "+inf", "-inf", "infinity", "-infinity"}
_BLOCK = 1 << 25  # bytes per block when counting fields


@dataclass
class _Source:
    """An opened input file: its text or frame, and how to turn rows into lines."""

    path: Path
    kind: Literal["text", "parquet", "atomic"]
    text: str = ""  # decoded text (atomic files: filled in when an error needs lines)
    sep: str = ","
    quoted: bool = True  # whether '"' quotes fields (csv.QUOTE_MINIMAL) or is plain text
    encoding: str = "utf-8"
    frame: pd.DataFrame | None = None  # parquet and atomic files are read whole at once
    fields: dict[str, FieldType] = field(default_factory=dict)  # atomic header types
    checked: bool = False  # field counts verified
    raw: bytes = b""  # undecoded text, kept until the field counts are checked
    _lines: list[int] | None = field(default=None, repr=False)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns) if self.frame is not None else _header(self)

    def line(self, row: int) -> int:
        """1-based line of data row ``row`` (0-based, blank lines not counted)."""
        if self.kind == "parquet":
            return row + 2
        if self._lines is None:
            if self.kind == "atomic":
                self.text = decode_text(self.path.read_bytes(), self.path, self.encoding)
            self._lines = [ln for ln, _ in _records(self)][1:]
        return self._lines[row]

    def error(self, message: str, row: int | None = None, column: str | None = None) -> InputError:
        """An `InputError` located at data row ``row``."""
        if row is None:
            return InputError(message, path=self.path, column=column)
        if self.kind == "parquet":
            message = f"row {row} (0-based): {message}"
        return InputError(message, path=self.path, line=self.line(row), column=column)

    def name(self, row: int) -> str:
        """How messages refer to data row ``row``."""
        return f"row {row}" if self.kind == "parquet" else f"line {self.line(row)}"


def _is_blank(rec: list[str]) -> bool:
    return not rec or (len(rec) == 1 and not rec[0].strip(" \r"))


def _unquoted(src: _Source) -> bool:
    return not src.quoted or '"' not in src.text


def _records(src: _Source) -> list[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on (slow; used on the error path)."""
    out: list[tuple[int, list[str]]] = []
    if _unquoted(src):
        for i, s in enumerate(src.text.split("\n"), 1):
            rec = s.rstrip("\r").split(src.sep)
            if not _is_blank(rec):
                out.append((i, rec))
        return out
    reader = csv.reader(io.StringIO(src.text), delimiter=src.sep)
    prev = 0
    try:
        for rec in reader:
            if not _is_blank(rec):
                out.append((prev + 1, rec))
            prev = reader.line_num
    except csv.Error as e:
        raise InputError(str(e), path=src.path, line=reader.line_num) from None
    return out


def _check_field_counts(src: _Source, n_fields: int) -> None:
    """Raise on the first line whose number of fields differs from the header's."""
    if not _unquoted(src):
        bad = next(((ln, len(r)) for ln, r in _records(src) if len(r) != n_fields), None)
    else:
        probe = src.sep + "\n"  # raw bytes work when the encoding keeps ASCII as is
        ascii_ok = probe.encode(src.encoding, "replace") == probe.encode("ascii", "replace")
        data = src.raw if ascii_ok and src.raw else src.text.encode("utf-8")
        bad = _first_bad_count(data, ord(src.sep), n_fields)
    src.raw = b""
    if bad is not None:
        name = {",": "comma", "\t": "tab", ";": "semicolon"}.get(src.sep, repr(src.sep))
        msg = f"expected {n_fields} {name}-separated fields (as in the header), got {bad[1]}"
        raise InputError(msg, path=src.path, line=bad[0])


def _first_bad_count(data: bytes, sep: int, n_fields: int) -> tuple[int, int] | None:
    """(line, fields) of the first non-blank unquoted line without ``n_fields`` fields.

    Counts separators per line with numpy, in blocks to bound memory on big logs.
    """
    pos, first_line = 0, 1
    while pos < len(data):
        end = data.find(b"\n", pos + _BLOCK)
        end = len(data) if end < 0 else end + 1
        a = np.frombuffer(data, dtype=np.uint8, count=end - pos, offset=pos)
        newlines = np.flatnonzero(a == 10)
        ends = newlines if a[-1] == 10 else np.append(newlines, len(a))
        starts = np.concatenate(([0], newlines + 1))[: len(ends)]
        seps = np.flatnonzero(a == sep)
        counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
        for i in np.flatnonzero(counts != n_fields - 1):
            if bytes(a[starts[i] : ends[i]]).strip(b" \r"):  # blank lines are skipped
                return first_line + int(i), int(counts[i]) + 1
        first_line += len(newlines)
        pos = end
    return None


def _open(path: str | Path, formats: tuple[str, ...], sep: str | None, encoding: str) -> _Source:
    """Open a file: decode text formats, read Parquet and atomic files whole."""
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=p)
    if p.is_dir():
        raise InputError("is a folder, expected a file", path=p)
    suffixes = [s.lower() for s in p.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = (suffixes[-2] if len(suffixes) > 1 else "") if gz else (suffixes[-1] if suffixes else "")
    if ext not in formats:
        supported = ", ".join(formats)
        raise InputError(
            f"unknown file type {ext or '(none)'!r}; supported: {supported} (text may be .gz)",
            path=p,
        )
    raw = p.read_bytes()
    if gz:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputError(f"cannot decompress ({e})", path=p) from None
    if not raw.strip():
        raise InputError("file is empty", path=p)
    if ext == ".parquet":
        try:
            df = pd.read_parquet(io.BytesIO(raw))
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise InputError(f"not a readable Parquet file ({e})", path=p) from None
        df.columns = [str(c) for c in df.columns]
        return _Source(p, "parquet", frame=df)
    if ext not in _TEXT:  # RecBole atomic
        df, fields = read_atomic_file(p, encoding)
        return _Source(p, "atomic", sep="\t", quoted=False, frame=df, fields=fields)
    sep = sep or _TEXT[ext]
    if len(sep) != 1:
        raise ConfigError(f"sep must be a single character, got {sep!r}")
    # Tab-separated files are read without quote handling: titles often start with '"'.
    src = _Source(p, "text", decode_text(raw, p, encoding), sep, sep != "\t", encoding, raw=raw)
    header = _header(src)
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise InputError(f"column(s) {dup} appear twice in the header", path=p, line=1)
    return src


def _header(src: _Source) -> list[str]:
    first = src.text.split("\n", 1)[0].rstrip("\r")
    if not src.quoted or '"' not in first:
        return first.split(src.sep)
    return next(csv.reader([first], delimiter=src.sep))


def _frame(src: _Source, dtypes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The source's frame; text is parsed with ``dtypes`` for some columns, strings else."""
    if src.frame is not None:
        return src.frame
    header = _header(src)
    if not src.checked:
        _check_field_counts(src, len(header))
        src.checked = True
    dtypes = dtypes or {}
    try:
        return pd.read_csv(
            io.StringIO(src.text),
            sep=src.sep,
            quoting=csv.QUOTE_MINIMAL if src.quoted else csv.QUOTE_NONE,
            # object, not str: pandas 3's Arrow-backed strings are slow to build and convert
            dtype={c: dtypes.get(c, object) for c in header},
            keep_default_na=False,
            na_filter=False,
            index_col=False,
            engine="c",
        )
    except pd.errors.ParserError as e:
        raise InputError(f"cannot parse: {e}", path=src.path) from None


def _check_mapping(
    src: _Source, mapping: Mapping[str, str], required: tuple[str, ...]
) -> dict[str, str]:
    """Check the columns exist; return the renaming {file column: canonical name}."""
    cols = src.columns
    absent = [f"{k} -> {v!r}" for k, v in mapping.items() if v not in cols]
    missing = [c for c in required if c not in mapping and c not in cols]
    if absent or missing:
        parts = [f"missing required column(s) {missing}"] if missing else []
        parts += [f"mapped column(s) not in file: {', '.join(absent)}"] if absent else []
        hint = "" if mapping else "; pass mapping={'user_id': '<column>', ...} to rename"
        line = None if src.kind == "parquet" else 1
        raise InputError(
            f"{'; '.join(parts)}; columns found: {cols}{hint}", path=src.path, line=line
        )
    return {v: k for k, v in mapping.items()}


def _rename(df: pd.DataFrame, renames: Mapping[str, str]) -> pd.DataFrame:
    # An unmapped file column named like a mapping target would collide with it: drop it.
    clash = [c for c in renames.values() if c in df.columns and c not in renames]
    return df.drop(columns=clash).rename(columns=dict(renames))


def _check_ids(df: pd.DataFrame, col: str, src: _Source, file_col: str) -> pd.Series:
    """String IDs, raising on the first missing, empty or NaN-like one."""
    s = df[col]
    if s.dtype.kind == "f" and np.isfinite(s.to_numpy()).all() and (s == np.round(s)).all():
        s = s.astype(np.int64)  # Parquet floats: 1.0 -> "1", so IDs match other files
    # Check each distinct value once: logs have far fewer IDs than rows.
    codes, uniq = pd.factorize(s)  # missing values get code -1
    text = np.asarray([str(u) for u in uniq], dtype=object)
    stripped = pd.Series(text, dtype=object).str.strip()
    bad_uniq = ((stripped == "") | stripped.str.lower().isin(_MISSING_IDS)).to_numpy()
    bad = np.append(bad_uniq, True)[codes]  # code -1 picks the appended True
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        empty = codes[j] < 0 or stripped.iloc[codes[j]] == ""
        what = "is empty" if empty else f"is {s.iloc[j]!r}, which looks like a missing value"
        raise src.error(f"{col} {what}", j, file_col)
    return pd.Series(text[codes], index=df.index, dtype=object)


def _check_numbers(df: pd.DataFrame, col: str, src: _Source, file_col: str) -> np.ndarray:
    """Float64 values, raising on the first empty, non-numeric, NaN or infinite one."""
    s = df[col]
    num = pd.to_numeric(s, errors="coerce")
    values = np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan))
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        val = s.iloc[j]
        if not isinstance(val, str | float | int) or pd.isna(val) or not str(val).strip():
            what = "is empty"
        elif isinstance(val, str) and np.isnan(values[j]) and val.strip().lower() != "nan":
            what = f"is not a number: {val!r}"
        else:
            what = f"must be a finite number, got {val!r}"
        raise src.error(f"{col} {what}", j, file_col)
    return values


def _check_duplicates(df: pd.DataFrame, src: _Source, on_duplicate: OnDuplicate) -> pd.DataFrame:
    if on_duplicate == "keep":
        return df
    # Array-valued columns (float_seq) are unhashable; compare the rest.
    cols = [c for c in df.columns if not isinstance(df[c].iloc[0], np.ndarray | list)]
    dup = df.duplicated(subset=cols, keep="first").to_numpy()
    if not dup.any():
        return df
    if on_duplicate == "drop":
        return df.loc[~dup].reset_index(drop=True)
    j = int(np.flatnonzero(dup)[0])
    hashes = pd.util.hash_pandas_object(df[cols], index=False).to_numpy()
    i = int(np.flatnonzero(hashes == hashes[j])[0])
    allow = "pass on_duplicate='drop' or 'keep' to allow"
    raise src.error(f"duplicate row: same as {src.name(i)} ({allow})", j)


def read_interactions(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    sep: str | None = None,
    on_duplicate: OnDuplicate = "error",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read an interaction log from CSV, TSV/TXT, Parquet or a RecBole ``.inter`` file.

    Args:
        path: The file; text formats may be gzipped (``.csv.gz``).
        mapping: Canonical name (``user_id``, ``item_id``, ``rating``, ``timestamp``,
            ``event``) to the file's column name, for columns named otherwise.
        sep: Field separator for text files (default from the extension). Tab-separated
            files are read without quote handling.
        on_duplicate: What to do with exact duplicate rows: raise, drop all but the first,
            or keep them.
        encoding: Text encoding of text files.

    Returns:
        Normalised interactions (see `normalize_interactions`); other columns are kept.

    Raises:
        InputError: For any problem in the file, naming its line and column.
    """
    mapping = dict(mapping or {})
    unknown = [k for k in mapping if k not in _CANONICAL]
    if unknown:
        raise ConfigError(f"unknown mapping key(s) {unknown}; valid: {list(_CANONICAL)}")
    src = _open(path, INTERACTION_FORMATS, sep, encoding)
    renames = _check_mapping(src, mapping, (USER, ITEM))
    file_col = {renames.get(c, c): c for c in src.columns}
    df = None
    if src.kind == "text":
        # Parse numeric columns as floats directly: much faster than converting strings.
        # If that fails, parse strings instead so the error can quote the bad value.
        typed = {file_col[c]: "float64" for c in _NUMERIC if c in file_col}
        if typed:
            try:
                fast = _frame(src, typed)
                if all(np.isfinite(fast[c].to_numpy()).all() for c in typed):
                    df = fast
            except ValueError as e:
                if isinstance(e, InputError):
                    raise
    df = _rename(df if df is not None else _frame(src), renames)
    if df.empty:
        raise src.error("file has a header but no data rows")
    out = df.copy()
    for col in (USER, ITEM):
        out[col] = _check_ids(df, col, src, file_col[col])
    for col in _NUMERIC:
        if col in df.columns:
            out[col] = _check_numbers(df, col, src, file_col[col])
    if EVENT in df.columns:
        out[EVENT] = _check_ids(df, EVENT, src, file_col[EVENT])
    out = _check_duplicates(out, src, on_duplicate)
    return normalize_interactions(out)


def _infer_table_fields(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, FieldType]]:
    """Numeric columns -> FLOAT (strings converted), vectors -> FLOAT_SEQ, rest TOKEN_SEQ."""
    out = df.copy()
    fields: dict[str, FieldType] = {}
    for col in df.columns:
        s = df[col]
        first = s.dropna().iloc[0] if s.notna().any() else None
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            fields[col] = FieldType.FLOAT
            out[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        elif isinstance(first, list | np.ndarray):
            fields[col] = FieldType.FLOAT_SEQ
        else:
            blank = (s.isna() | (s.astype(str).str.strip() == "")).to_numpy()
            num = pd.to_numeric(s.where(~blank), errors="coerce")
            if (~blank).any() and num[~blank].notna().all():
                fields[col] = FieldType.FLOAT
                out[col] = num.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                fields[col] = FieldType.TOKEN_SEQ
    return out, fields


def _read_table(
    path: str | Path,
    id_column: str,
    mapping: Mapping[str, str] | None,
    encoding: str,
    lenient: bool = False,
) -> tuple[pd.DataFrame, dict[str, FieldType]]:
    src = _open(path, TABLE_FORMATS, None, encoding)
    mapping = dict(mapping or {})
    if lenient:  # load_dataset passes the interaction mapping: use what applies here
        mapping = {k: v for k, v in mapping.items() if k == id_column and v in src.columns}
    renames = _check_mapping(src, mapping, (id_column,))
    df = _rename(_frame(src), renames)
    if df.empty:
        raise src.error("file has a header but no data rows")
    id_file_col = mapping.get(id_column, id_column)
    ids = _check_ids(df, id_column, src, id_file_col)
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        i = int(np.flatnonzero((ids == ids.iloc[j]).to_numpy())[0])
        what = f"duplicate {id_column} {ids.iloc[j]!r}: also on {src.name(i)}"
        raise src.error(what, j, id_file_col)
    rest = df.drop(columns=[id_column])
    if src.kind == "atomic":
        table = rest
        fields = {renames.get(c, c): t for c, t in src.fields.items()}
        fields = {c: fields[c] for c in rest.columns}
    else:
        table, fields = _infer_table_fields(rest)
    table.index = pd.Index(ids.to_numpy(), dtype=object, name=id_column)
    return table, fields


def read_table(
    path: str | Path,
    id_column: str,
    mapping: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, dict[str, FieldType]]:
    """Read an item or user table from CSV, TSV/TXT, Parquet or an atomic ``.item``/``.user``.

    Args:
        path: The file; text formats may be gzipped.
        id_column: Name of the ID column (after ``mapping``); it becomes the index.
        mapping: Table column name to the file's column name, e.g. ``{"item_id": "movieId"}``.
        encoding: Text encoding of text files.

    Returns:
        The table indexed by ``id_column`` (string IDs) and the type of each other column:
        numeric columns are FLOAT, vectors FLOAT_SEQ, others TOKEN_SEQ (atomic files keep
        their header types).

    Raises:
        InputError: For any problem in the file, including duplicate IDs (naming both lines).
    """
    return _read_table(path, id_column, mapping, encoding)


def load_dataset(
    train: str | Path,
    items: str | Path | None = None,
    users: str | Path | None = None,
    mapping: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Dataset:
    """Build a `Dataset` from an interaction file and optional item and user tables.

    Args:
        train: Interaction file (see `read_interactions`).
        items: Item table (see `read_table`), keyed by ``item_id``.
        users: User table, keyed by ``user_id``.
        mapping: Canonical name to file column name; the ``item_id``/``user_id`` entries
            also apply to the item/user tables when those have that column.
        name: Dataset name (default: the interaction file's name without extensions).
    """
    inter = read_interactions(train, mapping)
    item_t, item_f = _read_table(items, ITEM, mapping, "utf-8", True) if items else (None, {})
    user_t, user_f = _read_table(users, USER, mapping, "utf-8", True) if users else (None, {})
    return Dataset.build(
        inter,
        item_t,
        user_t,
        item_fields=item_f,
        user_fields=user_f,
        name=name or Path(train).name.split(".")[0],
    )


__all__ = ["load_dataset", "read_interactions", "read_table"]
