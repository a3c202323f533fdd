"""Fusion ranker settings on validation: one pipeline fit, then one LightGBM fit per setting.

Fits `fusion` from a TOML pipeline (default ``configs/fusion-ml100k.toml``) on the ratio split
(seed 2020) once, keeping its ranker rows (part-B folds for training, the validation part for
scoring), then trains the LightGBM ranker with each setting of ``--grid`` on the same rows and
reports validation NDCG@10 (candidates ranked first, full-ranking ideal) after several round
counts. Only the validation part is scored: choose here, then test with ``lmrec evaluate``.

    python benchmarks/ranker_grid.py [--config FILE] [--rounds 500,1000,1500]
        [--grid '{}' --grid '{"objective": "rank_xendcg"}' ...] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table

from lmrec.data.fetch import load_builtin
from lmrec.data.splits import make_split
from lmrec.models.fusion import FusionRecommender
from lmrec.rank.lgbm import LGBMConfig, LGBMRanker, groups_with_positives, ndcg_at

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "fusion-ml100k.toml")
    p.add_argument("--rounds", default="500,1000,1500", help="Round counts to score at.")
    p.add_argument("--grid", action="append", help="JSON LightGBM overrides (repeatable).")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    machine = machine_info()
    checkpoints = [int(r) for r in args.rounds.split(",")]
    grid = [json.loads(g) for g in (args.grid or DEFAULT_GRID)]
    base, train, valid = ranker_rows(args.config)
    base = {**base, "n_estimators": max(checkpoints), "rounds": "fixed", "compile": "off"}
    log(f"{len(train['x'])} training rows in {len(train['sizes'])} groups; "
        f"{len(valid['sizes'])} validation users")  # fmt: skip
    rows: list[list[str]] = []
    first = 0.0
    for overrides in grid:
        t0 = time.perf_counter()
        ranker = LGBMRanker(LGBMConfig(**{**base, **overrides})).fit(
            train["x"], train["sizes"], train["y"]
        )
        scores = [
            ndcg_at(
                ranker.booster.predict(valid["x"], num_iteration=n),
                valid["sizes"], valid["y"], valid["n_rel"], 10,
            )
            for n in checkpoints
        ]  # fmt: skip
        seconds = time.perf_counter() - t0
        log(f"{overrides}: {[round(s, 4) for s in scores]} ({seconds:.0f} s)")
        first = first if rows else scores[-1]  # the first setting is the baseline
        rows.append(
            [f"`{json.dumps(overrides)}`", *(f"{s:.4f}" for s in scores),
             f"{scores[-1] / first:.3f}x", f"{seconds:.0f}"]
        )  # fmt: skip
    headers = [
        "LightGBM overrides", *(f"valid NDCG@10, {n} rounds" for n in checkpoints),
        f"{checkpoints[-1]} rounds vs the first row", "fit s",
    ]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    notes = [
        f"Base: the `[model.lgbm]` section of {args.config.name} with a fixed round count; "
        "training rows: the pipeline's part-B folds; scored on the validation part only "
        "(candidates ranked first, ideal DCG over all of each user's validation items).",
    ]
    if args.append_results:
        append_results("Fusion ranker settings on validation (issue 4)", table, notes, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
