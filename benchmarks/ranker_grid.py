"""Fusion ranker settings on validation: one pipeline fit, then one LightGBM fit per setting.

Fits `fusion` from a TOML pipeline (default ``configs/fusion-ml100k.toml``) on the ratio split
(seed 2020) once, keeping its ranker rows (part-B folds for training, the validation part for
scoring), then trains the LightGBM ranker with each setting of ``--grid`` on the same rows and
reports validation NDCG@10 (candidates ranked first, full-ranking ideal) after several round
counts. Only the validation part is scored: choose here, then test with ``lmrec evaluate``.

A setting's keys that are `LGBMConfig` fields set those fields; any other key goes to LightGBM
as a raw parameter (e.g. ``path_smooth``, ``linear_tree``, ``boosting``). ``--seeds`` trains
each setting once per LightGBM seed and averages each user's NDCG over them before comparing
with the first setting (paired, per user): the seed alone moves validation NDCG@10 by ~0.002.

    python benchmarks/ranker_grid.py [--config FILE] [--rounds 500,1000,1500] [--seeds 1,2,3,4]
        [--grid '{}' --grid '{"objective": "rank_xendcg"}' ...] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table
from pydantic import ValidationError

from lmrec.data.fetch import load_builtin
from lmrec.data.splits import make_split
from lmrec.models.fusion import FusionRecommender
from lmrec.rank.lgbm import (
    LGBMConfig,
    LGBMRanker,
    groups_with_positives,
    ndcg_per_group,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GRID = [  # the config as it is, then one change at a time
    "{}",
    '{"objective": "lambdarank"}',
    '{"objective": "lambdarank", "lambdarank_truncation_level": 10}',
    '{"num_leaves": 31}',
    '{"num_leaves": 7}',
    '{"feature_fraction": 0.5}',
    '{"min_child_samples": 50}',
]


def pipeline_rows(
    config: Path,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], list[str]]:
    """The config's LightGBM section, the pipeline's ranker rows and the feature names.

    ``rows["train"]`` holds the part-B folds (with ``user``, ``item`` and per-group ``fold``),
    ``rows["valid"]`` the validation part scored by the sources fitted on all of train.
    """
    cfg = tomllib.loads(config.read_text())["model"]
    lgbm = dict(cfg.get("lgbm", {}))
    # the rows do not depend on the ranker: fit a token one, skip the MTL and the compile
    cfg["ranker"], cfg["rating_model"] = "lgbm", "lgbm"
    cfg["lgbm"] = {**lgbm, "n_estimators": 5, "rounds": "fixed", "compile": "off"}
    split = make_split(load_builtin("ml-100k"), "ratio", seed=2020)
    model = FusionRecommender(**cfg)
    model.keep_rows = True
    t0 = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    log(f"pipeline fitted in {time.perf_counter() - t0:.0f} s")
    assert model.features is not None
    return lgbm, model.rows, list(model.features.names)


def ranker_rows(
    config: Path,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The config's LightGBM section and the ranker's training and validation rows."""
    lgbm, rows, _ = pipeline_rows(config)
    train, valid = rows["train"], rows["valid"]
    has_pos, keep = groups_with_positives(train["sizes"], train["y"])  # as the fusion trains
    kept = {"x": train["x"][keep], "y": train["y"][keep], "sizes": train["sizes"][has_pos]}
    return lgbm, kept, valid


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A setting's `LGBMConfig` fields, and the rest (raw LightGBM parameters)."""
    fields = {k: v for k, v in overrides.items() if k in LGBMConfig.model_fields}
    return fields, {k: v for k, v in overrides.items() if k not in fields}


def train_setting(
    base: dict[str, Any], overrides: dict[str, Any], seed: int | None, train: dict[str, np.ndarray]
) -> Any:
    """A LightGBM booster for one setting: config fields through `LGBMConfig`, the rest raw."""
    import lightgbm as lgb

    fields, raw = split_overrides(overrides)
    cfg = LGBMConfig(**{**base, **fields, **({"seed": seed} if seed is not None else {})})
    params = {**LGBMRanker(cfg)._params(), **raw}
    data = lgb.Dataset(
        train["x"], label=train["y"], group=train["sizes"], params={"max_bin": cfg.max_bin}
    )
    return lgb.train(params, data, num_boost_round=cfg.n_estimators)


def seed_averaged(
    fit: Callable[[int | None], Any],
    x_valid: np.ndarray,
    valid: dict[str, np.ndarray],
    checkpoints: Sequence[int],
    seeds: Sequence[int | None],
) -> tuple[np.ndarray, list[float]]:
    """Each validation user's NDCG@10 per round checkpoint, averaged over the seeds.

    ``fit(seed)`` returns a LightGBM booster. Returns the (checkpoints x users) means and each
    seed's mean NDCG@10 at the last checkpoint.
    """
    runs = []
    for seed in seeds:
        booster = fit(seed)
        runs.append(np.vstack([
            ndcg_per_group(booster.predict(x_valid, num_iteration=n), valid["sizes"],
                           valid["y"], valid["n_rel"], 10)
            for n in checkpoints
        ]))  # fmt: skip
    return np.mean(runs, axis=0), [float(r[-1].mean()) for r in runs]


def paired_difference(ours: np.ndarray, reference: np.ndarray) -> str:
    """Mean per-user difference ± its standard error, as a table cell."""
    diff = ours - reference
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if diff.any() else 0.0
    return f"{diff.mean():+.4f} ± {se:.4f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "fusion-ml100k.toml")
    p.add_argument("--rounds", default="500,1000,1500", help="Round counts to score at.")
    p.add_argument("--grid", action="append", help="JSON LightGBM overrides (repeatable).")
    p.add_argument(
        "--seeds", default="", help="LightGBM seeds to average over (default: the config's)."
    )
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    try:  # checked before the minutes-long pipeline fit
        checkpoints = [int(r) for r in args.rounds.split(",")]
        seeds: list[int | None] = [int(s) for s in args.seeds.split(",") if s.strip()] or [None]
        grid = [json.loads(g) for g in (args.grid or DEFAULT_GRID)]
    except ValueError as exc:
        p.error(f"--rounds, --seeds and --grid: {exc}")
    if not all(isinstance(g, dict) for g in grid):
        p.error("each --grid must be a JSON object")
    if not args.config.is_file():
        p.error(f"--config {args.config}: no such file")
    section = tomllib.loads(args.config.read_text())["model"].get("lgbm", {})
    for overrides in grid:  # a bad setting fails now, not after the pipeline fit
        try:
            LGBMConfig(**{**section, **split_overrides(overrides)[0]})
        except ValidationError as exc:
            p.error(f"--grid {json.dumps(overrides)}: {exc}")
    machine = machine_info()
    base, train, valid = ranker_rows(args.config)
    base = {**base, "n_estimators": max(checkpoints), "rounds": "fixed", "compile": "off"}
    log(f"{len(train['x'])} training rows in {len(train['sizes'])} groups; "
        f"{len(valid['sizes'])} validation users; seeds {seeds}")  # fmt: skip
    rows: list[list[str]] = []
    reference: np.ndarray | None = None
    for overrides in grid:
        t0 = time.perf_counter()
        means, _ = seed_averaged(
            partial(train_setting, base, overrides, train=train),
            valid["x"], valid, checkpoints, seeds,
        )  # fmt: skip
        seconds = (time.perf_counter() - t0) / len(seeds)
        reference = means[-1] if reference is None else reference  # the first setting
        diff = paired_difference(means[-1], reference)
        log(f"{overrides}: {[round(float(m.mean()), 4) for m in means]} "
            f"({diff}; {seconds:.0f} s per fit)")  # fmt: skip
        rows.append(
            [f"`{json.dumps(overrides)}`", *(f"{m.mean():.4f}" for m in means),
             diff, f"{seconds:.0f}"]
        )  # fmt: skip
    headers = [
        "LightGBM overrides", *(f"valid NDCG@10, {n} rounds" for n in checkpoints),
        f"{checkpoints[-1]} rounds minus the first row ± paired SE", "fit s",
    ]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    seed_note = (
        f"each user's NDCG averaged over LightGBM seeds {', '.join(map(str, seeds))} first"
        if seeds != [None]
        else "the config's LightGBM seed"
    )
    notes = [
        f"Base: the `[model.lgbm]` section of {args.config.name} with a fixed round count; "
        "training rows: the pipeline's part-B folds; scored on the validation part only "
        "(candidates ranked first, ideal DCG over all of each user's validation items).",
        f"Seeds: {seed_note}; the difference is paired over validation users.",
        "Keys that are not `LGBMConfig` fields go to LightGBM as raw parameters.",
    ]
    if args.append_results:
        append_results("Fusion ranker settings on validation (issue 4)", table, notes, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
