"""Recommendation quality of ONNX int8 against torch fp32 all-MiniLM-L6-v2 (NDCG@10, Recall@10).

On MovieLens-100K, each text model of ``--models`` (registered names whose config has an
``encoder`` key; default the zero-shot ``text`` model) is fitted once per encoder of
``--encoders`` (the first is the reference; default ``minilm`` = torch fp32, then
``minilm-onnx`` = ONNX dynamic int8) and evaluated on

1. the cold-item split (``make_split(ds, "cold-item")``: 15% of items held out whole for test,
   10% for valid), ranking among all items and among the held-out test items only;
2. the ratio split (80/10/10 per user), ranking among all items.

The model's config (its ``search_space``, for ``text`` the ``interest`` settings) is chosen per
split on that split's validation part only, with the reference encoder, by NDCG@10 ranking
all items; the same config is then used for every encoder. Reported: NDCG@10 and Recall@10
per encoder with the ratio to the reference, a paired bootstrap 95% interval for the NDCG@10
ratio (users resampled), and the encoders' items/s on ``--threads`` threads (ML-100K item
texts as the model renders them, no embedding cache, median of ``--repeats`` interleaved
runs), all in one process. The project's rule: int8 may become the default encoder only if
it loses at most 1% NDCG@10; the script prints that verdict and changes nothing.

    python benchmarks/bench_encoder_quality.py [--models text] [--encoders minilm,minilm-onnx]
        [--threads 2] [--repeats 3] [--bootstrap 2000] [--append-results]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table

#: The project's rule for making int8 the default encoder: NDCG@10 lost at most this share.
MAX_NDCG_LOSS = 0.01
KS = [10]


@dataclass
class Scenario:
    """One evaluation: a split, a stage's candidate set and its label."""

    split: str
    ranking: str  # "all items" or "test items"


@dataclass
class Outcome:
    """Metrics of one fitted model in one scenario, with per-user NDCG@10 for the bootstrap."""

    ndcg: float
    recall: float
    n_users: int
    per_user_ndcg: np.ndarray


def per_user_ndcg(model: Any, split: Any, stage: str, candidates: np.ndarray | None) -> np.ndarray:
    """NDCG@10 per evaluated user, computed as `lmrec.evaluate.protocol.evaluate` does.

    Mirrors its steps (target matrix, validation items excluded on test, relevance restricted
    to the candidates, users with a relevant item, batched ``topk_idx``); the caller checks
    that the mean equals the value `evaluate` reports.
    """
    from lmrec.evaluate.metrics import hits_matrix, per_user_metrics, relevant_counts
    from lmrec.models.topk import keep_columns, user_batch_size

    users_map, items_map, _ = model._check()
    relevant = getattr(split, stage).matrix(users_map, items_map)
    exclude = split.valid.matrix(users_map, items_map) if stage == "test" else None
    relevant = keep_columns(relevant, candidates)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    out = []
    step = user_batch_size(len(items_map))
    for start in range(0, len(users), step):
        batch = users[start : start + step]
        ex = exclude[batch] if exclude is not None else None
        idx, _ = model.topk_idx(batch, max(KS), exclude=ex, candidates=candidates)
        rel = relevant[batch]
        vals = per_user_metrics(hits_matrix(idx, rel), relevant_counts(rel), KS)
        out.append(vals["ndcg@10"])
    return np.concatenate(out) if out else np.zeros(0)


def run_scenario(model: Any, split: Any, candidates: np.ndarray | None) -> Outcome:
    """Test-stage NDCG@10 and Recall@10 via `evaluate`, plus per-user NDCG@10."""
    from lmrec.evaluate.protocol import EvalConfig, evaluate

    res = evaluate(model, split, "test", EvalConfig(ks=KS), candidates=candidates)
    users = per_user_ndcg(model, split, "test", candidates)
    if len(users) != res.n_users or abs(float(users.mean()) - res.metrics["ndcg@10"]) > 1e-9:
        raise RuntimeError("per-user NDCG@10 does not reproduce evaluate(); fix the mirror")
    return Outcome(res.metrics["ndcg@10"], res.metrics["recall@10"], res.n_users, users)


def bootstrap_ratio(
    new: np.ndarray, ref: np.ndarray, draws: int, seed: int = 0
) -> tuple[float, float]:
    """Paired bootstrap 95% interval of ``mean(new) / mean(ref)`` over resampled users."""
    if draws <= 0 or len(ref) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ref), size=(draws, len(ref)))
    ratios = new[idx].mean(axis=1) / np.maximum(ref[idx].mean(axis=1), 1e-12)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def time_encoders(
    specs: list[str], texts: list[str], repeats: int
) -> dict[str, tuple[str, float, np.ndarray]]:
    """``spec -> (encoder name, median s, vectors)`` encoding ``texts``, runs interleaved.

    The encoders are the process-wide ones the models use, without the embedding cache, so
    every run really encodes. Interleaving the repeats spreads load changes on a shared
    machine over all encoders alike.
    """
    from lmrec.encoders import load_encoder

    encoders = {}
    for spec in specs:
        encoders[spec] = load_encoder(spec, use_cache=False)
        encoders[spec].encode_items(texts[:64])  # warm-up: lazy init, first-call allocations
    times: dict[str, list[float]] = {s: [] for s in specs}
    vectors: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for spec in specs:
            t0 = time.perf_counter()
            vectors[spec] = encoders[spec].encode_items(texts, batch_size=64)
            times[spec].append(time.perf_counter() - t0)
            log(f"timing {spec} run {r + 1}/{repeats}: {len(texts) / times[spec][-1]:.0f} items/s")
    return {s: (encoders[s].name, statistics.median(times[s]), vectors[s]) for s in specs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="text", help="comma-separated text models (default: text)")
    p.add_argument(
        "--encoders",
        default="minilm,minilm-onnx",
        help="comma-separated encoder specs, reference first (default: minilm,minilm-onnx)",
    )
    p.add_argument("--threads", type=int, default=2, help="encoder threads (default: 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed encoding runs (default: 3)")
    p.add_argument("--max-trials", type=int, default=24, help="configs tried per model/split")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws (0: skip)")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    # Before any encoder loads: the registry's encoders take their threads from here.
    os.environ["LMREC_THREADS"] = str(args.threads)
    machine = machine_info()  # now, so that its load averages are those at the start

    from lmrec.data.fetch import load_builtin
    from lmrec.data.item_text import ItemTextConfig, item_texts
    from lmrec.data.splits import make_split
    from lmrec.encoders import load_encoder
    from lmrec.evaluate.protocol import EvalConfig, select_config
    from lmrec.models import create_model, get_model_class

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    specs = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if len(specs) < 2:
        p.error("--encoders needs a reference and at least one other encoder")
    for name in models:
        if "encoder" not in get_model_class(name).Config.model_fields:
            p.error(f"model '{name}' has no 'encoder' config key")
    ref = specs[0]

    ds = load_builtin("ml-100k")
    splits = {"cold-item": make_split(ds, "cold-item"), "ratio": make_split(ds, "ratio")}
    for sname, split in splits.items():
        log(f"{sname} split: {split.counts()}")
    test_items = splits["cold-item"].test.interactions["item_id"].unique()
    scenarios = [
        (Scenario("cold-item", "all items"), None),
        (Scenario("cold-item", "test items"), test_items),
        (Scenario("ratio", "all items"), None),
    ]
    select_cfg = EvalConfig(ks=KS, select_metric="ndcg@10", max_trials=args.max_trials)

    chosen: dict[tuple[str, str], tuple[dict[str, Any], float, int]] = {}
    outcomes: dict[tuple[str, str, str, str], Outcome] = {}
    for model_name in models:
        for sname, split in splits.items():
            t0 = time.perf_counter()
            params, trials = select_config(model_name, split, select_cfg, base={"encoder": ref})
            best = max(t["ndcg@10"] for t in trials)
            chosen[(model_name, sname)] = (params, best, len(trials))
            log(
                f"{model_name} / {sname}: chose {params} (valid ndcg@10 {best:.4f}, "
                f"{len(trials)} trials, {time.perf_counter() - t0:.0f}s)"
            )
            for spec in specs:
                model = create_model(model_name, **{**params, "encoder": spec}).fit(split.train)
                for sc, cand_ids in scenarios:
                    if sc.split != sname:
                        continue
                    # the candidates as dense indices of this model's item map
                    assert model.items is not None
                    cand = model.items.index(cand_ids, "item") if cand_ids is not None else None
                    out = run_scenario(model, split, cand)
                    outcomes[(model_name, sname, sc.ranking, spec)] = out
                    log(
                        f"{model_name} / {sname} / {sc.ranking} / {spec}: "
                        f"ndcg@10 {out.ndcg:.4f} recall@10 {out.recall:.4f} ({out.n_users} users)"
                    )

    texts = item_texts(ds, ItemTextConfig(), truncate=load_encoder(ref).truncate)
    speed = time_encoders(specs, texts, args.repeats)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.4f}x" if b > 0 else "-"

    rows, verdict_rows = [], []
    for model_name in models:
        for sc, _ in scenarios:
            base = outcomes[(model_name, sc.split, sc.ranking, ref)]
            for spec in specs:
                o = outcomes[(model_name, sc.split, sc.ranking, spec)]
                lo, hi = (
                    bootstrap_ratio(o.per_user_ndcg, base.per_user_ndcg, args.bootstrap)
                    if spec != ref
                    else (float("nan"), float("nan"))
                )
                rows.append(
                    [
                        model_name,
                        sc.split,
                        sc.ranking,
                        o.n_users,
                        f"`{spec}`",
                        f"{o.ndcg:.4f}",
                        ratio(o.ndcg, base.ndcg),
                        f"{lo:.4f}-{hi:.4f}" if spec != ref and np.isfinite(lo) else "-",
                        f"{o.recall:.4f}",
                        ratio(o.recall, base.recall),
                    ]
                )
                if spec != ref:
                    verdict_rows.append((model_name, sc, spec, o.ndcg / base.ndcg - 1.0, lo, hi))
    quality = markdown_table(
        [
            "model", "split", "ranked among", "users", "encoder", "NDCG@10", "vs ref",
            "NDCG ratio 95% CI", "Recall@10", "vs ref",
        ],
        rows,
    )  # fmt: skip
    _, ref_s, ref_vecs = speed[ref]
    speed_rows = []
    for spec, (name, secs, vecs) in speed.items():
        cos = (vecs * ref_vecs).sum(axis=1) if vecs.shape == ref_vecs.shape else None
        speed_rows.append(
            [
                f"`{spec}`",
                f"`{name}`",
                f"{len(texts) / secs:.0f}",
                f"{secs:.2f}",
                f"{ref_s / secs:.2f}x",
                f"{cos.mean():.4f}" if cos is not None else "-",
                f"{cos.min():.4f}" if cos is not None else "-",
            ]
        )
    speed_table = markdown_table(
        ["encoder", "name", "items/s", "s (median)", "speed vs ref", "mean cos vs ref",
         "min cos vs ref"],
        speed_rows,
    )  # fmt: skip
    config_rows = [
        [m, s, f"`{params}`", f"{best:.4f}", n] for (m, s), (params, best, n) in chosen.items()
    ]
    config_table = markdown_table(
        ["model", "split", "config (chosen on valid, reference encoder)", "valid NDCG@10",
         "configs tried"],
        config_rows,
    )  # fmt: skip

    verdicts = []
    for spec in specs[1:]:
        mine = [v for v in verdict_rows if v[2] == spec]
        worst = min(mine, key=lambda v: v[3])
        ok = all(v[3] >= -MAX_NDCG_LOSS for v in mine)
        spans_one = all(v[4] <= 1.0 <= v[5] for v in mine)
        narrowest = min(v[5] - v[4] for v in mine)
        verdicts.append(
            f"Verdict for `{spec}` vs `{ref}`: worst NDCG@10 change {worst[3]:+.2%} "
            f"({worst[0]}, {worst[1].split}, {worst[1].ranking}); "
            + (
                f"it loses at most {MAX_NDCG_LOSS:.0%} everywhere, so it meets the rule for "
                "becoming the default encoder."
                if ok
                else f"it loses more than {MAX_NDCG_LOSS:.0%} somewhere, so it does not meet "
                "the rule for becoming the default encoder."
            )
            + (
                f" Every 95% interval of the NDCG@10 ratio contains 1 (narrowest "
                f"{narrowest:.3f} wide): no difference is detectable at this data size"
                + (
                    f", and a {MAX_NDCG_LOSS:.0%} threshold is below what it can resolve."
                    if narrowest / 2 > MAX_NDCG_LOSS
                    else "."
                )
                if args.bootstrap > 0 and spans_one
                else ""
            )
        )
    table = "\n\n".join([quality, speed_table, config_table])
    print(table)
    for v in verdicts:
        print(v)

    if args.append_results:
        import onnxruntime
        import sentence_transformers
        import torch

        machine["torch"] = torch.__version__
        machine["sentence-transformers"] = sentence_transformers.__version__
        machine["onnxruntime"] = onnxruntime.__version__
        machine["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "unset")
        c = splits["cold-item"].counts()
        r = splits["ratio"].counts()
        notes = [
            *verdicts,
            f"Reference encoder ('vs ref', 'cos vs ref'): `{ref}` ({speed[ref][0]}), "
            f"measured in this run.",
            f"Data: ML-100K ({ds.n_interactions:,} ratings, {len(ds.item_ids):,} items), "
            f"all ratings as positives. cold-item split (seed 2020; 15% of rated items held "
            f"out for test, 10% for valid): train/valid/test {c['train']:,}/{c['valid']:,}/"
            f"{c['test']:,} interactions, {len(test_items)} test items; ratio split (80/10/10 "
            f"per user, seed 2020): {r['train']:,}/{r['valid']:,}/{r['test']:,}.",
            "Quality: `evaluate(model, split, 'test', EvalConfig(ks=[10]))`, full ranking with "
            "training and validation items excluded; 'test items' passes "
            "`candidates=` the dense indices of the cold split's test items. Each model is "
            "fitted on the split's train part once per encoder with the same config. "
            "'vs ref' = metric / reference encoder's metric, this run.",
            "Config: `select_config` over the model's search_space on the split's valid part "
            "(NDCG@10, all items) with the reference encoder only.",
            f"NDCG ratio 95% CI: paired bootstrap over the evaluated users ({args.bootstrap} "
            "draws, seed 0) of mean(new) / mean(reference).",
            f"Speed: the {len(texts)} ML-100K item texts the text model embeds (default item "
            f"text: title, year, genres), batch 64, {args.threads} threads per encoder, no "
            f"embedding cache, median of {args.repeats} runs interleaved across encoders "
            "after a warm-up batch, model load excluded; cos = cosine between each item's "
            "vector from the encoder and from the reference.",
            "Absolute speeds depend on what else runs on the CPU (see the load averages); "
            "the ratios are the comparable numbers.",
        ]
        path = append_results(
            "Text encoders: recommendation quality, torch fp32 vs ONNX int8 "
            "(bench_encoder_quality.py)",
            table,
            notes,
            machine,
        )
        log(f"appended to {path}")
    log(f"python {platform.python_version()} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
