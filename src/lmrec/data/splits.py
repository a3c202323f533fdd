"""Seeded train/valid/test splits that follow RecBole's semantics, and their export.

Protocols (RecBole 1.2.1 names in brackets, from ``recbole/data/dataset/dataset.py``):

* ``ratio``: random order, then per user the counts of ``_calcu_split_ids``
  (``order: RO``, ``split: {RS: [..]}``, ``group_by: user`` or ``none``).
* ``loo``: chronological leave-one-out (``order: TO``, ``split: {LS: valid_and_test}``).
* ``temporal``: one global time cut (``order: TO``, ``split: {RS: [..]}``, ``group_by: none``).
* ``cold-item`` / ``cold-user``: a share of items / users held out whole (no RecBole twin).

Every part keeps the input's row order, so no split reorders the file. Random orders come
from ``numpy.random.default_rng(seed)``, not torch's ``randperm``: the same rule as RecBole,
not the same draw. Time orders use float64 timestamps; RecBole sorts float32 tensors (and
min-max normalises them under ``normalize_all``), which can tie nearby epoch seconds.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import lmrec
from lmrec.data.atomic import read_atomic_file, write_atomic_file, write_inter, write_table
from lmrec.data.schema import ITEM, TIMESTAMP, USER, Dataset, FieldType, normalize_interactions
from lmrec.errors import ConfigError, InputError

PARTS = ("train", "valid", "test")
SplitProtocol = Literal["ratio", "loo", "temporal", "cold-item", "cold-user"]
META_FILE = "split.json"
IDS_FILE = "ids.json"


@dataclass(frozen=True, eq=False)
class Split:
    """Three interaction sets over one catalog, plus how they were made.

    Attributes:
        train: Training interactions.
        valid: Validation interactions (model selection, early stopping).
        test: Test interactions.
        protocol: The protocol name (see `make_split`).
        seed: The seed of the random order, or None for deterministic protocols.
        params: The protocol's parameters, JSON-ready.
    """

    train: Dataset
    valid: Dataset
    test: Dataset
    protocol: str
    seed: int | None
    params: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, Dataset]:
        """``{"train": .., "valid": .., "test": ..}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def counts(self) -> dict[str, int]:
        """Number of interactions in each part."""
        return {k: v.n_interactions for k, v in self.parts().items()}

    def fitted(self) -> Dataset:
        """Train plus valid interactions, to refit the chosen model before testing."""
        inter = pd.concat([self.train.interactions, self.valid.interactions], ignore_index=True)
        return replace(self.train, interactions=inter)


# -- RecBole's arithmetic -------------------------------------------------------------------
def recbole_split_counts(tot: int, ratios: Sequence[float]) -> tuple[int, ...]:
    """Sizes of the parts of ``tot`` records, exactly as RecBole's ``_calcu_split_ids``.

    Ratios are normalised to sum 1; every part but the first is rounded down; then, from the
    last part backwards, a part whose exact share is in (0, 1) gets one record taken from the
    first, until the first is down to one record. E.g. for (0.8, 0.1, 0.1): 10 -> (8, 1, 1),
    5 -> (3, 1, 1), 2 -> (1, 0, 1), 1 -> (1, 0, 0).
    """
    tot_ratio = sum(ratios)
    ratios = [r / tot_ratio for r in ratios]  # split_by_ratio normalises first
    cnt = [int(r * tot) for r in ratios]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return tuple(cnt)


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    vals = [float(r) for r in ratios]
    if len(vals) != 3 or not all(np.isfinite(vals)) or min(vals) < 0 or sum(vals) <= 0:
        raise ConfigError(
            f"ratios must be 3 non-negative numbers (train, valid, test), got {ratios}"
        )
    return vals


def _check_shares(test_share: float, valid_share: float) -> list[float]:
    # Written so that NaN fails too.
    if not (test_share >= 0 and valid_share >= 0 and test_share + valid_share < 1):
        raise ConfigError(
            f"need 0 <= test_share, valid_share and their sum < 1, got {test_share}, {valid_share}"
        )
    return [1.0 - test_share - valid_share, float(valid_share), float(test_share)]


def _labels_by_position(pos: np.ndarray, size: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Part (0/1/2) of the record at ``pos`` in a group of ``size``, by RecBole's counts."""
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int8)
    # Few distinct group sizes: apply the scalar rule once per size, then broadcast.
    sizes, inv = np.unique(size, return_inverse=True)
    cnt = np.array([recbole_split_counts(int(s), ratios) for s in sizes], dtype=np.int64)
    first_end = cnt[inv, 0]
    second_end = first_end + cnt[inv, 1]
    return ((pos >= first_end).astype(np.int8) + (pos >= second_end)).astype(np.int8)


def _group_positions(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its key group (in the given order) and the group size."""
    codes = pd.factorize(keys)[0]
    pos = pd.Series(codes).groupby(codes, sort=False).cumcount().to_numpy()
    return pos, np.bincount(codes)[codes]


def _time_order(ds: Dataset) -> np.ndarray:
    if not ds.has(TIMESTAMP):
        raise InputError("this split needs a timestamp column", column=TIMESTAMP)
    # RecBole's Interaction.sort uses np.argsort(kind="stable"): ties keep file order.
    return np.argsort(ds.interactions[TIMESTAMP].to_numpy(), kind="stable")


def _make(
    ds: Dataset, labels: np.ndarray, protocol: str, seed: int | None, params: dict[str, Any]
) -> Split:
    inter = ds.interactions
    parts = [
        replace(ds, interactions=inter.loc[labels == k].reset_index(drop=True)) for k in range(3)
    ]
    return Split(parts[0], parts[1], parts[2], protocol, seed, params)


# -- protocols ------------------------------------------------------------------------------
def split_ratio(
    ds: Dataset,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int | None = 2020,
    group_by_user: bool = True,
) -> Split:
    """Random split by ratios, per user (RecBole ``RS`` with ``order: RO``).

    The interactions are shuffled once; then each user's records, in shuffled order, are cut
    by `recbole_split_counts`. So a user with 2 records has 1 train and 1 test, and one with
    a single record has it in train. With ``group_by_user=False`` the whole shuffled list is
    cut once (``group_by: none``).
    """
    r = _check_ratios(ratios)
    n = ds.n_interactions
    perm = np.random.default_rng(seed).permutation(n)
    if group_by_user:
        pos, size = _group_positions(ds.interactions[USER].to_numpy()[perm])
    else:
        pos, size = np.arange(n), np.full(n, n)
    labels = np.empty(n, dtype=np.int8)
    labels[perm] = _labels_by_position(pos, size, r)
    return _make(ds, labels, "ratio", seed, {"ratios": r, "group_by_user": bool(group_by_user)})


def split_loo(ds: Dataset) -> Split:
    """Chronological leave-one-out (RecBole ``LS: valid_and_test`` with ``order: TO``).

    Per user, by stable timestamp order, the last record is test and the one before is valid.
    As RecBole's ``_split_index_by_leave_one_out`` (at most ``tot - 1`` records left out), a
    user with 2 records has 1 train and 1 test and no valid, and one with 1 record only train.
    """
    order = _time_order(ds)
    pos, size = _group_positions(ds.interactions[USER].to_numpy()[order])
    from_end = size - 1 - pos
    lab = np.where((from_end == 0) & (size >= 2), 2, np.where((from_end == 1) & (size >= 3), 1, 0))
    labels = np.empty(ds.n_interactions, dtype=np.int8)
    labels[order] = lab
    return _make(ds, labels, "loo", None, {})


def split_temporal(ds: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """Global time cut: the earliest records are train, then valid, then test.

    This is RecBole's ``RS`` with ``order: TO`` and ``group_by: none``: records are sorted by
    timestamp (stably) and cut by `recbole_split_counts`. Records sharing a timestamp can fall
    on both sides of a cut; file order decides.
    """
    r = _check_ratios(ratios)
    order = _time_order(ds)
    n = ds.n_interactions
    labels = np.empty(n, dtype=np.int8)
    labels[order] = _labels_by_position(np.arange(n), np.full(n, n), r)
    return _make(ds, labels, "temporal", None, {"ratios": r})


def _split_cold(
    ds: Dataset, col: str, test_share: float, valid_share: float, seed: int | None
) -> np.ndarray:
    """Interaction labels from a random partition of the IDs of ``col`` seen in the data."""
    r = _check_shares(test_share, valid_share)
    universe = ds.item_ids if col == ITEM else ds.user_ids
    idx = pd.Index(universe, dtype=object).get_indexer(ds.interactions[col].to_numpy())
    # Only IDs with interactions are eligible; catalog order makes the draw input-order free.
    eligible = np.flatnonzero(np.bincount(idx, minlength=len(universe)) > 0)
    shuffled = eligible[np.random.default_rng(seed).permutation(len(eligible))]
    m = len(eligible)
    id_label = np.zeros(len(universe), dtype=np.int8)
    id_label[shuffled] = _labels_by_position(np.arange(m), np.full(m, m), r)
    return id_label[idx]


def split_cold_item(
    ds: Dataset, test_share: float = 0.15, valid_share: float = 0.1, seed: int | None = 2020
) -> Split:
    """Hold out whole items: all interactions of a random share of items go to test.

    Another share goes to valid; the rest to train. Only items with interactions are drawn,
    and the counts follow `recbole_split_counts`. Valid and test items have no train
    interactions. Users may be left with none in train: they are kept, and an evaluator
    should treat them as cold users too.
    """
    labels = _split_cold(ds, ITEM, test_share, valid_share, seed)
    params = {"test_share": float(test_share), "valid_share": float(valid_share)}
    return _make(ds, labels, "cold-item", seed, params)


def split_cold_user(
    ds: Dataset, test_share: float = 0.1, valid_share: float = 0.1, seed: int | None = 2020
) -> Split:
    """Hold out whole users: all interactions of a random share of users go to test.

    Like `split_cold_item`, over users. Items seen only by held-out users have no train
    interactions; they are kept in the catalog.
    """
    labels = _split_cold(ds, USER, test_share, valid_share, seed)
    params = {"test_share": float(test_share), "valid_share": float(valid_share)}
    return _make(ds, labels, "cold-user", seed, params)


_PROTOCOLS: dict[str, Callable[..., Split]] = {
    "ratio": split_ratio,
    "loo": split_loo,
    "temporal": split_temporal,
    "cold-item": split_cold_item,
    "cold-user": split_cold_user,
}


def make_split(
    ds: Dataset, protocol: SplitProtocol, seed: int | None = 2020, **params: Any
) -> Split:
    """Split ``ds`` by a protocol name; ``params`` go to that protocol's function.

    ``ratio`` -> `split_ratio`, ``loo`` -> `split_loo`, ``temporal`` -> `split_temporal`,
    ``cold-item`` / ``cold-user`` -> `split_cold_item` / `split_cold_user`. The seed is
    ignored (and recorded as None) by the deterministic ``loo`` and ``temporal``.

    Raises:
        ConfigError: Unknown protocol or parameter.
    """
    fn = _PROTOCOLS.get(protocol)
    if fn is None:
        raise ConfigError(f"unknown split protocol {protocol!r} (valid: {', '.join(_PROTOCOLS)})")
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("ds", "seed")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for split {protocol!r} (valid: {accepted})"
        )
    if "seed" in inspect.signature(fn).parameters:
        params["seed"] = seed
    return fn(ds, **params)


# -- export / import ------------------------------------------------------------------------
def _token_fields(df: pd.DataFrame) -> dict[str, FieldType]:
    return {str(c): FieldType.TOKEN for c in df.columns}


def save_split(split: Split, directory: str | Path, name: str | None = None) -> Path:
    """Write a split as RecBole atomic files, plus ``split.json``.

    Files: ``<name>.{train,valid,test}.inter``, ``<name>.item`` and ``<name>.user`` (when the
    table has columns), ``<name>.kg`` / ``<name>.link`` (when present), and ``split.json``.
    RecBole 1.2.1 reads them with ``dataset: <name>``, ``data_path: <parent of directory>``
    and ``benchmark_filename: [train, valid, test]``; it wants ``name`` to be the folder's
    name, hence the default. ID-only catalogs go to ``ids.json`` so that catalog order and
    IDs without interactions survive a round trip.

    Returns:
        The directory.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = name or d.name
    for part, ds in split.parts().items():
        write_inter(ds.interactions, d / f"{name}.{part}.inter")
    base = split.train
    ids: dict[str, list[str]] = {}
    for suffix, id_col, table, fields in (
        ("item", ITEM, base.items, base.item_fields),
        ("user", USER, base.users, base.user_fields),
    ):
        if len(table.columns):
            write_table(table, d / f"{name}.{suffix}", fields)
        else:
            ids[id_col] = [str(i) for i in table.index]
    for suffix, extra in (("kg", base.kg), ("link", base.links)):
        if extra is not None:
            write_atomic_file(extra, d / f"{name}.{suffix}", _token_fields(extra))
    if ids:
        (d / IDS_FILE).write_text(json.dumps(ids), encoding="utf-8")
    meta = {
        "name": name,
        "dataset": base.name,
        "protocol": split.protocol,
        "seed": split.seed,
        "params": split.params,
        "counts": {
            **split.counts(),
            "users": len(base.users),
            "items": len(base.items),
        },
        "lmrec_version": lmrec.__version__,
        "recbole": {"dataset": name, "benchmark_filename": list(PARTS)},
    }
    (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return d


def load_split(directory: str | Path) -> Split:
    """Read a split written by `save_split`.

    Raises:
        InputError: ``split.json`` or one of the files is missing or malformed.
    """
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise InputError(f"no {META_FILE} in this folder", path=d)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        name = meta["name"]
    except (ValueError, KeyError) as e:
        raise InputError(f"malformed split metadata: {e}", path=meta_path) from None
    frames = []
    for part in PARTS:
        p = d / f"{name}.{part}.inter"
        if not p.is_file():
            raise InputError(f"missing {p.name}", path=d)
        frames.append(read_atomic_file(p)[0])
    ids = json.loads((d / IDS_FILE).read_text(encoding="utf-8")) if (d / IDS_FILE).is_file() else {}
    tables: dict[str, tuple[pd.DataFrame | None, dict[str, FieldType]]] = {}
    for suffix, id_col in (("item", ITEM), ("user", USER)):
        p = d / f"{name}.{suffix}"
        if p.is_file():
            df, fields = read_atomic_file(p)
            tables[suffix] = (df, {k: v for k, v in fields.items() if k != id_col})
        elif id_col in ids:
            tables[suffix] = (pd.DataFrame(index=pd.Index(ids[id_col], dtype=object)), {})
        else:
            tables[suffix] = (None, {})
    kg, link = (d / f"{name}.kg", d / f"{name}.link")
    base = Dataset.build(
        pd.concat(frames, ignore_index=True),
        tables["item"][0],
        tables["user"][0],
        item_fields=tables["item"][1],
        user_fields=tables["user"][1],
        kg=read_atomic_file(kg)[0] if kg.is_file() else None,
        links=read_atomic_file(link)[0] if link.is_file() else None,
        name=meta.get("dataset", name),
    )
    parts = [replace(base, interactions=normalize_interactions(f)) for f in frames]
    return Split(
        parts[0], parts[1], parts[2], meta["protocol"], meta.get("seed"), meta.get("params", {})
    )


__all__ = [
    "PARTS",
    "Split",
    "SplitProtocol",
    "load_split",
    "make_split",
    "recbole_split_counts",
    "save_split",
    "split_cold_item",
    "split_cold_user",
    "split_loo",
    "split_ratio",
    "split_temporal",
]
