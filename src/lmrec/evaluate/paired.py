"""Paired comparison of models on the same evaluated users: ratio of means, bootstrap interval.

One test split is one draw of held-out interactions; two models' means on it move together, so
their ratio is judged on the same users (a paired bootstrap over users, as in IR evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedRatio:
    """``mean(model) / mean(baseline)`` over the users both were evaluated on."""

    model: str
    baseline: str
    metric: str
    ratio: float
    low: float  # 2.5th percentile of the bootstrap ratios
    high: float  # 97.5th percentile
    n_users: int
    p_below: float  # share of bootstrap draws with ratio < 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "baseline": self.baseline,
            "metric": self.metric,
            "ratio": self.ratio,
            "ci95": [self.low, self.high],
            "n_users": self.n_users,
            "share_of_draws_below_1": self.p_below,
        }


def paired_ratio(
    model: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    names: tuple[str, str] = ("model", "baseline"),
    metric: str = "ndcg@10",
    draws: int = 2000,
    seed: int = 0,
) -> PairedRatio:
    """Ratio of means over the common users, with a paired bootstrap 95% interval.

    Args:
        model: Per-user metric values (user -> value) of the model.
        baseline: The same for the baseline.
        names: Labels of the two, for the result.
        metric: Metric name, for the result.
        draws: Bootstrap resamples of the users.
        seed: Seed of the resampling.

    Raises:
        ValueError: The two share no user, or the baseline's mean is zero.
    """
    common = sorted(set(model) & set(baseline))
    if not common:
        raise ValueError(f"{names[0]} and {names[1]} were evaluated on no common user")
    a = np.array([model[u] for u in common], dtype=np.float64)
    b = np.array([baseline[u] for u in common], dtype=np.float64)
    if b.sum() <= 0:
        raise ValueError(f"{names[1]}'s mean {metric} is 0: no ratio")
    rng = np.random.default_rng(seed)
    n = len(common)
    ratios = np.empty(draws)
    # resample in blocks of at most ~4M counts (32 MB), whatever the number of users; the
    # draws are the same for any block size
    block = max(1, min(draws, 4_000_000 // n))
    for start in range(0, draws, block):
        m = min(block, draws - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)
        ratios[start : start + m] = (counts @ a) / np.maximum(counts @ b, 1e-300)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return PairedRatio(
        model=names[0],
        baseline=names[1],
        metric=metric,
        ratio=float(a.sum() / b.sum()),
        low=float(low),
        high=float(high),
        n_users=n,
        p_below=float(np.mean(ratios < 1.0)),
    )


def paired_table(results: Sequence[PairedRatio]) -> str:
    """Markdown table of paired ratios."""
    lines = [
        "| model | baseline | metric | ratio | 95% interval (paired bootstrap) | draws < 1 "
        "| users |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.baseline} | {r.metric} | {r.ratio:.3f}x | "
            f"{r.low:.3f}-{r.high:.3f} | {r.p_below:.1%} | {r.n_users} |"
        )
    return "\n".join(lines)
