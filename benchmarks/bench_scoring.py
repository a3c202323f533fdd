"""Scoring + top-k for every user: the library's batched path against a naive per-user loop.

For each model fitted on all of ML-100K (943 users x 1682 items), this times

* batched: ``model.recommend(all_users, k)`` (blocks of users scored at once, vectorised
  exclusion of seen items, ``argpartition`` top-k), and
* naive: for each user ``model.score([u])``, seen items set to -inf, ``np.argsort``, first k,

each repeated (median reported), and measures the peak RSS increase of one batched call (and
one naive loop) in a fresh child process that loads the saved model (see ``common.py``).

    python benchmarks/bench_scoring.py [--data DIR] [--models pop,itemknn,ease,als,bpr]
                                       [--k 10] [--repeats 3] [--append-results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import (
    MB,
    PeakMeter,
    append_results,
    format_seconds,
    log,
    machine_info,
    markdown_table,
    run_in_child,
)

from lmrec.data.schema import ITEM, USER, Dataset
from lmrec.models import Recommender, create_model

DEFAULT_MODELS = "pop,itemknn,ease,als,bpr"
#: Fast configurations: library defaults, except fewer BPR epochs (no early stopping here).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {"bpr": {"iterations": 30}}


def load_data(data: str | None) -> Dataset:
    """ML-100K from a folder of RecBole atomic files, or the built-in copy."""
    if data:
        from lmrec.data.atomic import read_atomic

        return read_atomic(data)
    from lmrec.data.fetch import load_builtin

    return load_builtin("ml-100k")


def naive_recommend(model: Recommender, users: list[str], k: int) -> pd.DataFrame:
    """The baseline: one user at a time, full ``argsort`` of that user's scores."""
    assert model.users is not None and model.items is not None and model.seen is not None
    seen, items = model.seen, model.items
    uidx = model.users.index(users)
    top = np.empty((len(users), k), dtype=np.int64)
    vals = np.empty((len(users), k), dtype=np.float32)
    for row, (user, u) in enumerate(zip(users, uidx, strict=True)):
        scores = model.score([user])[0]
        scores[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        top[row], vals[row] = order, scores[order]
    return pd.DataFrame(
        {
            USER: np.repeat(np.asarray(users, dtype=object), k),
            ITEM: items.to_ids(top.ravel()),
            "rank": np.tile(np.arange(1, k + 1), len(users)),
            "score": vals.ravel().astype(np.float64),
        }
    )


def batched_recommend(model: Recommender, users: list[str], k: int) -> pd.DataFrame:
    """The library path under test."""
    return model.recommend(users, k=k)


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def agreement(
    batched: pd.DataFrame, naive: pd.DataFrame, n_users: int, k: int
) -> tuple[float, float]:
    """Shares of users whose two top-k lists are identical (item for item, in order), and
    whose lists have the same score at every rank (identical up to tied items)."""
    if len(batched) != n_users * k or len(naive) != n_users * k:
        return float("nan"), float("nan")
    a = batched[ITEM].to_numpy().reshape(n_users, k)
    b = naive[ITEM].to_numpy().reshape(n_users, k)
    sa = batched["score"].to_numpy().reshape(n_users, k)
    sb = naive["score"].to_numpy().reshape(n_users, k)
    same_scores = np.isclose(sa, sb, rtol=1e-5, atol=1e-6).all(axis=1)
    return float((a == b).all(axis=1).mean()), float(same_scores.mean())


def measure_memory(model_dir: str, mode: str, k: int) -> dict[str, Any]:
    """Child process: load the model, warm up, and measure one call's peak RSS increase."""
    model = Recommender.load(model_dir)
    assert model.users is not None
    users = [str(u) for u in model.users.ids]
    fn = batched_recommend if mode == "batched" else naive_recommend
    fn(model, users[:2], k)  # one-time allocations (BLAS buffers, lazy imports) not counted
    meter = PeakMeter()
    meter.start()
    out = fn(model, users, k)
    meter.stop()
    return {"delta": meter.delta, "base": meter.base, "method": meter.method, "rows": len(out)}


def bench_model(
    name: str, ds: Dataset, k: int, repeats: int, workdir: Path
) -> tuple[list[object], str]:
    """One table row for model ``name``, and the memory method used."""
    config = MODEL_CONFIGS.get(name, {})
    log(f"{name}: fitting {config or '(defaults)'}")
    fit_s, model = _timed(lambda: create_model(name, **config).fit(ds))
    assert model.users is not None
    users = [str(u) for u in model.users.ids]
    batched_t, naive_t = [], []
    batched_df = naive_df = pd.DataFrame()
    for rep in range(repeats):
        t, batched_df = _timed(batched_recommend, model, users, k)
        batched_t.append(t)
        t, naive_df = _timed(naive_recommend, model, users, k)
        naive_t.append(t)
        log(f"{name}: repeat {rep + 1}/{repeats}: batched {batched_t[-1]:.3f}s, naive {t:.3f}s")
    same, same_scores = agreement(batched_df, naive_df, len(users), k)
    model_dir = workdir / name
    model.save(model_dir)
    del model
    mem = {}
    for mode in ("batched", "naive"):
        mem[mode] = run_in_child(measure_memory, str(model_dir), mode, k)
        log(f"{name}: {mode} peak RSS increase {mem[mode]['delta'] / MB:.1f} MB")
    b, n = statistics.median(batched_t), statistics.median(naive_t)
    row: list[object] = [
        name,
        format_seconds(fit_s),
        format_seconds(b),
        format_seconds(n),
        f"{n / b:.1f}x",
        f"{mem['batched']['delta'] / MB:.1f}",
        f"{mem['naive']['delta'] / MB:.1f}",
        f"{mem['batched']['base'] / MB:.0f}",
        f"{100 * same:.1f}%",
        f"{100 * same_scores:.1f}%",
    ]
    return row, str(mem["batched"]["method"])


HEADERS = [
    "model",
    "fit s",
    "batched s",
    "naive s",
    "naive/batched",
    "batched peak +MB",
    "naive peak +MB",
    "baseline RSS MB",
    "same top-k",
    "same scores",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="folder of ML-100K atomic files (default: built-in ml-100k)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"default: {DEFAULT_MODELS}")
    p.add_argument("--k", type=int, default=10, help="list length (default: 10)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (default: 3)")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)

    machine = machine_info()
    log("machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()))
    ds = load_data(args.data)
    n_users, n_items = len(ds.users), len(ds.items)
    log(f"data: {n_users} users x {n_items} items, {ds.n_interactions} interactions")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows, methods = [], set()
    with tempfile.TemporaryDirectory(prefix="lmrec-bench-") as tmp:
        for name in names:
            row, method = bench_model(name, ds, args.k, args.repeats, Path(tmp))
            rows.append(row)
            methods.add(method)
    table = markdown_table(HEADERS, rows)
    print(table)
    if args.append_results:
        notes = [
            f"Data: {ds.name}, {n_users} users x {n_items} items, {ds.n_interactions} "
            f"interactions; every user ranked against every item, top-{args.k}, seen items "
            "excluded.",
            f"batched = `model.recommend(all_users, k={args.k})`; naive = per user "
            "`model.score([u])`, seen -> -inf, `np.argsort`, first k. Times: median of "
            f"{args.repeats} runs in one process (fit excluded). Configs: defaults, "
            + ", ".join(f"{m} {c}" for m, c in MODEL_CONFIGS.items())
            + ".",
            "Peak +MB: RSS high-water mark above the post-load RSS during one call, in a fresh "
            f"spawned child that loaded the saved model (method: {', '.join(sorted(methods))}); "
            "baseline RSS = the child's RSS just before the call.",
            "same top-k: share of users whose batched and naive lists are identical; same "
            "scores: share whose lists have equal scores rank by rank (lists that differ only "
            "in which of several tied items is listed). The naive loop breaks ties by item "
            "index (stable argsort).",
        ]
        path = append_results(
            f"Scoring + top-{args.k} for all users (bench_scoring.py)", table, notes, machine
        )
        log(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
