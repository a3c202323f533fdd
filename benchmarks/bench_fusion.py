"""Fusion ranker on ML-100K: pipeline fit time, per-user ranking latency, feature ablation.

Fits `fusion` from a TOML pipeline (default ``configs/fusion-ml100k.toml``) on the ratio split
(seed 2020) with validation, then:

1. **Latency**: for 300 random test users, the time to rank 200 candidate items for one user
   (`FusionRecommender.rank_items`: every source scores the user, features, ranker), median
   and p99, against EASE scoring the same 200 items for the same user in the same run; and
   the full one-user `recommend` (candidate generation included).
2. **Ablation**: the ranker retrained (same config, early stopping on validation) without each
   feature group, on the same candidates; test NDCG@10 against the full feature set.

    python benchmarks/bench_fusion.py [--config FILE] [--append-results] [--no-ablation]
"""

from __future__ import annotations

import argparse
import os
import time
import tomllib
from pathlib import Path

import numpy as np
from common import append_results, log, machine_info, markdown_table

from lmrec.data.fetch import load_builtin
from lmrec.data.splits import make_split
from lmrec.evaluate.protocol import evaluate
from lmrec.models import create_model
from lmrec.models.fusion import FusionRecommender
from lmrec.rank.lgbm import LGBMConfig, LGBMRanker, ndcg_at
from lmrec.rank.mtl import MultiTaskRanker

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("cf", "text", "sequence", "kg", "profile", "popularity", "rating")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def latency(model: FusionRecommender, split, n_users: int = 300) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Median/p99 ms to rank 200 candidates for one user, vs EASE on the same items."""
    rng = np.random.default_rng(0)
    users = rng.choice(split.test.interactions["user_id"].unique(), n_users, replace=False)
    ease = create_model("ease", reg_weight=500.0).fit(split.train)
    items = np.asarray(split.train.item_ids)
    trees = model.lgbm.compiled if model.lgbm is not None else None
    compiled = trees is not None and trees.wait()  # the fit compiles in the background
    fused, base, full, plain = [], [], [], []
    for u in users:
        cand = list(rng.choice(items, 200, replace=False))
        t0 = time.perf_counter()
        model.rank_items(str(u), cand)
        fused.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ease.score([str(u)], cand)
        base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.recommend([str(u)], k=10)
        full.append(time.perf_counter() - t0)
        if compiled and model.lgbm is not None:  # the same ranking through LightGBM's predict
            model.lgbm.compiled = None
            t0 = time.perf_counter()
            model.rank_items(str(u), cand)
            plain.append(time.perf_counter() - t0)
            model.lgbm.compiled = trees
    rows = [
        ["fusion: rank 200 given candidates", f"{_pct(fused, 50):.2f}", f"{_pct(fused, 99):.2f}",
         f"{_pct(fused, 50) / _pct(base, 50):.1f}x"],
        ["fusion: recommend (candidates + rank)", f"{_pct(full, 50):.2f}", f"{_pct(full, 99):.2f}",
         f"{_pct(full, 50) / _pct(base, 50):.1f}x"],
        ["baseline: EASE scores the same 200 items", f"{_pct(base, 50):.2f}",
         f"{_pct(base, 99):.2f}", "1.0x"],
    ]  # fmt: skip
    if plain:
        ratio = f"{_pct(plain, 50) / _pct(base, 50):.1f}x"
        row = ["same, ranker through LightGBM's own predict", f"{_pct(plain, 50):.2f}"]
        rows.insert(1, [*row, f"{_pct(plain, 99):.2f}", ratio])
    table = markdown_table(["step (one user)", "median ms", "p99 ms", "median vs EASE"], rows)
    how = "compiled with lleaves" if compiled else "LightGBM predict (lleaves not installed)"
    return table, [
        f"{n_users} random test users, one at a time; target: median <= 10 ms.",
        f"Ranker: {how}.",
    ]


def ablation(model: FusionRecommender, split) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Test NDCG@10 of the ranker retrained without each feature group."""
    assert model.features is not None and model.sources is not None
    exclude = split.valid.matrix(*model._check()[:2])
    test = model._rows(model.sources, model.features, split.test.interactions, exclude)
    train, valid = model.rows["train"], model.rows["valid"]
    groups = np.asarray(model.features.feature_groups)
    has_pos = np.add.reduceat(train["y"], np.r_[0, np.cumsum(train["sizes"])[:-1]]) > 0
    rows_ok = np.repeat(has_pos, train["sizes"])
    kind = "mtl" if model.chosen["ranker"] == "mtl" else "lgbm"  # blend: its LightGBM part

    def score(cols: np.ndarray) -> tuple[float, float]:
        x, y, sz = train["x"][rows_ok][:, cols], train["y"][rows_ok], train["sizes"][has_pos]
        v = (valid["x"][:, cols], valid["sizes"], valid["y"])
        ranker: LGBMRanker | MultiTaskRanker
        if kind == "lgbm":  # the round count the full model's cross-validation chose
            assert model.lgbm is not None
            fixed = LGBMConfig(**{**model.config.lgbm.model_dump(), **model.lgbm.fitted_params()})
            ranker = LGBMRanker(fixed).fit(x, sz, y, v)
        else:
            ranker = MultiTaskRanker(model.config.mtl).fit(x, sz, y, valid=v)
        vs = ndcg_at(ranker.predict(v[0]), valid["sizes"], valid["y"], valid["n_rel"], 10)
        tx = test["x"][:, cols]
        ts = ndcg_at(ranker.predict(tx), test["sizes"], test["y"], test["n_rel"], 10)
        return vs, ts

    full_v, full_t = score(np.arange(len(groups)))
    rows = [["all features", f"{full_v:.4f}", f"{full_t:.4f}", "1.000x", str(len(groups))]]
    for g in GROUPS:
        cols = np.flatnonzero(groups != g)
        if len(cols) == len(groups):
            rows.append([f"without {g}", "", "", "(no such features)", "0"])
            continue
        v, t = score(cols)
        rows.append([f"without {g}", f"{v:.4f}", f"{t:.4f}", f"{t / full_t:.3f}x",
                     str(len(groups) - len(cols))])  # fmt: skip
    table = markdown_table(
        ["features", "valid NDCG@10", "test NDCG@10", "test vs all", "features dropped"], rows
    )
    notes = [
        f"Ranker: {kind} (chosen on validation: {model.chosen['ranker']}), retrained per row "
        "with the full model's round count (LightGBM) or early stopping on validation (MTL); "
        "candidates fixed (each "
        "source still retrieves); test ranks all items, training and validation items excluded.",
        f"Candidate recall on test: {float(test['y'].sum() / test['n_rel'].sum()):.3f}.",
    ]
    return table, notes


def singles(model: FusionRecommender, split, fused: dict[str, float]) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Test metrics of the fused model and of each of its sources alone, same run."""
    assert model.sources is not None
    metrics = ("ndcg@10", "recall@10", "hit@10")
    rows_m = {"fusion": fused}
    for label, src in model.sources.models.items():
        if label == "biased-mf":  # a rating model, not a top-N ranker
            continue
        rows_m[label] = evaluate(src, split, "test").metrics
    best = max((k for k in rows_m if k != "fusion"), key=lambda k: rows_m[k]["ndcg@10"])
    rows = [
        [name, *(f"{m[k]:.4f}" for k in metrics), f"{m['ndcg@10'] / rows_m[best]['ndcg@10']:.3f}x"]
        for name, m in sorted(rows_m.items(), key=lambda kv: -kv[1]["ndcg@10"])
    ]
    table = markdown_table(["model", *metrics, f"ndcg@10 vs {best}"], rows)
    return table, [
        "Every source is the model the fusion pipeline fitted on all of train (configs chosen "
        "on validation in issues 2-3, early stopping on validation); full ranking, training "
        "and validation items excluded, 943 test users.",
        f"Best single model: {best}; target: fusion >= 1.05x it.",
    ]


def ratings(model: FusionRecommender, split) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Test RMSE/MAE of the fused rating model vs biased MF tuned on validation RMSE."""
    from lmrec.evaluate.protocol import select_config
    from lmrec.evaluate.rating import evaluate_ratings

    params, trials = select_config("biased-mf", split)
    mf = create_model("biased-mf", **params).fit(split.train)
    rows = []
    base = evaluate_ratings(mf, split, "test")
    for name, m in ((f"fusion (rating model: {model.chosen['rating']})", model), ("biased-mf", mf)):
        v, t = evaluate_ratings(m, split, "valid"), evaluate_ratings(m, split, "test")
        rows.append([name, f"{v['rmse']:.4f}", f"{t['rmse']:.4f}", f"{t['mae']:.4f}",
                     f"{t['rmse'] / base['rmse']:.3f}x"])  # fmt: skip
    mean = float(split.train.interactions["rating"].mean())
    true = split.test.interactions["rating"].to_numpy()
    rmse_mean = float(np.sqrt(np.mean((true - mean) ** 2)))
    rows.append(["global mean", "", f"{rmse_mean:.4f}", f"{np.mean(np.abs(true - mean)):.4f}",
                 f"{rmse_mean / base['rmse']:.3f}x"])  # fmt: skip
    table = markdown_table(["model", "valid RMSE", "test RMSE", "test MAE", "RMSE vs biased-mf"],
                           rows)  # fmt: skip
    notes = [
        f"biased-mf: its {len(trials)}-config grid searched on validation RMSE, chosen "
        f"`{params}`, refitted on train; fusion: rating model chosen on validation RMSE "
        f"({model.report.get('valid_rmse')}).",
        f"{base['n']:.0f} test ratings; lower is better.",
    ]
    return table, notes


def recall(model: FusionRecommender, split) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Recall of the merged candidate set and of each source alone, on test."""
    from lmrec.rank.sources import candidate_recall

    assert model.sources is not None
    users, items, _ = model._check()
    relevant = split.test.matrix(users, items)
    who = np.flatnonzero(np.diff(relevant.indptr) > 0)
    rec = candidate_recall(model.sources, who, relevant, split.valid.matrix(users, items))
    budgets = {s.label: s.budget for s in model.config.sources}
    rows = [["merged", "", f"{rec['recall_merged']:.4f}", f"{rec['size']:.0f}"]]
    for key, value in rec.items():
        if key.startswith("recall_") and key != "recall_merged":
            rows.append([key[7:], str(budgets[key[7:]]), f"{value:.4f}", ""])
    table = markdown_table(["source", "budget", "test recall", "mean candidates"], rows)
    return table, ["Recall: share of each test user's test items among their candidates."]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "fusion-ml100k.toml")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    p.add_argument("--no-ablation", action="store_true")
    args = p.parse_args(argv)
    machine = machine_info()
    cfg = tomllib.loads(args.config.read_text())["model"]
    split = make_split(load_builtin("ml-100k"), "ratio", seed=2020)
    model = FusionRecommender(**cfg)
    model.keep_rows = True
    t0 = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    fit_s = time.perf_counter() - t0
    log(f"fit {fit_s:.0f}s; {model.chosen}; {model.report}")
    fused = evaluate(model, split, "test").metrics
    ndcg = fused["ndcg@10"]
    sg_table, sg_notes = singles(model, split, fused)
    print(sg_table)
    if args.append_results:
        append_results("Ratio split: fusion vs each of its sources, same run (issue 4)",
                       sg_table, [*sg_notes, f"Fusion chose {model.chosen}."], machine)  # fmt: skip
    t0 = time.perf_counter()
    create_model("ease", reg_weight=500.0).fit(split.train)
    ease_s = time.perf_counter() - t0
    lat_table, lat_notes = latency(model, split)
    fit_note = (
        f"Whole pipeline fit (sources on part A, features, sources on all of train, both "
        f"rankers, rating models): {fit_s:.0f} s = {fit_s / ease_s:.0f}x EASE's {ease_s:.1f} s "
        f"in the same run; test NDCG@10 {ndcg:.4f}; config {os.path.relpath(args.config, ROOT)}."
    )
    print(lat_table)
    if args.append_results:
        append_results("Fusion ranker: one-user ranking latency and pipeline fit time (issue 4)",
                       lat_table, [*lat_notes, fit_note], machine)  # fmt: skip
    rc_table, rc_notes = recall(model, split)
    print(rc_table)
    if args.append_results:
        append_results("Fusion ranker: candidate recall per source, ratio split (issue 4)",
                       rc_table, rc_notes, machine)  # fmt: skip
    rt_table, rt_notes = ratings(model, split)
    print(rt_table)
    if args.append_results:
        append_results("Fusion ranker: rating prediction vs biased MF, ratio split (issue 4)",
                       rt_table, rt_notes, machine)  # fmt: skip
    if not args.no_ablation:
        ab_table, ab_notes = ablation(model, split)
        print(ab_table)
        if args.append_results:
            append_results("Fusion ranker: feature-group ablation, ratio split (issue 4)",
                           ab_table, ab_notes, machine)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
