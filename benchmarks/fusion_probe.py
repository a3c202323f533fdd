"""Probe new ranker signals on validation: one pipeline fit, then one ranker fit per probe.

Fits `fusion` from a TOML pipeline (default ``configs/fusion-ml100k.toml``) on the ratio split
(seed 2020) once and keeps its ranker rows. Each probe adds columns for the same
(user, item) rows, computed as the pipeline computes its own features: for the part-B rows of
fold k from that fold's part A (the data the sources saw), for the validation rows from all of
train. The config's LightGBM ranker is trained once per probe, with the probe's columns added
to every feature, and scored on the validation part only (choose here, test with
``lmrec evaluate``).

``--seeds`` fits the ranker once per LightGBM seed and averages each user's NDCG over them: the
ranker's seed alone moves validation NDCG@10 by about 0.002, as much as most probes.

``--oof`` also trains the ranker on three folds and scores the fourth (out of fold, part-B
labels), next to EASE's ranking of the same candidates: how far the ranker/EASE ratio moves
from one 12.5% holdout of the same users to another.

    python benchmarks/fusion_probe.py [--probes edlae,time-gaps,...] [--seeds 1,2,3,4] [--oof]
        [--append-results]
"""

from __future__ import annotations

import argparse
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from common import append_results, log, machine_info, markdown_table
from ranker_grid import paired_difference, pipeline_rows, seed_averaged

from lmrec.data.fetch import load_builtin
from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset, IdMap
from lmrec.data.splits import make_split
from lmrec.models.ease import ease_weights
from lmrec.rank.fusion_config import FusionConfig
from lmrec.rank.holdout import holdout_parts
from lmrec.rank.lgbm import (
    LGBMConfig,
    LGBMRanker,
    groups_with_positives,
    ndcg_at,
)

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0
EASE_REG = 500.0  # the EASE source's reg_weight in configs/fusion-ml100k.toml

# A probe: (user rows, item rows, the part's context) -> columns for those pairs.
Probe = Callable[[np.ndarray, np.ndarray, "Context"], np.ndarray]


class Context:
    """Index maps and matrices of one part (a fold's part A, or all of train)."""

    def __init__(self, part: Dataset, users: IdMap, items: IdMap) -> None:
        inter = part.interactions
        self.u = users.index(inter[USER], "user")
        self.i = items.index(inter[ITEM], "item")
        self.t = inter[TIMESTAMP].to_numpy(np.float64)
        self.r = inter[RATING].to_numpy(np.float64)
        self.shape = (len(users), len(items))
        self.x = part.matrix(users, items)


def _row_z(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """Each row's z-score over its unseen items; seen items get -inf."""
    s = scores.astype(np.float64).copy()
    s[seen.nonzero()] = -np.inf
    fin = np.isfinite(s)
    n = np.maximum(fin.sum(1), 1)
    safe = np.where(fin, s, 0.0)
    mean = safe.sum(1) / n
    std = np.sqrt(np.where(fin, (safe - mean[:, None]) ** 2, 0.0).sum(1) / n)
    std[std < 1e-12] = 1.0
    return np.where(fin, (safe - mean[:, None]) / std[:, None], -np.inf)


def _z_logrank(scores: np.ndarray, seen: sp.csr_matrix, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Per-user z-score and log rank over unseen items, as the pipeline's source features."""
    z = _row_z(scores, seen)
    rank = np.argsort(np.argsort(-z, axis=1), axis=1) + 1.0
    return np.column_stack([z[u, i], np.log1p(rank[u, i])])


def edlae(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """EDLAE (Steck 2020): EASE with dropout emphasis p=0.15 on the diagonal."""
    gram_diag = np.asarray(c.x.sum(axis=0)).ravel()
    return _z_logrank(
        np.asarray(c.x @ ease_weights(c.x, EASE_REG, 0.15 / 0.85 * gram_diag)), c.x, u, i
    )


def ease_prf(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """EASE with pseudo-relevance feedback: each user's top 10 added to the history at 0.3."""
    b = ease_weights(c.x, EASE_REG)
    s = np.asarray(c.x @ b)
    masked = np.where(c.x.toarray() > 0, -np.inf, s)
    top = np.argpartition(-masked, 10, axis=1)[:, :10]
    fb = np.zeros_like(s)
    np.put_along_axis(fb, top, 1.0, axis=1)
    return _z_logrank(s + 0.3 * (fb @ b), c.x, u, i)


def ease_by_rating(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """EASE scores from the user's liked (>= 4) and other history items, separately."""
    b = ease_weights(c.x, EASE_REG)
    cols = []
    for keep in (c.r >= 4, c.r < 4):
        m = sp.csr_matrix((np.ones(keep.sum()), (c.u[keep], c.i[keep])), shape=c.shape)
        m.data[:] = 1.0
        s = np.asarray(m @ b)
        cols += [_z_logrank(s, c.x, u, i)[:, 0], s[u, i]]
    return np.column_stack(cols)


def ease_raw(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """The raw EASE score (the pipeline keeps only its per-user z-score and rank)."""
    return np.asarray(c.x @ ease_weights(c.x, EASE_REG))[u, i][:, None]


def time_gaps(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """Days from the user's last rating to the item's first, and the item's age on arrival."""
    n_users, n_items = c.shape
    i_first = pd.Series(c.t).groupby(c.i).min().reindex(range(n_items)).to_numpy()
    u_span = pd.Series(c.t).groupby(c.u).agg(["min", "max"]).reindex(range(n_users))
    return np.column_stack(
        [(i_first[i] - u_span["max"].to_numpy()[u]) / DAY,
         (u_span["min"].to_numpy()[u] - i_first[i]) / DAY]
    )  # fmt: skip


def position(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """Where items sit in their raters' timelines (sign-up pages vs later browsing)."""
    n_users, n_items = c.shape
    f = pd.DataFrame({"u": c.u, "i": c.i, "t": c.t})
    f["pct"] = f.groupby("u")["t"].rank(method="average", pct=True)
    first = f.groupby("u")["t"].transform("min")
    f["first_day"] = (f["t"] - first < DAY).astype(float)
    f["log_days"] = np.log1p((f["t"] - first) / DAY)
    cnt = np.bincount(f["i"], minlength=n_items) + 5.0  # shrink rare items to the mean
    cols = []
    for col in ("pct", "first_day", "log_days"):
        tot = np.bincount(f["i"], weights=f[col], minlength=n_items)
        cols.append(((tot + 5.0 * f[col].mean()) / cnt)[i])
    user_first = np.bincount(f["u"], weights=f["first_day"], minlength=n_users)
    cols.append((user_first / np.maximum(np.bincount(f["u"], minlength=n_users), 1))[u])
    return np.column_stack(cols)


def ials(u: np.ndarray, i: np.ndarray, c: Context) -> np.ndarray:
    """A wide implicit ALS (256 factors, strong regularisation), next to the 32-factor source."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=256, regularization=100.0, alpha=1.0, iterations=15, random_state=0,
        num_threads=2,
    )  # fmt: skip
    model.fit(sp.csr_matrix(c.x, dtype=np.float32), show_progress=False)
    return _z_logrank(model.user_factors @ model.item_factors.T, c.x, u, i)


def history_chunks(u: np.ndarray, i: np.ndarray, c: Context, size: int = 20) -> np.ndarray:
    """EASE from chronological chunks of ~``size`` history items: best chunk's z, latest's z.

    A sum over the whole history dilutes a user with several tastes; the best chunk does not.
    """
    b = ease_weights(c.x, EASE_REG)
    f = pd.DataFrame({"u": c.u, "i": c.i, "t": c.t}).sort_values(["u", "t", "i"])
    pos = f.groupby("u").cumcount().to_numpy()
    n = f.groupby("u")["i"].transform("size").to_numpy()
    n_chunks = np.maximum(np.round(n / size), 1).astype(int)
    chunk = np.minimum(pos * n_chunks // n, n_chunks - 1)
    # one row per (user, chunk), in user then time order
    stride = int(n_chunks.max())
    row_ids, key = np.unique(f["u"].to_numpy() * stride + chunk, return_inverse=True)
    row_user = row_ids // stride
    row_last = np.r_[row_user[1:] != row_user[:-1], True]
    m = sp.csr_matrix(
        (np.ones(len(key)), (key, f["i"].to_numpy())), shape=(len(row_user), c.shape[1])
    )
    z = np.maximum(_row_z(np.asarray(m @ b), c.x[row_user]), -10.0)  # seen: -inf -> -10
    best = np.full(c.shape, -10.0)
    np.maximum.at(best, row_user, z)
    latest = np.full(c.shape, -10.0)
    latest[row_user[row_last]] = z[row_last]
    return np.column_stack([best[u, i], latest[u, i]])


def ho_ease(
    u: np.ndarray, i: np.ndarray, c: Context, n_pairs: int = 2000, pair_reg: float = 5e4
) -> np.ndarray:
    """Higher-order EASE (Steck & Liang, RecSys 2021): EASE plus weights from item pairs.

    The ``n_pairs`` most co-rated pairs become inputs Z (user has both); their weights C fit
    EASE's residual by ridge regression, with a pair's weight on its own two items held at
    zero. ``n_pairs`` and ``pair_reg`` were chosen on validation, the pair model alone
    (``pair_reg`` 500 and 5000 scored below EASE; more pairs did not help).
    """
    x = sp.csr_matrix(c.x, dtype=np.float64)
    n_items = x.shape[1]
    b = ease_weights(x, EASE_REG)
    gram = (x.T @ x).toarray()
    upper = np.triu_indices(n_items, 1)
    top = np.argsort(-gram[upper], kind="stable")[:n_pairs]
    pa, pb = upper[0][top], upper[1][top]
    xc = x.tocsc()
    z = sp.csr_matrix(xc[:, pa].multiply(xc[:, pb]))
    h = (z.T @ z).toarray()
    h[np.diag_indices(len(pa))] += pair_reg
    q = scipy.linalg.cho_solve(scipy.linalg.cho_factor(h), np.eye(len(pa)))
    c_w = q @ (z.T @ (x.toarray() - x @ b))
    for item in range(n_items):  # equality constraints C[pair, own item] = 0, exactly
        own = np.flatnonzero((pa == item) | (pb == item))
        if len(own):
            c_w[:, item] -= q[:, own] @ np.linalg.solve(q[np.ix_(own, own)], c_w[own, item])
    pairs = np.asarray(z @ c_w)
    return np.column_stack([_z_logrank(np.asarray(x @ b) + pairs, c.x, u, i),
                            _row_z(pairs, c.x)[u, i]])  # fmt: skip


PROBES: dict[str, Probe] = {
    "edlae": edlae,
    "ease-prf": ease_prf,
    "ease-by-rating": ease_by_rating,
    "ease-raw": ease_raw,
    "time-gaps": time_gaps,
    "position": position,
    "ials": ials,
    "history-chunks": history_chunks,
    "ho-ease": ho_ease,
}
SPECIAL = ("item-target",)  # needs the part-B labels, so built from the rows


def item_target(
    train: dict[str, np.ndarray], valid: dict[str, np.ndarray], fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Item's positive rate among part-B candidates, out of fold, log-lift over the mean."""
    item, y = train["item"], train["y"]
    n_items = int(max(item.max(), valid["item"].max())) + 1
    prior = float(y.mean())

    def lift(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        pos = np.bincount(item[rows], weights=y[rows], minlength=n_items)
        cnt = np.bincount(item[rows], minlength=n_items)
        return np.log((pos + 20.0 * prior) / (cnt + 20.0) / prior)[items]

    tcol = np.zeros(len(item))
    for k in np.unique(fold):
        tcol[fold == k] = lift(fold != k, item[fold == k])
    return tcol[:, None], lift(np.ones(len(item), bool), valid["item"])[:, None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "fusion-ml100k.toml")
    p.add_argument("--probes", default=",".join([*PROBES, *SPECIAL]), help="Comma-separated.")
    p.add_argument("--seeds", default="", help="LightGBM seeds to average (default: the config's).")
    p.add_argument("--oof", action="store_true", help="Out-of-fold ranker vs EASE per fold.")
    p.add_argument("--append-results", action="store_true", help="append to RESULTS.md")
    args = p.parse_args(argv)
    names = [n for n in args.probes.split(",") if n]
    unknown = [n for n in names if n not in PROBES and n not in SPECIAL]
    if unknown:
        p.error(f"unknown probes {unknown}; choose from {[*PROBES, *SPECIAL]}")
    try:  # checked before the pipeline fit, which takes minutes
        seeds = [int(v) for v in args.seeds.split(",") if v]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    machine = machine_info()
    lgbm, rows, feature_names = pipeline_rows(args.config)
    train, valid = rows["train"], rows["valid"]
    cfg = LGBMConfig(**{**lgbm, "rounds": "fixed", "compile": "off"})
    seeds = seeds or [cfg.seed]
    pipe = FusionConfig(**tomllib.loads(args.config.read_text())["model"])
    split = make_split(load_builtin("ml-100k"), "ratio", seed=2020)
    users, items = split.train.user_map(), split.train.item_map()
    parts = [
        a
        for a, _ in holdout_parts(
            split.train, pipe.holdout, pipe.holdout_share, pipe.folds, pipe.seed
        )
    ]
    contexts = [Context(a, users, items) for a in parts]
    full = Context(split.train, users, items)
    fold = np.repeat(train["fold"], train["sizes"])
    has_pos, keep = groups_with_positives(train["sizes"], train["y"])

    def score(
        extra_train: np.ndarray | None, extra_valid: np.ndarray | None
    ) -> tuple[np.ndarray, list[float]]:
        """Per-user validation NDCG@10 at 1000 rounds and at the config's cap (2 x users),
        each averaged over the seeds; and each seed's mean at the cap."""
        tx, vx = train["x"], valid["x"]
        if extra_train is not None and extra_valid is not None:
            tx, vx = np.hstack([tx, extra_train]), np.hstack([vx, extra_valid])

        def fit(seed: int | None) -> Any:
            return (
                LGBMRanker(cfg, seed=seed)
                .fit(tx[keep], train["sizes"][has_pos], train["y"][keep])
                .booster
            )

        return seed_averaged(fit, vx, valid, (1000, cfg.n_estimators), seeds)

    table: list[list[str]] = []
    base, base_seeds = score(None, None)
    log(f"baseline: {base.mean(axis=1)}, per seed {base_seeds}")

    def per_seed(values: list[float]) -> list[str]:
        return [" / ".join(f"{v:.4f}" for v in values)] if len(seeds) > 1 else []

    table.append(["(none: the config's features)", "0", *(f"{s:.4f}" for s in base.mean(axis=1)),
                  *per_seed(base_seeds), "1.000x", ""])  # fmt: skip
    for name in names:
        t0 = time.perf_counter()
        if name == "item-target":
            tcols, vcols = item_target(train, valid, fold)
        else:
            fn = PROBES[name]
            tcols = np.zeros((len(fold), 0))
            for k, ctx in enumerate(contexts):
                sel = fold == k
                block = fn(train["user"][sel], train["item"][sel], ctx)
                if tcols.shape[1] == 0:
                    tcols = np.zeros((len(fold), block.shape[1]))
                tcols[sel] = block
            vcols = fn(valid["user"], valid["item"], full)
        per_user, each = score(tcols.astype(np.float32), vcols.astype(np.float32))
        means = per_user.mean(axis=1)
        log(f"{name}: {means} ({time.perf_counter() - t0:.0f} s)")
        table.append(
            [name, str(tcols.shape[1]), *(f"{m:.4f}" for m in means), *per_seed(each),
             f"{means[-1] / base[-1].mean():.3f}x", paired_difference(per_user[-1], base[-1])]
        )  # fmt: skip
    headers = ["probe", "columns", "valid NDCG@10, 1000 rounds",
               f"valid NDCG@10, {cfg.n_estimators} rounds",
               *(["same, each seed"] if len(seeds) > 1 else []), "vs baseline",
               "difference ± paired SE"]  # fmt: skip
    out = markdown_table(headers, table)
    notes = [
        f"Pipeline: {args.config.name}, {len(feature_names)} features; ranker: its "
        f"`[model.lgbm]` section with a fixed {cfg.n_estimators} rounds; scored on the "
        "validation part only. Each probe's columns are added to all of the config's features.",
        f"LightGBM seeds: {', '.join(map(str, seeds))}"
        + (
            "; each user's NDCG@10 is averaged over the seeds before the means and the paired "
            "SE (over users, at the round cap)."
            if len(seeds) > 1
            else "."
        ),
    ]
    if args.oof:
        oof = out_of_fold(train, cfg, feature_names.index("ease:z"))
        out += "\n\n" + oof[0]
        notes.append(oof[1])
    print(out)
    if args.append_results:
        append_results("Fusion ranker: new signals probed on validation (issue 4)", out, notes,
                       machine)  # fmt: skip
    return 0


def out_of_fold(train: dict[str, np.ndarray], cfg: LGBMConfig, ease_col: int) -> tuple[str, str]:
    """Ranker trained on three folds, scored on the fourth, against EASE on the same rows."""
    has_pos, keep = groups_with_positives(train["sizes"], train["y"])
    x, y = train["x"][keep], train["y"][keep]
    sizes, n_rel, fold = train["sizes"][has_pos], train["n_rel"][has_pos], train["fold"][has_pos]
    row_fold = np.repeat(fold, sizes)
    rows = []
    for k in np.unique(fold):
        fit, held = row_fold != k, row_fold == k
        ranker = LGBMRanker(cfg).fit(x[fit], sizes[fold != k], y[fit])
        args = (sizes[fold == k], y[held], n_rel[fold == k], 10)
        ours = ndcg_at(ranker.booster.predict(x[held]), *args)
        ease = ndcg_at(x[held][:, ease_col], *args)
        log(f"fold {k}: ranker {ours:.4f}, ease {ease:.4f}")
        rows.append([str(k), f"{ours:.4f}", f"{ease:.4f}", f"{ours / ease:.3f}x"])
    ratios = [float(r[-1][:-1]) for r in rows]
    rows.append(["mean", *(f"{np.mean([float(r[c]) for r in rows]):.4f}" for c in (1, 2)),
                 f"{np.mean(ratios):.3f}x"])  # fmt: skip
    table = markdown_table(["held-out fold", "ranker NDCG@10", "EASE NDCG@10", "ratio"], rows)
    note = (
        "Out of fold: the ranker trained on the other three folds' part-B rows and ranks the "
        "held-out fold's candidates; EASE ranks the same candidates by its own score (the "
        "source fitted on that fold's part A). Labels: that fold's 12.5% holdout of train. "
        f"The ratio's standard deviation over the folds: {np.std(ratios, ddof=1):.3f}."
    )
    return table, note


if __name__ == "__main__":
    raise SystemExit(main())
