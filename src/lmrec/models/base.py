"""The `Recommender` interface every lmrec model implements, and the model registry.

A model is fitted on a `Dataset`, scores users against items by external ID, and saves to a
directory that loads without the training data (ID maps and the seen-item matrix go with it).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from lmrec import __version__
from lmrec.data.schema import ITEM, USER, Dataset, IdMap
from lmrec.errors import ConfigError, InputError, LmrecError, UnknownIdError
from lmrec.models.topk import mask_rows, topk, user_batch_size

STATE_FILE = "state.npz"
META_FILE = "model.json"
ITEMS_FILE = "items.parquet"


class ModelConfig(BaseModel):
    """Base of every model's typed configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NotFittedError(LmrecError, RuntimeError):
    """A model was used before `fit` or `load`."""


class Recommender(ABC):
    """Common interface: ``fit``, ``score``, ``recommend``, ``save``/``load``.

    Subclasses implement `_fit`, `_score` and `_state`/`_set_state`; the base handles ID
    mapping, seen-item exclusion, candidate restriction, batching and persistence.

    Attributes:
        name: Registry name (``lmrec fit --model NAME``).
        Config: The pydantic config class.
        search_space: Grid of config values tried on validation by the evaluator.
        handles_cold_users: Whether scores mean something for users without history.
    """

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    search_space: ClassVar[dict[str, list[Any]]] = {}
    #: Whether `_score` is meaningful for users with no fitted history (e.g. from text).
    handles_cold_users: ClassVar[bool] = False
    #: Validation metric its grid is searched on, if not the evaluation's ranking metric
    #: (``"rmse"`` for rating predictors: lower is better).
    select_metric: ClassVar[str | None] = None

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        try:
            base = config.model_dump() if config is not None else {}
            self.config = self.Config(**{**base, **overrides})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in e.errors()
            )
            raise ConfigError(f"bad config for model '{self.name}': {problems}") from None
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.seen: sp.csr_matrix | None = None
        self.item_table: pd.DataFrame | None = None
        self.valid_matrix: sp.csr_matrix | None = None
        self.valid_candidates: np.ndarray | None = None  # item indices, while fitting only

    # -- to implement --------------------------------------------------------------------
    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        """Learn from the binary user x item ``matrix`` (rows/cols follow the ID maps)."""

    @abstractmethod
    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense float32 scores ``(len(user_idx), n_items)`` for known users."""

    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to persist (names must be valid identifiers)."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027 (optional hook)
        """Restore what `_state` returned."""

    def _save_files(self, out: Path) -> None:  # noqa: B027 (optional hook)
        """Write files beyond the arrays (e.g. a fine-tuned encoder) into the model folder."""

    def _load_files(self, src: Path) -> None:  # noqa: B027 (optional hook)
        """Pick up what `_save_files` wrote."""

    # -- public API ----------------------------------------------------------------------
    def fit(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        valid_candidates: Sequence[str] | None = None,
    ) -> Self:
        """Fit on every interaction of ``dataset``; returns ``self``.

        Args:
            dataset: Training data; its item and user tables define the ID universe.
            valid: Held-out interactions that iterative models use for early stopping; the
                epoch they stop at is reported by `fitted_params`.
            valid_candidates: Rank only these items when early stopping (as the evaluation
                will, e.g. the held-out items of a cold-item split).
        """
        if dataset.n_interactions == 0:
            raise InputError(f"cannot fit '{self.name}' on a dataset with no interactions")
        self.users = dataset.user_map()
        self.items = dataset.item_map()
        self.seen = dataset.matrix(self.users, self.items)
        self.item_table = dataset.items
        self.valid_matrix = valid.matrix(self.users, self.items) if valid is not None else None
        if valid_candidates is not None:
            self.valid_candidates = self.items.index(valid_candidates, "item")
        try:
            self._fit(self.seen, dataset)
        finally:
            self.valid_matrix = None  # never persisted, never used after fitting
            self.valid_candidates = None
        return self

    def fitted_params(self) -> dict[str, Any]:
        """Config values learned during `fit` (e.g. the early-stopped epoch count)."""
        return {}

    @property
    def fitted(self) -> bool:
        return self.seen is not None

    def _check(self) -> tuple[IdMap, IdMap, sp.csr_matrix]:
        if self.users is None or self.items is None or self.seen is None:
            raise NotFittedError(f"model '{self.name}' is not fitted; call fit() or load()")
        return self.users, self.items, self.seen

    def fitted_pairs(self) -> pd.DataFrame:
        """The ``user_id, item_id`` pairs the model was fitted on (from its seen matrix)."""
        users, items, seen = self._check()
        coo = seen.tocoo()
        return pd.DataFrame({USER: users.to_ids(coo.row), ITEM: items.to_ids(coo.col)})

    def popularity(self) -> np.ndarray:
        """Training interaction count per item (float32), the fallback for unknown users."""
        _, _, seen = self._check()
        return np.asarray(seen.sum(axis=0), dtype=np.float32).ravel()

    def score_idx(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores for dense user indices.

        Users the model cannot personalise for (index -1, or no fitted history when the model
        lacks `handles_cold_users`) get item popularity instead.
        """
        _, _, seen = self._check()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        known = user_idx >= 0
        if not self.handles_cold_users:
            known &= np.diff(seen.indptr)[np.where(known, user_idx, 0)] > 0
        if known.all():
            return self._score(user_idx)
        out = np.empty((len(user_idx), len(self.items or [])), dtype=np.float32)
        if known.any():
            out[known] = self._score(user_idx[known])
        out[~known] = self.popularity()
        return out

    def score(self, users: Sequence[str], items: Sequence[str] | None = None) -> np.ndarray:
        """Raw scores (no exclusion), shape ``(len(users), len(items) or n_items)``.

        Raises:
            UnknownIdError: If a user or item is not known to the model.
        """
        umap, imap, _ = self._check()
        uidx = umap.index(users, "user")
        iidx = imap.index(items, "item") if items is not None else None
        out = []
        for start in range(0, len(uidx), user_batch_size(len(imap))):
            block = self._score(uidx[start : start + user_batch_size(len(imap))])
            out.append(block if iidx is None else block[:, iidx])
        return np.vstack(out) if out else np.empty((0, len(iidx) if iidx is not None else 0))

    def topk_idx(
        self,
        user_idx: np.ndarray,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for one batch of dense user indices.

        Args:
            user_idx: Dense user indices (-1 for users unknown to the model).
            k: List length.
            exclude_seen: Drop items the user interacted with in the fitted data.
            exclude: Extra items to drop, rows aligned with ``user_idx``.
            candidates: Restrict ranking to these item indices.
        """
        _, imap, seen = self._check()
        scores = self._scores_for_topk(user_idx, exclude, candidates)
        if exclude_seen:
            rows = np.where(user_idx >= 0, user_idx, 0)
            hist = seen[rows]
            if (user_idx < 0).any():
                hist = sp.diags((user_idx >= 0).astype(np.float32)) @ hist
            mask_rows(scores, sp.csr_matrix(hist))
        mask_rows(scores, exclude)
        if candidates is not None:
            allowed = np.zeros(len(imap), dtype=bool)
            allowed[candidates] = True
            scores[:, ~allowed] = -np.inf
        return topk(scores, k)

    def _scores_for_topk(
        self, user_idx: np.ndarray, exclude: sp.csr_matrix | None, candidates: np.ndarray | None
    ) -> np.ndarray:
        """Scores `topk_idx` ranks; a re-ranker overrides it to spend its candidate budget
        only on items that can be shown."""
        return self.score_idx(user_idx)

    def recommend(
        self,
        users: Iterable[str],
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[str] | None = None,
        unknown: Literal["error", "popular"] = "error",
    ) -> pd.DataFrame:
        """Top-k items per user as a frame ``user_id, item_id, rank, score``.

        Args:
            users: External user IDs.
            k: List length (fewer rows when fewer items remain).
            exclude_seen: Drop items the user interacted with in the fitted data.
            candidates: Rank only these item IDs (e.g. a "new arrivals" shelf).
            unknown: ``error`` raises on unknown users; ``popular`` gives them popular items.
        """
        umap, imap, _ = self._check()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        user_list = [str(u) for u in users]
        uidx = umap.lookup(user_list)
        if unknown == "error" and (uidx < 0).any():
            raise UnknownIdError("user", [u for u, i in zip(user_list, uidx, strict=True) if i < 0])
        cand = imap.index(candidates, "item") if candidates is not None else None
        frames = []
        step = user_batch_size(len(imap))
        for start in range(0, len(uidx), step):
            batch = uidx[start : start + step]
            idx, vals = self.topk_idx(batch, k, exclude_seen=exclude_seen, candidates=cand)
            rows, ranks = np.nonzero(idx >= 0)
            frames.append(
                pd.DataFrame(
                    {
                        USER: np.asarray(user_list[start : start + step], dtype=object)[rows],
                        ITEM: imap.to_ids(idx[rows, ranks]),
                        "rank": ranks + 1,
                        "score": vals[rows, ranks].astype(np.float64),
                    }
                )
            )
        if not frames:
            return pd.DataFrame({USER: [], ITEM: [], "rank": [], "score": []})
        return pd.concat(frames, ignore_index=True)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to directory ``path`` (created if needed)."""
        umap, imap, seen = self._check()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": self.name,
            "lmrec_version": __version__,
            "config": self.config.model_dump(),
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=2))
        arrays: dict[str, np.ndarray] = {
            "user_ids": umap.ids.astype(str),
            "item_ids": imap.ids.astype(str),
            "seen_indptr": seen.indptr,
            "seen_indices": seen.indices,
            **{f"m_{k}": v for k, v in self._state().items()},
        }
        np.savez(out / STATE_FILE, **arrays)  # type: ignore[arg-type]
        if self.item_table is not None and len(self.item_table.columns):
            self.item_table.to_parquet(out / ITEMS_FILE)
        self._save_files(out)
        return out

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by `save`; works without the training data."""
        src = Path(path)
        meta_path = src / META_FILE
        if not meta_path.is_file():
            raise InputError(f"not an lmrec model directory (no {META_FILE})", path=src)
        meta = json.loads(meta_path.read_text())
        model_cls = get_model_class(meta["model"])
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise ConfigError(f"{src} holds a '{meta['model']}' model, not '{cls.name}'")
        model = model_cls(**meta["config"])
        with np.load(src / STATE_FILE, allow_pickle=False) as z:
            model.users = IdMap(z["user_ids"].astype(object))
            model.items = IdMap(z["item_ids"].astype(object))
            ones = np.ones(len(z["seen_indices"]), dtype=np.float32)
            model.seen = sp.csr_matrix(
                (ones, z["seen_indices"], z["seen_indptr"]),
                shape=(len(model.users), len(model.items)),
            )
            model._set_state({k[2:]: z[k] for k in z.files if k.startswith("m_")})
        items_path = src / ITEMS_FILE
        model.item_table = pd.read_parquet(items_path) if items_path.is_file() else None
        model._load_files(src)
        return model


_REGISTRY: dict[str, type[Recommender]] = {}
T = TypeVar("T", bound=type[Recommender])


def register(cls: T) -> T:
    """Class decorator adding a model to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def model_names() -> list[str]:
    """Names of all registered models."""
    import lmrec.models  # noqa: F401  (registers the built-in models)

    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name``; `ConfigError` names the valid choices."""
    names = model_names()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(names)}")
    return _REGISTRY[name]


def create_model(name: str, **config: Any) -> Recommender:
    """Instantiate a registered model with config values."""
    return get_model_class(name)(**config)
