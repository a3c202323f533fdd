"""Evaluation reports: a Markdown table, a JSON file and a PNG chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmrec import __version__
from lmrec.evaluate.protocol import ModelRun

#: Columns of the printed table (metric keys), in order.
TABLE_METRICS = (
    "recall@10",
    "precision@10",
    "ndcg@10",
    "mrr@10",
    "hit@10",
    "map@10",
    "coverage@10",
    "gini@10",
    "novelty@10",
    "diversity@10",
    "avg_pop@10",
    "rmse",
    "mae",
)


def markdown_table(runs: Sequence[ModelRun], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """Test metrics of each run as a Markdown table (best accuracy value in bold)."""
    shown = [m for m in metrics if any(m in r.test.metrics for r in runs)]
    header = "| model | " + " | ".join(shown) + " | fit s |"
    sep = "|---|" + "---:|" * (len(shown) + 1)
    best = {
        m: max((r.test.metrics.get(m, float("-inf")) for r in runs), default=0.0) for m in shown
    }
    lines = [header, sep]
    for r in runs:
        cells = []
        for m in shown:
            v = r.test.metrics.get(m)
            text = "" if v is None else f"{v:.4f}"
            accuracy = m.split("@")[0] in {"recall", "precision", "ndcg", "mrr", "hit", "map"}
            if accuracy and v is not None and v == best[m] and len(runs) > 1:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {r.model} | " + " | ".join(cells) + f" | {r.fit_seconds:.1f} |")
    return "\n".join(lines)


def slice_table(runs: Sequence[ModelRun], metrics: Sequence[str] = ("recall@10", "ndcg@10")) -> str:
    """Test metrics per slice (cold users, long-tail items) as a Markdown table."""
    names = sorted({s for r in runs for s in r.test.slices})
    cols = [(s, m) for s in names for m in metrics]
    lines = [
        "| model | " + " | ".join(f"{s} {m}" for s, m in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for r in runs:
        cells = []
        for s, m in cols:
            v = r.test.slices.get(s, {}).get(m)
            cells.append("" if v is None else f"{v:.4f}")
        lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_dict(runs: Sequence[ModelRun], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready report (``models`` keyed by name, as the peer script expects)."""
    return {
        "lmrec_version": __version__,
        **(meta or {}),
        "models": {
            r.model: {
                "config": r.config,
                "valid": r.valid,
                "test": r.test.metrics,
                "slices": r.test.slices,
                "n_test_users": r.test.n_users,
                "fit_seconds": r.fit_seconds,
                "trials": r.trials,
            }
            for r in runs
        },
    }


def save_json(
    runs: Sequence[ModelRun], path: str | Path, meta: dict[str, Any] | None = None
) -> Path:
    """Write the report as JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_dict(runs, meta), indent=2, default=str))
    return p


def plot_png(
    runs: Sequence[ModelRun],
    path: str | Path,
    metrics: Sequence[str] = ("recall@10", "ndcg@10", "mrr@10", "hit@10"),
    title: str = "",
) -> Path:
    """Grouped bar chart of test metrics per model."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1.6 * len(runs) + 3, 4))
    width = 0.8 / len(metrics)
    x = np.arange(len(runs))
    for j, m in enumerate(metrics):
        vals = [r.test.metrics.get(m, 0.0) for r in runs]
        bars = ax.bar(x + j * width, vals, width, label=m)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x + width * (len(metrics) - 1) / 2, [r.model for r in runs])
    ax.set_ylabel("test value")
    ax.set_title(title or "lmrec evaluation")
    ax.legend(fontsize=8)
    ax.margins(y=0.2)
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
