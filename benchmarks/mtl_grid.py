"""MTL ranker settings on validation, alone and in the fusion's blend with LightGBM.

Fits `fusion` from a TOML pipeline (default ``configs/fusion-ml100k.toml``) on the ratio split
(seed 2020) once and keeps its ranker rows, as ``ranker_grid.py`` does. Trains the config's
LightGBM ranker once per ``--lgbm-seeds`` seed, then the MTL ranker (`MTLConfig` defaults,
overridden by each ``--grid`` setting) once per ``--seeds`` seed, its epoch count
early-stopped on the last holdout fold and refitted on every fold, as the pipeline does.
Reports validation NDCG@10 of the MTL alone and of the blend the pipeline builds (each
ranker's scores standardised by their mean and deviation on 50,000 training rows, then
summed), averaged over every (LightGBM, MTL) seed pair, with the paired per-user difference
from LightGBM alone and from the first setting.

    python benchmarks/mtl_grid.py [--config FILE] [--seeds 0,1] [--lgbm-seeds 1,2,3,4]
        [--grid '{}' --grid '{"dropout": 0.2}' ...] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table
from pydantic import ValidationError
from ranker_grid import paired_difference, pipeline_rows

from lmrec.rank.lgbm import LGBMConfig, LGBMRanker, groups_with_positives, ndcg_per_group
from lmrec.rank.mtl import MTLConfig
from lmrec.rank.mtl_folds import fit_fold_stopped

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ROWS = 50_000  # as FusionRecommender._fit_blend


def _seeds(text: str, name: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v]
    except ValueError:
        parser.error(f"{name} must be comma-separated integers, not {text!r}")
    if not seeds:
        parser.error(f"{name} is empty")
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "fusion-ml100k.toml")
    p.add_argument("--grid", action="append", help="JSON MTLConfig overrides (repeatable).")
    p.add_argument("--seeds", default="0,1", help="MTL seeds per setting.")
    p.add_argument("--lgbm-seeds", default="1,2,3,4", help="LightGBM seeds for the blend.")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    if not args.config.is_file():
        p.error(f"--config {args.config} is not a file")
    seeds, lgbm_seeds = _seeds(args.seeds, "--seeds", p), _seeds(args.lgbm_seeds, "--lgbm-seeds", p)
    settings: list[dict[str, Any]] = []
    for text in args.grid or ["{}"]:  # checked before the pipeline fit, which takes minutes
        try:
            setting = json.loads(text)
            MTLConfig(**setting)
        except (json.JSONDecodeError, TypeError, ValidationError) as exc:
            p.error(f"bad --grid setting {text!r}: {exc}")
        settings.append(setting)
    machine = machine_info()
    lgbm, rows, feature_names = pipeline_rows(args.config)
    train, valid = rows["train"], rows["valid"]
    has_pos, keep = groups_with_positives(train["sizes"], train["y"])  # as the fusion trains
    tx, ty, tr = train["x"][keep], train["y"][keep], train["rating"][keep]
    tsz, folds = train["sizes"][has_pos], train["fold"][has_pos]
    sample = tx[np.random.default_rng(0).permutation(len(tx))[:SAMPLE_ROWS]]
    vargs = (valid["sizes"], valid["y"], valid["n_rel"], 10)

    def standardised(model: Any) -> np.ndarray:
        pred = np.asarray(model.predict(valid["x"]), dtype=np.float64)
        ref = np.asarray(model.predict(sample), dtype=np.float64)
        return (pred - ref.mean()) / max(ref.std(), 1e-9)

    cfg = LGBMConfig(**{**lgbm, "rounds": "fixed", "compile": "off"})
    lgbm_scores = [standardised(LGBMRanker(cfg, seed=s).fit(tx, tsz, ty).booster)
                   for s in lgbm_seeds]  # fmt: skip
    lgbm_alone = np.mean([ndcg_per_group(s, *vargs) for s in lgbm_scores], axis=0)
    log(f"LightGBM alone: {lgbm_alone.mean():.4f}")
    table = [["(LightGBM alone)", f"{lgbm_alone.mean():.4f}", "", "", "", "", ""]]
    first: np.ndarray | None = None
    for setting in settings:
        t0 = time.perf_counter()
        alone, blend, epochs = [], [], []
        for seed in seeds:
            mtl = fit_fold_stopped(MTLConfig(**{**setting, "seed": seed}), tx, tsz, ty, tr, folds)
            epochs.append(str(mtl.best_epoch))
            ms = standardised(mtl)
            alone.append(ndcg_per_group(ms, *vargs))
            blend += [ndcg_per_group(ls + ms, *vargs) for ls in lgbm_scores]
        a, b = np.mean(alone, axis=0), np.mean(blend, axis=0)
        first = b if first is None else first
        log(f"{json.dumps(setting)}: MTL {a.mean():.4f}, blend {b.mean():.4f} "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
        each = " / ".join(f"{x.mean():.4f}" for x in alone)
        table.append([
            f"`{json.dumps(setting)}`", f"{a.mean():.4f}", each, ", ".join(epochs),
            f"{b.mean():.4f}", paired_difference(b, lgbm_alone), paired_difference(b, first),
        ])  # fmt: skip
    headers = ["MTL setting", "MTL valid NDCG@10", "each MTL seed", "best epoch",
               "blend valid NDCG@10", "blend - LightGBM ± paired SE",
               "blend - first setting ± paired SE"]  # fmt: skip
    out = markdown_table(headers, table)
    print(out)
    if args.append_results:
        notes = [
            f"Pipeline: {args.config.name}, {len(feature_names)} features, its ranker rows; "
            "scored on the validation part only.",
            f"LightGBM: the config's `[model.lgbm]` at a fixed {cfg.n_estimators} rounds, seeds "
            f"{', '.join(map(str, lgbm_seeds))}; MTL seeds {', '.join(map(str, seeds))}. Blend "
            "figures average each user's NDCG@10 over every (LightGBM, MTL) seed pair.",
        ]
        append_results("Fusion ranker: MTL settings and the blend on validation (issue 4)",
                       out, notes, machine)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
