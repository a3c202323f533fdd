"""Report an `lmrec evaluate` run (results.json) as a RESULTS.md section, with ratios.

Each model's test metrics are printed beside their ratio to a baseline model of the same run,
with the config chosen on validation. ``lmrec evaluate`` is the command that measures; this
script only formats what it wrote, so the section names that command (``--produced-by``).

    python benchmarks/eval_report.py runs/cold/results.json --baseline meta-knn \
        --produced-by "lmrec evaluate --data ml-100k --protocol cold-item ..." --append-results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import append_results, machine_info, markdown_table

METRICS = ("recall@10", "ndcg@10", "hit@10", "mrr@10")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.3f}x" if base > 0 else ("-" if value == 0 else "inf")


def _short(config: dict) -> str:
    """A config as JSON; nested sections of long ones are left to results.json."""
    text = json.dumps(config, sort_keys=True)
    if len(text) <= 300:
        return text
    flat = {k: v for k, v in config.items() if not isinstance(v, dict | list)}
    return json.dumps(flat, sort_keys=True) + " (nested sections in results.json)"


def report(data: dict, baseline: str) -> tuple[str, list[str]]:
    """The Markdown table and notes for one results.json."""
    models = data["models"]
    if baseline not in models:
        raise SystemExit(f"baseline '{baseline}' is not in the run ({', '.join(models)})")
    base = models[baseline]["test"]
    rating = [m for m in ("rmse", "mae") if any(m in r["test"] for r in models.values())]
    headers = ["model", *METRICS, *(f"{m} vs {baseline}" for m in METRICS[:2]), "valid ndcg@10"]
    headers += rating
    rows = []
    for name, run in models.items():
        t = run["test"]
        rows.append(
            [
                name,
                *(f"{t[m]:.4f}" for m in METRICS),
                *(_ratio(t[m], base[m]) for m in METRICS[:2]),
                f"{run['valid'].get('ndcg@10', float('nan')):.4f}",
                *(f"{t[m]:.4f}" if m in t else "" for m in rating),
            ]
        )
    notes = [
        f"Data: {data.get('data')}, protocol {data.get('protocol')} (seed {data.get('seed')}), "
        f"ranked among: {data.get('candidates', 'all')} items; full ranking, training (and on "
        f"test, validation) items excluded; {models[baseline]['n_test_users']} test users.",
        "Configs chosen on validation NDCG@10 only (early stopping on validation too): "
        + "; ".join(f"{n} `{_short(r['config'])}`" for n, r in models.items()),
        f"`vs {baseline}` = test metric / {baseline}'s test metric, same run.",
    ]
    for name, p in data.get("paired", {}).items():
        if p.get("baseline") == baseline:
            low, high = p["ci95"]
            notes.append(
                f"{name} / {baseline} {p['metric']} on the same {p['n_users']} test users: "
                f"{p['ratio']:.3f}x, paired bootstrap 95% interval {low:.3f}-{high:.3f} "
                f"({p['share_of_draws_below_1']:.1%} of resamples below 1)."
            )
    return markdown_table(headers, rows), notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="results.json written by lmrec evaluate")
    p.add_argument("--baseline", required=True, help="model whose metrics the ratios divide by")
    p.add_argument("--title", default="", help="section title")
    p.add_argument("--produced-by", default="", help="the lmrec evaluate command that ran")
    p.add_argument("--note", action="append", default=[], help="extra note")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    data = json.loads(args.results.read_text())
    table, notes = report(data, args.baseline)
    if args.produced_by:
        notes.insert(0, f"Measured by: `{args.produced_by}`")
    notes += args.note
    print(table)
    print("\n".join(f"- {n}" for n in notes))
    if args.append_results:
        title = args.title or f"{data.get('data')} {data.get('protocol')}: lmrec evaluate"
        append_results(title, table, notes, machine=machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
