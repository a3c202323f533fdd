"""Ranker features of (user, candidate item) pairs, in named groups for ablations.

Groups: each source's group (``cf``, ``text``, ``sequence``, ``kg``, ...) holds that source's
score (standardised per user), log rank and a retrieved flag; ``profile`` holds the user's
affinity to the item's categorical attributes (genre, decade) and demographic lifts; ``kg``
also holds affinities over knowledge-graph entities (actors, directors, ...); ``popularity``
holds item popularity and recency and user activity; ``rating`` holds mean ratings;
``vectors`` holds cosines over item vector columns (e.g. image embeddings).

Every statistic is computed from the dataset the builder is fitted on (the part the source
models saw), so labels drawn from a later part never leak into features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.schema import RATING, TIMESTAMP, Dataset
from lmrec.errors import ConfigError
from lmrec.rank.attributes import ItemAttributes
from lmrec.rank.neighbours import NeighbourFeatures
from lmrec.rank.sequence_features import SequenceFeatures
from lmrec.rank.sources import CandidateBlock, SourceConfig

#: Every feature group a fusion ranker knows (source groups come from `SourceConfig`).
GROUPS = ("cf", "text", "sequence", "kg", "profile", "popularity", "rating", "vectors", "other")
DAY = 86_400.0
KEY_STRIDE = 1e10  # > any timestamp range in seconds, so (item, time) sorts as one key


class FeatureConfig(BaseModel):
    """Which ranker features to build."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[str] | None = Field(None, description="Feature groups kept (None: all).")
    vector_columns: list[str] = Field(
        default_factory=list, description="Item-table columns of vectors (e.g. image embeddings)."
    )
    demographics: list[str] | None = Field(
        None, description="User-table columns for demographic lifts (None: low-cardinality ones)."
    )
    max_categories: int = Field(
        100, gt=1, description="Most distinct values for a user column to count as demographic."
    )
    lift_prior: float = Field(50.0, gt=0, description="Smoothing of demographic item lifts.")
    neighbours: int = Field(
        100, ge=0, description="Item neighbours for closest-item features (0: none)."
    )
    recent_items: int = Field(
        5, ge=0, description="Latest items per user for sequence features (0: none)."
    )

    def keeps(self, group: str) -> bool:
        return self.groups is None or group in self.groups


@dataclass
class _Demographic:
    column: str
    codes: np.ndarray  # per user, -1 = unknown
    lift: np.ndarray  # (n_values, n_items) log lift


def _zscore_and_rank(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per-row mean and std over finite scores, and each row's finite scores sorted."""
    finite = np.isfinite(scores)
    n = np.maximum(finite.sum(axis=1), 1)
    safe = np.where(finite, scores, 0.0).astype(np.float64)
    mean = safe.sum(axis=1) / n
    var = (np.where(finite, (safe - mean[:, None]) ** 2, 0.0)).sum(axis=1) / n
    std = np.sqrt(var)
    std[std < 1e-12] = 1.0
    sorted_rows = [np.sort(row[np.isfinite(row)]) for row in scores]
    return mean, std, sorted_rows


class FeatureBuilder:
    """Turns a `CandidateBlock` into a float32 feature matrix with named columns."""

    def __init__(
        self,
        config: FeatureConfig,
        sources: Sequence[SourceConfig],
        attributes: ItemAttributes | None,
    ) -> None:
        for g in config.groups or []:
            if g not in GROUPS:
                raise ConfigError(f"unknown feature group '{g}'; choose from {', '.join(GROUPS)}")
        self.config = config
        self.sources = list(sources)
        self.attributes = attributes
        self.attr_groups: list[str] = []
        self.names: list[str] = []
        self.feature_groups: list[str] = []

    # -- statistics of the fit data ------------------------------------------------------
    def fit(self, dataset: Dataset, seen: sp.csr_matrix) -> FeatureBuilder:
        """Compute item, user, profile and demographic statistics from ``dataset``."""
        users, items = dataset.user_map(), dataset.item_map()
        inter = dataset.interactions
        n_users, n_items = len(users), len(items)
        uidx = users.index(inter["user_id"], "user")
        iidx = items.index(inter["item_id"], "item")
        self.seen = sp.csr_matrix(seen, dtype=np.float32)
        self.item_count = np.bincount(iidx, minlength=n_items).astype(np.float64)
        self.user_count = np.bincount(uidx, minlength=n_users).astype(np.float64)
        self.item_age = np.zeros(n_items)
        self.item_since_last = np.zeros(n_items)
        # time-window popularity: item interactions while the user was active
        self.ts_keys = np.zeros(0)
        self.all_ts = np.zeros(0)
        self.user_span = np.zeros((n_users, 3))  # first, median, last timestamp
        if TIMESTAMP in inter and inter[TIMESTAMP].notna().any():
            ts = inter[TIMESTAMP].to_numpy(dtype=np.float64)
            end = np.nanmax(ts)
            first = np.full(n_items, np.inf)
            last = np.full(n_items, -np.inf)
            np.minimum.at(first, iidx, ts)
            np.maximum.at(last, iidx, ts)
            has = self.item_count > 0
            self.item_age[has] = (end - first[has]) / DAY
            self.item_since_last[has] = (end - last[has]) / DAY
            ok = np.isfinite(ts)
            rel_ts = ts[ok] - np.nanmin(ts)
            if rel_ts.max() < KEY_STRIDE:  # timestamps in seconds, as DAY assumes
                self.ts_keys = np.sort(iidx[ok] * KEY_STRIDE + rel_ts)
                self.all_ts = np.sort(rel_ts)
                frame = pd.DataFrame({"u": uidx[ok], "t": rel_ts})
                span = frame.groupby("u")["t"].agg(["min", "median", "max"])
                self.user_span[span.index.to_numpy()] = span.to_numpy()
        self.global_mean = 0.0
        self.item_mean = np.zeros(n_items)
        self.user_mean = np.zeros(n_users)
        if RATING in inter and inter[RATING].notna().any():
            r = inter[RATING].to_numpy(dtype=np.float64)
            ok = np.isfinite(r)
            self.global_mean = float(r[ok].mean())
            shrink = 5.0  # a few ratings say little about an item's or user's mean
            for cnt_idx, size, attr in ((iidx, n_items, "item_mean"), (uidx, n_users, "user_mean")):
                tot = np.bincount(cnt_idx[ok], weights=r[ok] - self.global_mean, minlength=size)
                cnt = np.bincount(cnt_idx[ok], minlength=size)
                setattr(self, attr, tot / (cnt + shrink))
        self.profiles = (
            self.attributes.user_profiles(self.seen) if self.attributes is not None else None
        )
        self.attr_groups = self.attributes.group_names() if self.attributes is not None else []
        self.kg_groups = set(self.attributes.kg_groups()) if self.attributes is not None else set()
        self.neighbours: NeighbourFeatures | None = None
        if self.config.neighbours and (self.config.keeps("cf") or self.config.keeps("rating")):
            ratings = None
            if RATING in inter and inter[RATING].notna().all():
                ratings = sp.csr_matrix(
                    (inter[RATING].to_numpy(np.float32), (uidx, iidx)), shape=(n_users, n_items)
                )
                ratings.sum_duplicates()  # repeated pairs: keep their mean
                ratings.data /= sp.csr_matrix(
                    (np.ones(len(uidx), np.float32), (uidx, iidx)), shape=(n_users, n_items)
                ).data
            nbr = NeighbourFeatures(self.config.neighbours)
            self.neighbours = nbr.fit(self.seen, ratings)
        self.sequence: SequenceFeatures | None = None
        if self.config.recent_items and self.config.keeps("sequence") and len(self.ts_keys):
            ts = inter[TIMESTAMP].to_numpy(dtype=np.float64)
            seq = SequenceFeatures(self.config.recent_items)
            self.sequence = seq.fit(uidx, iidx, ts, n_users, n_items)
        self.demographics = self._fit_demographics(dataset, users, uidx, iidx)
        self.vectors = self._fit_vectors(dataset)
        self._name_columns()
        return self

    def _name_columns(self) -> None:
        """Fill ``names``/``feature_groups`` by featurising an empty block."""
        n_items = len(self.item_count)
        empty = np.zeros(0, dtype=np.int64)
        self.transform(
            CandidateBlock(
                users=empty,
                pair_user=empty,
                pair_item=empty,
                scores={s.label: np.zeros((0, n_items), np.float32) for s in self.sources},
                retrieved={s.label: np.zeros(0, bool) for s in self.sources},
            )
        )

    def _fit_demographics(
        self, dataset: Dataset, users: object, uidx: np.ndarray, iidx: np.ndarray
    ) -> list[_Demographic]:
        table = dataset.users
        if table is None or not len(table.columns) or not self.config.keeps("profile"):
            return []
        cols = self.config.demographics
        if cols is None:
            cols = [c for c in table.columns if table[c].nunique() <= self.config.max_categories]
        out = []
        n_items = len(self.item_count)
        total = self.item_count.sum()
        p_item = (self.item_count + 1.0) / (total + n_items)
        for col in cols:
            if col not in table.columns:
                raise ConfigError(f"demographic column '{col}' is not in the user table")
            values = table[col]
            if pd.api.types.is_numeric_dtype(values) or col == "age":
                num = pd.to_numeric(values, errors="coerce")
                values = (num // 10 * 10).astype("Int64").astype(str).where(num.notna(), None)
            cat = pd.Categorical(values.astype(object).where(values.notna(), None))
            codes = np.asarray(cat.codes, dtype=np.int64)
            n_val = len(cat.categories)
            if n_val < 2:
                continue
            counts = np.zeros((n_val, n_items))
            ucode = codes[uidx]
            ok = ucode >= 0
            np.add.at(counts, (ucode[ok], iidx[ok]), 1.0)
            n_v = counts.sum(axis=1, keepdims=True)
            m = self.config.lift_prior
            p_iv = (counts + m * p_item[None, :]) / (n_v + m)
            out.append(_Demographic(str(col), codes, np.log(p_iv / p_item[None, :])))
        return out

    def _fit_vectors(self, dataset: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if not self.config.vector_columns or not self.config.keeps("vectors"):
            return out
        for col in self.config.vector_columns:
            if col not in dataset.items.columns:
                raise ConfigError(f"vector column '{col}' is not in the item table")
            rows = [np.asarray(v, dtype=np.float32) for v in dataset.items[col]]
            dims = {r.shape for r in rows if r.size}
            if len(dims) != 1:
                raise ConfigError(f"vector column '{col}' needs vectors of one length, got {dims}")
            dim = dims.pop()
            vecs = np.stack([r if r.size else np.zeros(dim, np.float32) for r in rows])
            norm = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.maximum(norm, 1e-12)
            user = np.asarray(self.seen @ vecs)
            user /= np.maximum(np.linalg.norm(user, axis=1, keepdims=True), 1e-12)
            out[col] = (vecs.astype(np.float32), user.astype(np.float32))
        return out

    # -- features ------------------------------------------------------------------------
    def transform(self, block: CandidateBlock) -> np.ndarray:
        """Feature matrix ``(n_pairs, n_features)``; column names in ``self.names``."""
        cols: list[np.ndarray] = []
        names: list[str] = []
        groups: list[str] = []

        def add(name: str, group: str, values: np.ndarray) -> None:
            cols.append(np.asarray(values, dtype=np.float32))
            names.append(name)
            groups.append(group)

        pu, pi = block.pair_user, block.pair_item
        users = block.users[pu]
        for src in self.sources:
            group = src.feature_group
            if not self.config.keeps(group):
                continue
            s = block.scores[src.label]
            mean, std, sorted_rows = _zscore_and_rank(s)
            val = s[pu, pi].astype(np.float64)
            finite = np.isfinite(val)
            z = np.where(finite, (val - mean[pu]) / std[pu], -10.0)
            rank = np.empty(len(val))
            for row in np.unique(pu):
                sel = np.flatnonzero(pu == row)
                srt = sorted_rows[row]
                rank[sel] = len(srt) - np.searchsorted(srt, val[sel], side="right") + 1
            rank = np.where(finite, rank, s.shape[1])
            add(f"{src.label}:z", group, z)
            if group == "rating":  # a predicted rating means something on its own scale
                add(f"{src.label}:raw", group, np.where(finite, val, self.global_mean))
            add(f"{src.label}:log_rank", group, np.log1p(rank))
            if src.budget > 0:
                add(f"{src.label}:retrieved", group, block.retrieved[src.label])
        if self.profiles is not None and self.attributes is not None:
            aff = self.attributes.pair_affinity(self.profiles, users, pi)
            for g in self.attr_groups:
                group = "kg" if g in self.kg_groups else "profile"
                if self.config.keeps(group):
                    add(f"attr:{g}", group, aff[g])
        if self.neighbours is not None:
            nbr = self.neighbours.transform(self.seen, block.users, pu, pi)
            for name, values in nbr.items():
                group = "rating" if name == "nbr:rating_dev" else "cf"
                if self.config.keeps(group):
                    add(name, group, values)
        if self.sequence is not None:
            sim = self.neighbours.sim if self.neighbours is not None else None
            for name, values in self.sequence.transform(block.users, pu, pi, sim).items():
                add(name, "sequence", values)
        for demo in self.demographics:
            code = demo.codes[users]
            lift = np.where(code >= 0, demo.lift[np.maximum(code, 0), pi], 0.0)
            add(f"demo:{demo.column}", "profile", lift)
        if self.config.keeps("popularity"):
            add("item:log_count", "popularity", np.log1p(self.item_count[pi]))
            add("item:log_age_days", "popularity", np.log1p(self.item_age[pi]))
            add("item:log_days_since_last", "popularity", np.log1p(self.item_since_last[pi]))
            add("user:log_count", "popularity", np.log1p(self.user_count[users]))
            if len(self.ts_keys):
                first, median, last = self.user_span[users].T
                for name, lo, hi in (
                    ("item:share_in_user_span", first - DAY, last + DAY),
                    ("item:share_near_user_median", median - 3 * DAY, median + 3 * DAY),
                ):
                    add(name, "popularity", self._window_share(pi, lo, hi))
        if self.config.keeps("rating"):
            add("item:mean_rating", "rating", self.item_mean[pi])
            add("user:mean_rating", "rating", self.user_mean[users])
        for col, (item_vecs, user_vecs) in self.vectors.items():
            cos = np.einsum("ij,ij->i", user_vecs[users], item_vecs[pi])
            add(f"vector:{col}", "vectors", cos)
        if not cols:
            raise ConfigError("the feature config leaves no features")
        self.names, self.feature_groups = names, groups
        return np.column_stack(cols).astype(np.float32)

    def _window_share(self, items: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Item's share (per mille) of all interactions with timestamps in [lo, hi]."""
        base = items * KEY_STRIDE
        lo, hi = np.maximum(lo, 0.0), np.minimum(hi, KEY_STRIDE - 1)
        n_item = np.searchsorted(self.ts_keys, base + hi, "right") - np.searchsorted(
            self.ts_keys, base + lo, "left"
        )
        n_all = np.searchsorted(self.all_ts, hi, "right") - np.searchsorted(self.all_ts, lo, "left")
        return 1000.0 * n_item / np.maximum(n_all, 1)

    # -- persistence ---------------------------------------------------------------------
    _ARRAYS = (
        "item_count", "user_count", "item_age", "item_since_last", "item_mean", "user_mean",
        "ts_keys", "all_ts", "user_span",
    )  # fmt: skip

    def state(self) -> dict[str, np.ndarray]:
        """Fitted statistics as arrays (the seen matrix and attributes are saved elsewhere)."""
        out = {name: getattr(self, name) for name in self._ARRAYS}
        out["global_mean"] = np.asarray([self.global_mean])
        out["demo_columns"] = np.asarray([d.column for d in self.demographics], dtype=str)
        for i, d in enumerate(self.demographics):
            out[f"demo{i}_codes"], out[f"demo{i}_lift"] = d.codes, d.lift
        out["vector_columns"] = np.asarray(list(self.vectors), dtype=str)
        for i, (items, users) in enumerate(self.vectors.values()):
            out[f"vec{i}_items"], out[f"vec{i}_users"] = items, users
        if self.neighbours is not None:
            out.update({f"nbr_{k}": v for k, v in self.neighbours.state().items()})
        if self.sequence is not None:
            out.update({f"seq_{k}": v for k, v in self.sequence.state().items()})
        return out

    def set_state(self, state: dict[str, np.ndarray], seen: sp.csr_matrix) -> FeatureBuilder:
        """Restore `state` output; ``seen`` is the fitted user x item matrix."""
        for name in self._ARRAYS:
            setattr(self, name, state[name])
        self.global_mean = float(state["global_mean"][0])
        self.seen = sp.csr_matrix(seen, dtype=np.float32)
        self.demographics = [
            _Demographic(str(c), state[f"demo{i}_codes"], state[f"demo{i}_lift"])
            for i, c in enumerate(state["demo_columns"])
        ]
        self.vectors = {
            str(c): (state[f"vec{i}_items"], state[f"vec{i}_users"])
            for i, c in enumerate(state["vector_columns"])
        }
        nbr = {k[4:]: v for k, v in state.items() if k.startswith("nbr_")}
        self.neighbours = NeighbourFeatures().set_state(nbr) if nbr else None
        seq = {k[4:]: v for k, v in state.items() if k.startswith("seq_")}
        self.sequence = SequenceFeatures().set_state(seq) if seq else None
        attrs = self.attributes
        self.profiles = attrs.user_profiles(self.seen) if attrs is not None else None
        self.attr_groups = attrs.group_names() if attrs is not None else []
        self.kg_groups = set(attrs.kg_groups()) if attrs is not None else set()
        self._name_columns()
        return self
