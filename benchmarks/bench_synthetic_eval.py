"""Full-ranking evaluation at scale on a synthetic dataset: peak memory and time per phase.

A seeded synthetic dataset (default 100k users x 50k items, 50 draws per user from a
Zipf-like item popularity, duplicates dropped) is built as a `Dataset` with string IDs
("u123", "i456"), split with ``make_split(ds, "ratio")`` (80/10/10 per user), each model is
fitted on train (no validation data) and evaluated with the library's
``lmrec.evaluate.protocol.evaluate(model, split, "test")``: every test user ranked against
every item, top-20, training and validation items excluded.

Each model runs in a fresh child process (generation + split + fit + evaluation), so the
peak RSS reported is that of the whole pipeline for that model. The evaluation's own peak is
measured by resetting the RSS high-water mark just before it (see ``common.py``). The
baseline is the dense float32 user x item score matrix that a non-batched evaluator would
materialise (100k x 50k x 4 bytes = 20 GB).

    python benchmarks/bench_synthetic_eval.py [--users 100000] [--items 50000]
        [--per-user 50] [--models pop,itemknn,als,bpr] [--append-results]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import (
    GB,
    ChildCrashed,
    PeakMeter,
    append_results,
    current_rss,
    format_seconds,
    log,
    machine_info,
    markdown_table,
    peak_rss,
    run_in_child,
)

from lmrec.data.schema import ITEM, USER, Dataset
from lmrec.errors import LmrecError

DEFAULT_MODELS = "pop,itemknn,als,bpr"
#: Short training: this measures evaluation, not model quality.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {"als": {"iterations": 5}, "bpr": {"iterations": 5}}
#: The evaluation's peak RSS must stay under this.
TARGET_BYTES = 4 * GB
PHASES = ("generate", "build", "split", "fit", "evaluate")


def synthetic_interactions(
    n_users: int, n_items: int, per_user: int, exponent: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense (user, item) index pairs: ``per_user`` popularity-weighted draws per user.

    Item popularity follows p(rank r) ~ 1 / r^exponent over a seeded random ranking of the
    items; repeated (user, item) draws are dropped, so users end up with slightly fewer.
    Pairs come out sorted by user, then item.
    """
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** exponent)
    cdf /= cdf[-1]
    rank_to_item = rng.permutation(n_items)
    draws = np.searchsorted(cdf, rng.random(n_users * per_user), side="right")
    items = rank_to_item[np.minimum(draws, n_items - 1)]
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    keys = users * n_items + items
    keys.sort()  # sort + neighbour test: several times faster than np.unique at this size
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys // n_items, keys % n_items


def build_dataset(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> Dataset:
    """A `Dataset` with IDs ``u<index>`` / ``i<index>``.

    The ID strings are formatted once per user and item and gathered per row by index, so no
    string is formatted per interaction; `Dataset.build` then stores one Python string per row.
    """
    user_ids = np.array([f"u{k}" for k in range(n_users)], dtype=object)
    item_ids = np.array([f"i{k}" for k in range(n_items)], dtype=object)
    inter = pd.DataFrame({USER: user_ids[users], ITEM: item_ids[items]})
    return Dataset.build(
        inter,
        items=pd.DataFrame(index=pd.Index(item_ids, name=ITEM)),
        users=pd.DataFrame(index=pd.Index(user_ids, name=USER)),
        name="synthetic",
    )


def _phase(
    name: str,
    out: dict[str, Any],
    profile_dir: str | None,
    tag: str,
    fn: Callable[..., Any],
    *args: Any,
) -> Any:
    """Run one phase, recording its seconds and the process's RSS and peak RSS after it."""
    prof = cProfile.Profile() if profile_dir else None
    t0 = time.perf_counter()
    try:
        if prof is not None:
            prof.enable()
        return fn(*args)
    finally:
        if prof is not None:
            prof.disable()
        out["seconds"][name] = time.perf_counter() - t0
        out["rss_after"][name] = current_rss()
        out["peak_after"][name] = peak_rss()
        log(
            f"{tag}: {name} {out['seconds'][name]:.1f}s, RSS {current_rss() / GB:.2f} GB, "
            f"peak {peak_rss() / GB:.2f} GB"
        )
        if prof is not None and profile_dir:
            path = Path(profile_dir) / f"{tag}-{name}.pstats"
            prof.dump_stats(path)
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
            path.with_suffix(".txt").write_text(buf.getvalue(), encoding="utf-8")


def run_model(
    name: str,
    n_users: int,
    n_items: int,
    per_user: int,
    exponent: float,
    seed: int,
    profile_dir: str | None = None,
) -> dict[str, Any]:
    """Child process: the whole pipeline for one model; returns timings, peaks, metrics."""
    from lmrec.data.splits import make_split
    from lmrec.evaluate.protocol import evaluate
    from lmrec.models import create_model

    out: dict[str, Any] = {"seconds": {}, "rss_after": {}, "peak_after": {}, "error": None}
    out["rss_start"] = current_rss()
    gen = (n_users, n_items, per_user, exponent, seed)
    users, items = _phase("generate", out, profile_dir, name, synthetic_interactions, *gen)
    ds = _phase("build", out, profile_dir, name, build_dataset, users, items, n_users, n_items)
    del users, items  # the Dataset holds what is needed from here on
    out["n_interactions"] = ds.n_interactions
    split = _phase("split", out, profile_dir, name, make_split, ds, "ratio")
    del ds  # the split's parts hold the interactions
    out["counts"] = split.counts()
    config = MODEL_CONFIGS.get(name, {})
    try:
        model = _phase("fit", out, profile_dir, name, create_model(name, **config).fit, split.train)
    except LmrecError as e:
        out["error"] = f"{type(e).__name__}: {e}"
        out["peak_total"] = max(out["peak_after"].values())
        log(f"{name}: {out['error']}")
        return out
    peak_before_eval = peak_rss()
    meter = PeakMeter()
    meter.start()
    result = _phase("evaluate", out, profile_dir, name, evaluate, model, split, "test")
    meter.stop()
    out["eval_base"] = meter.base
    out["eval_peak"] = meter.peak
    out["eval_delta"] = meter.delta
    out["eval_method"] = meter.method
    out["peak_total"] = max(peak_before_eval, meter.peak)
    out["n_eval_users"] = result.n_users
    out["metrics"] = {k: result.metrics[k] for k in ("ndcg@10", "recall@10")}
    return out


HEADERS = [
    "model",
    "result",
    "gen+build s",
    "split s",
    "fit s",
    "eval s",
    "eval users",
    "ndcg@10",
    "RSS before eval GB",
    "eval peak GB",
    "whole-run peak GB",
    "peak / dense",
    "eval < 4 GB",
]


def _row(name: str, r: dict[str, Any], dense: float) -> list[object]:
    s = r.get("seconds", {})

    def gb(key: str) -> str:
        return f"{r[key] / GB:.2f}" if r.get(key) is not None else "-"

    gen = (s["generate"] + s["build"]) if "build" in s else None
    if r.get("error"):
        result = r["error"].split(" (")[0] if r["error"].startswith("ConfigError") else r["error"]
    else:
        result = "ok"
    total = r.get("peak_total")
    return [
        name,
        result,
        format_seconds(gen),
        format_seconds(s.get("split")),
        format_seconds(s.get("fit")),
        format_seconds(s.get("evaluate")),
        f"{r['n_eval_users']:,}" if "n_eval_users" in r else "-",
        f"{r['metrics']['ndcg@10']:.4f}" if "metrics" in r else "-",
        gb("eval_base"),
        gb("eval_peak"),
        gb("peak_total"),
        f"{total / dense:.3f}" if total else "-",
        ("yes" if r["eval_peak"] < TARGET_BYTES else "NO") if "eval_peak" in r else "-",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=100_000, help="default: 100000")
    p.add_argument("--items", type=int, default=50_000, help="default: 50000")
    p.add_argument("--per-user", type=int, default=50, help="draws per user (default: 50)")
    p.add_argument("--zipf", type=float, default=0.9, help="popularity exponent (default: 0.9)")
    p.add_argument("--seed", type=int, default=2020, help="default: 2020")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"default: {DEFAULT_MODELS}")
    p.add_argument("--profile", metavar="DIR", help="write cProfile stats per model and phase")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)

    machine = machine_info()
    log("machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    dense = args.users * args.items * 4
    log(f"dense float32 score matrix: {dense / GB:.1f} GB")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows, results = [], {}
    for name in names:
        log(f"{name}: starting child process")
        try:
            r = run_in_child(
                run_model,
                name,
                args.users,
                args.items,
                args.per_user,
                args.zipf,
                args.seed,
                args.profile,
            )
        except ChildCrashed as e:
            r = {"error": f"crashed: {e}"}
        results[name] = r
        rows.append(_row(name, r, dense))
        log(f"{name}: {rows[-1]}")
    table = markdown_table(HEADERS, rows)
    print(table)
    first = next((r for r in results.values() if "counts" in r), None)
    if args.append_results:
        notes = [
            f"Data: synthetic, {args.users:,} users x {args.items:,} items, {args.per_user} draws "
            f"per user from p(rank r) ~ 1/r^{args.zipf}, seed {args.seed}, duplicates dropped"
            + (
                f": {first['n_interactions']:,} interactions; ratio split (80/10/10 per user) "
                f"-> {', '.join(f'{k} {v:,}' for k, v in first['counts'].items())}."
                if first
                else "."
            ),
            "Each model in a fresh child process: generate + build Dataset + split + fit "
            "(configs: defaults, "
            + ", ".join(f"{m} {c}" for m, c in MODEL_CONFIGS.items())
            + "; no validation data) + `evaluate(model, split, 'test')` (ks 10, 20).",
            "RSS before eval: the process's RSS when evaluation starts (data, split, model); "
            "eval peak: RSS high-water mark during evaluation (reset just before it); "
            "whole-run peak: high-water mark over all phases. All are absolute process RSS.",
            f"peak / dense: whole-run peak over the {dense / GB:.0f} GB dense float32 "
            f"{args.users:,} x {args.items:,} score matrix a non-batched evaluator would hold.",
        ]
        path = append_results(
            "Full-ranking evaluation at scale (bench_synthetic_eval.py)", table, notes, machine
        )
        log(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
