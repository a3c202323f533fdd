"""Evaluation protocols: full ranking on a split, selection on validation, model comparison.

Full ranking follows RecBole's ``mode: full``: every catalog item is ranked for every user with
at least one target item; the user's training items are excluded, and on test also their
validation items. Hyperparameters are chosen on the validation part only.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from lmrec.data.schema import Dataset, split_tokens
from lmrec.data.splits import Split
from lmrec.errors import ConfigError
from lmrec.evaluate.accumulator import MetricAccumulator
from lmrec.models.base import Recommender, create_model, get_model_class
from lmrec.models.topk import keep_columns, user_batch_size

#: Item fields tried, in order, as the categorical features for intra-list diversity.
CATEGORY_FIELDS = ("genres", "class", "categories", "genre")


class EvalConfig(BaseModel):
    """Settings of an evaluation run."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field(default_factory=lambda: [10, 20], description="Cut-offs for @K metrics.")
    select_metric: str = Field("ndcg@10", description="Validation metric that picks the config.")
    tune: bool = Field(True, description="Search each model's grid on validation.")
    max_trials: int = Field(24, gt=0, description="Most configs tried per model (random subset).")
    cold_user_max: int = Field(
        20,
        ge=0,
        description="Users with at most this many training "
        "interactions form the 'cold users' slice.",
    )
    tail_share: float = Field(
        0.2, gt=0, lt=1, description="Share of training interactions held by the long-tail items."
    )
    seed: int = Field(2020, description="Seed for sampling configs from a grid.")


@dataclass
class EvalResult:
    """Metrics of one model on one stage of a split."""

    metrics: dict[str, float]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    n_users: int = 0
    #: Per evaluated user (row index -> value) of the selection metric, for paired comparisons.
    per_user: dict[int, float] = field(default_factory=dict, repr=False)


@dataclass
class ModelRun:
    """One model's selected config, validation and test results and timing."""

    model: str
    config: dict[str, Any]
    valid: dict[str, float]
    test: EvalResult
    fit_seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def category_features(dataset: Dataset) -> sp.csr_matrix | None:
    """One-hot item x category matrix from the first genre-like field, if any."""
    for name in CATEGORY_FIELDS:
        if name in dataset.items.columns:
            tokens = split_tokens(dataset.items[name])
            vocab = {t: i for i, t in enumerate(sorted({t for ts in tokens for t in ts}))}
            rows = [r for r, ts in enumerate(tokens) for _ in ts]
            cols = [vocab[t] for ts in tokens for t in ts]
            data = np.ones(len(rows), dtype=np.float32)
            return sp.csr_matrix((data, (rows, cols)), shape=(len(tokens), len(vocab)))
    return None


def evaluate(
    model: Recommender,
    split: Split,
    stage: Literal["valid", "test"] = "test",
    config: EvalConfig | None = None,
    candidates: np.ndarray | None = None,
    item_features: sp.csr_matrix | None = None,
) -> EvalResult:
    """Full-ranking evaluation of a model fitted on ``split.train``.

    Args:
        model: A model fitted on the split's training part.
        split: The split.
        stage: ``valid`` or ``test``; on test, validation items are excluded too.
        config: Cut-offs, slice definitions.
        candidates: Rank only these item indices (e.g. the held-out cold items).
        item_features: Item x feature matrix for intra-list diversity.
    """
    cfg = config or EvalConfig()
    users_map, items_map, seen = model._check()
    popularity = model.popularity()
    if stage == "test" and hasattr(model, "with_history"):
        # sequential models read the validation interactions as history on test, as RecBole
        model = model.with_history(split.fitted())
    target = getattr(split, stage)
    relevant = target.matrix(users_map, items_map)
    exclude = split.valid.matrix(users_map, items_map) if stage == "test" else None
    relevant = keep_columns(relevant, candidates)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    acc = MetricAccumulator(
        cfg.ks,
        len(items_map),
        popularity,
        n_train_users=int((np.diff(seen.indptr) > 0).sum()),
        item_features=item_features,
        tail_share=cfg.tail_share,
    )
    k = max(cfg.ks)
    step = user_batch_size(len(items_map))
    for start in range(0, len(users), step):
        batch = users[start : start + step]
        idx, _ = model.topk_idx(
            batch, k, exclude=exclude[batch] if exclude is not None else None, candidates=candidates
        )
        acc.add(batch, idx, relevant[batch])
    activity = np.diff(seen.indptr)
    cold = users[activity[users] <= cfg.cold_user_max]
    slices = {"long_tail_items": acc.long_tail_result()}
    if len(cold):
        slices["cold_users"] = {**acc.result(cold), "n_users": float(len(cold))}
    per_user: dict[int, float] = {}
    if acc.has_per_user(cfg.select_metric):  # a beyond-accuracy metric has no per-user value
        evaluated, values = acc.per_user(cfg.select_metric)
        per_user = dict(zip(evaluated.tolist(), values.tolist(), strict=True))
    return EvalResult(metrics=acc.result(), slices=slices, n_users=len(users), per_user=per_user)


Candidates = Literal["all", "heldout"] | Sequence[str]


def candidate_items(
    split: Split, stage: Literal["valid", "test"], candidates: Candidates
) -> np.ndarray | None:
    """Dense item indices to rank among on ``stage`` (None: the whole catalog).

    ``heldout`` means the items that have interactions in that stage's part (on a cold-item
    split: the held-out items); a list of item IDs is used as given on every stage.
    """
    items = split.train.item_map()
    if isinstance(candidates, str) and candidates == "all":
        return None
    if isinstance(candidates, str) and candidates == "heldout":
        part = getattr(split, stage).interactions
        return np.unique(items.index(part["item_id"].unique(), "item"))
    if isinstance(candidates, str):
        raise ConfigError(
            f"candidates must be 'all', 'heldout' or a list of IDs, not {candidates!r}"
        )
    return np.unique(items.index(list(candidates), "item"))


def _item_ids(split: Split, idx: np.ndarray | None) -> list[str] | None:
    """External IDs of dense item indices (None stays None), for ``fit(valid_candidates=)``."""
    return None if idx is None else [str(i) for i in split.train.item_map().to_ids(idx)]


def config_grid(model_name: str, max_trials: int, seed: int) -> list[dict[str, Any]]:
    """The model's search grid as a list of configs (a seeded random subset if too large)."""
    space = get_model_class(model_name).search_space
    if not space:
        return [{}]
    keys = list(space)
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*space.values())]
    if len(combos) > max_trials:
        combos = random.Random(seed).sample(combos, max_trials)
    return combos


def select_config(
    model_name: str,
    split: Split,
    config: EvalConfig | None = None,
    grid: Sequence[dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
    candidates: Candidates = "all",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick the config with the best validation ``select_metric``.

    ``candidates`` restricts the validation ranking as in `candidate_items`.

    Returns:
        The best config overrides and one record per trial (config, metric, seconds).
    """
    cfg = config or EvalConfig()
    trials_cfg = (
        list(grid) if grid is not None else config_grid(model_name, cfg.max_trials, cfg.seed)
    )
    valid_cand = candidate_items(split, "valid", candidates)
    valid_ids = _item_ids(split, valid_cand)
    trials: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] = (-np.inf, {})
    for overrides in tqdm(
        trials_cfg,
        desc=f"tune {model_name}",
        leave=False,
        disable=True if len(trials_cfg) < 2 else None,
    ):
        params = {**(base or {}), **overrides}
        t0 = time.perf_counter()
        model = create_model(model_name, **params).fit(
            split.train, valid=split.valid, valid_candidates=valid_ids
        )
        params = {**params, **model.fitted_params()}
        metric = model.select_metric or cfg.select_metric
        if metric == "rmse":  # rating predictors: the lowest validation RMSE wins
            from lmrec.evaluate.rating import evaluate_ratings

            value = -evaluate_ratings(model, split, "valid")["rmse"]  # type: ignore[arg-type]
        else:
            value = evaluate(model, split, "valid", cfg, candidates=valid_cand).metrics.get(
                metric, float("nan")
            )
            if np.isnan(value):
                raise ConfigError(f"unknown select_metric '{metric}'")
        trials.append({"config": params, metric: abs(value), "seconds": time.perf_counter() - t0})
        if value > best[0]:
            best = (value, params)
    return best[1], trials


def compare(
    split: Split,
    model_names: Sequence[str],
    config: EvalConfig | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] | None = None,
    candidates: Candidates = "all",
) -> list[ModelRun]:
    """Tune (optionally) and test each model on ``split``; one `ModelRun` per model.

    Args:
        split: Train/valid/test split.
        model_names: Registered model names.
        config: Evaluation settings.
        configs: Fixed config overrides per model (tuning searches around them).
        log: Where progress lines go.
        candidates: Rank among these items on valid and test (see `candidate_items`).
    """
    cfg = config or EvalConfig()
    for name in model_names:
        get_model_class(name)  # fail on a bad name before any work
    features = category_features(split.train)
    valid_cand = candidate_items(split, "valid", candidates)
    test_cand = candidate_items(split, "test", candidates)
    runs = []
    for name in model_names:
        base = (configs or {}).get(name, {})
        trials: list[dict[str, Any]] = []
        params = dict(base)
        # a model without a grid has nothing to select: fit it once, early-stopping on valid
        search = cfg.tune and bool(get_model_class(name).search_space)
        if search:
            params, trials = select_config(name, split, cfg, base=base, candidates=candidates)
        t0 = time.perf_counter()
        if search:  # params already hold what early stopping learned
            model = create_model(name, **params).fit(split.train)
        else:
            model = create_model(name, **params).fit(
                split.train, valid=split.valid, valid_candidates=_item_ids(split, valid_cand)
            )
            params = {**params, **model.fitted_params()}
        fit_s = time.perf_counter() - t0
        valid = evaluate(model, split, "valid", cfg, candidates=valid_cand).metrics
        test = evaluate(model, split, "test", cfg, candidates=test_cand, item_features=features)
        if hasattr(model, "predict_ratings") and split.test.has("rating"):
            from lmrec.evaluate.rating import evaluate_ratings

            scored = evaluate_ratings(model, split, "test")
            test.metrics.update({"rmse": scored["rmse"], "mae": scored["mae"]})
        runs.append(ModelRun(name, params, valid, test, fit_s, trials))
        if log:
            log(
                f"{name}: {cfg.select_metric} valid={valid[cfg.select_metric]:.4f} "
                f"test={test.metrics[cfg.select_metric]:.4f} ({len(trials)} configs tried)"
            )
    return runs
