"""Vector search: `ExactIndex` against faiss configurations of `AnnIndex`, on clustered data.

Synthetic vectors that resemble sentence embeddings: ``--centroids`` random unit centres with
skewed cluster sizes, plus a shared low-rank (anisotropic) component and isotropic noise, each
vector L2-normalised; generated in chunks with a fixed seed. Queries are drawn the same way.
Ground truth is `ExactIndex`'s top-k. For every configuration this reports build time, QPS
(one batch of all queries through ``index.search``, with 1 and 2 threads), recall@k against
exact, memory, and the QPS ratio against exact search timed in the same run; then the same
with seen-item style exclusions (per query 5 of its true top-10 plus 45 random IDs).

    python benchmarks/bench_index.py [--n 1000000] [--dim 384] [--queries 1000]
                                     [--configs hnsw16,hnsw32,ivf4096] [--append-results]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import faiss
import numpy as np
from common import MB, PeakMeter, append_results, current_rss, log, machine_info, markdown_table
from threadpoolctl import threadpool_limits

from lmrec.index import AnnIndex, ExactIndex, VectorIndex

EF = (32, 64, 128, 256)
#: Build configurations -> (kind, build params, search params to sweep).
CONFIGS: dict[str, tuple[str, dict[str, int], list[dict[str, int]]]] = {
    "ivf4096": ("ivf", {"nlist": 4096}, [{"nprobe": p} for p in (8, 16, 32, 64)]),
    "hnsw16": ("hnsw", {"m": 16, "ef_construction": 40}, [{"ef_search": e} for e in EF]),
    "hnsw16c100": ("hnsw", {"m": 16, "ef_construction": 100}, [{"ef_search": e} for e in EF]),
    "hnsw32": ("hnsw", {"m": 32, "ef_construction": 40}, [{"ef_search": e} for e in EF]),
}
#: Fixed shape of the synthetic data (see `make_vectors`; the rest are command-line options).
MEAN_WEIGHT, CLUSTERS_PER_TOPIC, SUB_RANK = 0.5, 40, 16


def make_vectors(
    n: int,
    dim: int,
    centroids: int,
    seed: int,
    data_seed: int,
    spread: float = 0.8,
    sub_scale: float = 0.8,
    noise: float = 0.3,
) -> np.ndarray:
    """``n`` normalised float32 vectors; ``data_seed`` fixes the clusters, ``seed`` the draws.

    Each vector is a shared mean direction (anisotropy, as in real embeddings) + its cluster's
    centre (centres lie around ``centroids / CLUSTERS_PER_TOPIC`` topic directions, so
    neighbouring clusters overlap) + a draw from that cluster's own random rank-`SUB_RANK`
    subspace (scale ``sub_scale``) + isotropic noise (norm about ``noise``). Cluster sizes are
    skewed (gamma-distributed weights). The defaults give cosines like MiniLM-style sentence
    embeddings: random pairs ~0.16-0.19, a query's nearest neighbour ~0.86.
    """
    base = np.random.default_rng(data_seed)
    mean = base.normal(size=dim).astype(np.float32)
    mean *= MEAN_WEIGHT / np.linalg.norm(mean)
    topics = _unit(base.normal(size=(max(1, centroids // CLUSTERS_PER_TOPIC), dim)))
    own = _unit(base.normal(size=(centroids, dim)))
    centres = _unit(topics[base.integers(0, len(topics), centroids)] + spread * own)
    weights = base.gamma(1.0, size=centroids)
    sub = base.normal(size=(centroids, SUB_RANK, dim)).astype(np.float32) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for c0 in range(0, n, 50_000):
        m = min(n, c0 + 50_000) - c0
        assign = rng.choice(centroids, size=m, p=weights / weights.sum())
        z = rng.standard_normal((m, SUB_RANK), dtype=np.float32) * (sub_scale / SUB_RANK**0.5)
        x = mean + centres[assign] + np.einsum("nr,nrd->nd", z, sub[assign])
        x += rng.standard_normal((m, dim), dtype=np.float32) * np.float32(noise / dim**0.5)
        out[c0 : c0 + m] = _unit(x)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed_search(
    index: VectorIndex, q: np.ndarray, k: int, threads: int, excl: list[set[str]] | None, reps: int
) -> tuple[float, list[list[str]], np.ndarray]:
    """Best wall time of ``reps`` batch searches with ``threads`` threads, and the results."""
    if isinstance(index, AnnIndex):
        index.threads = threads
    best, res, scores = float("inf"), [], np.empty(0)
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(reps):
            t0 = time.perf_counter()
            res, scores = index.search(q, k, exclude=excl)
            best = min(best, time.perf_counter() - t0)
    return best, res, scores


def recall(res: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(r) & set(t)) / len(t) for r, t in zip(res, truth, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--centroids", type=int, default=2000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--spread", type=float, default=0.8, help="cluster centres around topics")
    p.add_argument("--sub-scale", type=float, default=0.8, help="within-cluster subspace draw")
    p.add_argument("--noise", type=float, default=0.3, help="isotropic noise")
    p.add_argument("--title", default="", help="extra words for the results title")
    p.add_argument("--note", action="append", default=[], help="extra note for the results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"from {list(CONFIGS)}")
    p.add_argument("--reps", type=int, default=3, help="ANN timing repeats (best is kept)")
    p.add_argument("--append-results", action="store_true")
    args = p.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    if unknown := set(names) - set(CONFIGS):
        p.error(f"unknown configs {sorted(unknown)}")
    k, nq = args.k, args.queries

    log(f"generating {args.n:,} x {args.dim} vectors and {nq} queries")
    shape = {"spread": args.spread, "sub_scale": args.sub_scale, "noise": args.noise}
    x = make_vectors(args.n, args.dim, args.centroids, args.seed + 1, args.seed, **shape)
    q = make_vectors(nq, args.dim, args.centroids, args.seed + 2, args.seed, **shape)
    ids = [f"v{i}" for i in range(args.n)]
    rng = np.random.default_rng(args.seed + 3)

    rows: list[list[object]] = []
    meter = PeakMeter()
    meter.start()
    t0 = time.perf_counter()
    exact = ExactIndex(args.dim)
    exact.upsert(ids, x)
    exact_build = time.perf_counter() - t0
    meter.stop()
    log(f"exact: upsert {exact_build:.1f}s; searching (2 threads, then 1)")
    t2, truth, top = timed_search(exact, q, k, 2, None, 1)
    t1, _, _ = timed_search(exact, q, k, 1, None, 1)
    sample = x[rng.choice(args.n, size=min(args.n, 10_000), replace=False)]
    stats = (
        f"Mean cosine of a query's nearest neighbour {top[:, 0].mean():.3f}, of its {k}th "
        f"{top[:, k - 1].mean():.3f}, of random pairs {(q @ sample.T).mean():.3f}."
    )
    excl = [set(t[:5]) | {ids[j] for j in rng.integers(0, args.n, 45)} for t in truth]
    te, truth_ex, _ = timed_search(exact, q, k, 2, excl, 1)
    log(f"exact: {nq / t1:.1f} QPS (1 thread), {nq / t2:.1f} QPS (2 threads)")
    exact_row = ["exact", "-", f"{exact_build:.1f}", f"{exact.nbytes / MB:.0f}"]
    exact_row += [f"{meter.delta / MB:.0f}", f"{nq / t1:.0f}", f"{nq / t2:.0f}", "1.0x", "1.0x"]
    rows.append([*exact_row, "1.000", f"{nq / te:.0f}", "1.000"])
    del exact
    gc.collect()

    for name in names:
        kind, build, sweeps = CONFIGS[name]
        log(f"{name}: building {kind} {build}")
        meter.start()
        t0 = time.perf_counter()
        index = AnnIndex(args.dim, kind, threads=2, **build)
        index.upsert(ids, x)
        index.rebuild()
        build_s = time.perf_counter() - t0
        meter.stop()
        faiss_mb = (index.nbytes - len(index) * args.dim * 4) / MB
        log(f"{name}: built in {build_s:.1f}s, RSS +{meter.delta / MB:.0f} MB")
        index.search(q[:10], k)  # warm-up
        for sp in sweeps:
            index.set_search_params(**sp)
            a1, _, _ = timed_search(index, q, k, 1, None, args.reps)
            a2, res, _ = timed_search(index, q, k, 2, None, args.reps)
            ae, res_ex, _ = timed_search(index, q, k, 2, excl, args.reps)
            label = f"{name} " + " ".join(f"{a}={b}" for a, b in sp.items())
            r, r_ex = recall(res, truth), recall(res_ex, truth_ex)
            log(f"{label}: recall {r:.3f}, {nq / a1:.0f} / {nq / a2:.0f} QPS, excl {r_ex:.3f}")
            rows.append(
                [label, _params(index), f"{build_s:.1f}", f"{faiss_mb:.0f}",
                 f"{meter.delta / MB:.0f}", f"{nq / a1:.0f}", f"{nq / a2:.0f}",
                 f"{t1 / a1:.1f}x", f"{t2 / a2:.1f}x", f"{r:.3f}", f"{nq / ae:.0f}", f"{r_ex:.3f}"]
            )  # fmt: skip
        del index
        gc.collect()
        log(f"RSS now {current_rss() / MB:.0f} MB")

    headers = [
        "config", "faiss params", "build s", "index MB", "build RSS +MB", "QPS 1T", "QPS 2T",
        "vs exact 1T", "vs exact 2T", f"recall@{k}", "QPS 2T excl", f"recall@{k} excl",
    ]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    if args.append_results:
        notes = _notes(args, nq, k, stats) + args.note
        machine = machine_info() | {"faiss": faiss.__version__}
        path = append_results(
            f"Vector index: exact vs faiss ANN, {args.n:,} x {args.dim}{args.title} "
            "(bench_index.py)",
            table, notes, machine,
        )  # fmt: skip
        log(f"appended to {path}")
    return 0


def _params(index: AnnIndex) -> str:
    p = index.params
    if index.kind == "hnsw":
        return f"HNSWFlat M={p['m']} efC={p['ef_construction']} efS={p['ef_search']}"
    return f"IVFFlat nlist={index._faiss.nlist} nprobe={p['nprobe']}"  # nlist as built


def _notes(args: argparse.Namespace, nq: int, k: int, stats: str) -> list[str]:
    return [
        f"Data: {args.n:,} vectors x {args.dim} dims: shared mean direction (weight "
        f"{MEAN_WEIGHT}) + one of {args.centroids} unit centres (gamma-skewed sizes) drawn "
        f"around {args.centroids // CLUSTERS_PER_TOPIC} topics (spread {args.spread}) + "
        f"a draw from that cluster's rank-{SUB_RANK} subspace (scale {args.sub_scale}) + "
        f"isotropic noise ({args.noise}), L2-normalised, seed {args.seed}; {nq} queries drawn "
        "the same way. " + stats,
        f"QPS: {nq} queries in one `index.search(queries, {k})` call (IDs out, Python included), "
        f"best of {args.reps} for ANN, one run for exact; 1T/2T = faiss OpenMP and BLAS threads "
        "1 or 2. `vs exact` = ANN QPS / exact QPS at the same thread count, this run.",
        f"recall@{k}: mean share of exact top-{k} IDs found. `excl`: per query 5 of its exact "
        "top-10 plus 45 random IDs excluded (2 threads), recall against exact with the same "
        "exclusions.",
        "index MB: arrays held (`nbytes`): exact = the float32 store; ANN = faiss's structures "
        "only (AnnIndex also keeps the float32 store, like exact). build RSS +MB: RSS high-water "
        "mark above the start of upsert + build (store, faiss and temporaries).",
        "The machine was shared with other jobs during the run; QPS is indicative.",
    ]


if __name__ == "__main__":
    sys.exit(main())
