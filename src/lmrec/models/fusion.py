"""Multi-signal fusion: candidates from many recommenders, re-ranked by a learned ranker.

The pipeline has named steps, each set by its own config section:

1. ``candidates``: every source model (CF, text, sequence, KG, popularity, ...) proposes its
   ``budget`` best items; the union is the candidate set (`lmrec.rank.sources`).
2. ``features``: per (user, candidate): each source's score and rank, profile affinities,
   KG entities, popularity, recency, activity, demographics, vector cosines
   (`lmrec.rank.features`).
3. ``rank``: a LightGBM LambdaRank model or a multi-task MLP (relevance + rating heads);
   ``auto`` keeps the one with the better validation NDCG@10.

Training is two-stage without leakage: the sources are fitted on part A of the training data
and the ranker learns which of their candidates the user took in part B
(`lmrec.rank.holdout`); then the sources are refitted on all of it for serving.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from lmrec.data.schema import ITEM, RATING, USER, Dataset
from lmrec.errors import ConfigError, InputError, LmrecError
from lmrec.models.base import ModelConfig, Recommender, register
from lmrec.models.topk import gather
from lmrec.rank.attributes import ItemAttributes
from lmrec.rank.features import FeatureBuilder
from lmrec.rank.fusion_config import FusionConfig
from lmrec.rank.holdout import holdout_parts
from lmrec.rank.lgbm import LGBMConfig, LGBMRanker, LGBMRating, groups_with_positives, ndcg_at
from lmrec.rank.mtl import MultiTaskRanker
from lmrec.rank.mtl_folds import fit_fold_stopped
from lmrec.rank.sources import CandidateBlock, CandidateSources

BLOCK = 256  # users per candidate block


def _attributes(dataset: Dataset) -> ItemAttributes | None:
    try:
        ids = list(dataset.item_ids)
        return ItemAttributes.build(ids, dataset.items, dataset.kg, dataset.links)
    except LmrecError:
        return None


@register
class FusionRecommender(Recommender):
    """Candidates from several recommenders re-ranked by a learned multi-signal ranker."""

    name: ClassVar[str] = "fusion"
    Config = FusionConfig
    config: FusionConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.sources: CandidateSources | None = None
        self.features: FeatureBuilder | None = None
        self.attributes: ItemAttributes | None = None
        self.lgbm: LGBMRanker | None = None
        self.mtl: MultiTaskRanker | None = None
        self.rating_lgbm: LGBMRating | None = None
        self._mtl_rates = False
        self.chosen: dict[str, str] = {}
        self.report: dict[str, Any] = {}
        self._valid_ds: Dataset | None = None
        #: Set True before `fit` to keep the ranker's training/validation rows in ``rows``
        #: (for ablations and diagnostics; they are not saved).
        self.keep_rows = False
        self.rows: dict[str, dict[str, np.ndarray]] = {}

    # -- fitting -------------------------------------------------------------------------
    def fit(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        valid_candidates: Sequence[str] | None = None,
    ) -> Self:
        self._valid_ds = valid  # the base keeps only a binary matrix; ratings are needed too
        try:
            return super().fit(dataset, valid, valid_candidates)
        finally:
            self._valid_ds = None

    def _rows(
        self,
        sources: CandidateSources,
        features: FeatureBuilder,
        labels: pd.DataFrame,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Ranker rows for the users in ``labels`` (their items are the positives)."""
        users, items = self._check()[:2]
        uidx = users.lookup(labels[USER])
        iidx = items.lookup(labels[ITEM])
        ok = (uidx >= 0) & (iidx >= 0)
        rating = (
            labels[RATING].to_numpy(np.float64) if RATING in labels else np.full(len(ok), np.nan)
        )
        rel = sp.csr_matrix(
            (np.ones(ok.sum(), np.float32), (uidx[ok], iidx[ok])), shape=(len(users), len(items))
        )
        rel.sum_duplicates()
        rel.data[:] = 1.0
        rat = sp.csr_matrix(
            (rating[ok] + 100.0, (uidx[ok], iidx[ok])), shape=(len(users), len(items))
        )  # +100 keeps zero ratings stored; duplicates average below
        target_users = np.unique(uidx[ok])
        xs, sizes, ys, rs, nrel, rating_x, rating_y, pu, pi = [], [], [], [], [], [], [], [], []
        for start in tqdm(range(0, len(target_users), BLOCK), desc="ranker rows", leave=False):
            u = target_users[start : start + BLOCK]
            block = sources.candidates(u, exclude[u] if exclude is not None else None, allowed)
            x = features.transform(block)
            y = gather(rel, block.users[block.pair_user], block.pair_item)
            r = gather(rat, block.users[block.pair_user], block.pair_item)
            xs.append(x)
            pu.append(block.users[block.pair_user])
            pi.append(block.pair_item)
            sizes.append(block.group_sizes())
            ys.append(y)
            rs.append(np.where(r > 0, r - 100.0, np.nan))
            nrel.append(np.diff(rel[u].indptr))
            # rating rows: every labelled pair with a rating, retrieved or not
            sub = rat[u].tocoo()
            if sub.nnz:
                pairs = sources.block_for_pairs(u, sub.row, sub.col, block.scores)
                rating_x.append(features.transform(pairs))
                rating_y.append(sub.data - 100.0)
        out = {
            "x": np.vstack(xs),
            "sizes": np.concatenate(sizes),
            "y": np.concatenate(ys),
            "rating": np.concatenate(rs),
            "n_rel": np.concatenate(nrel),
            "user": np.concatenate(pu),
            "item": np.concatenate(pi),
        }
        if rating_x:
            out["rating_x"], out["rating_y"] = np.vstack(rating_x), np.concatenate(rating_y)
        return out

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        cfg = self.config
        self.attributes = _attributes(dataset) if cfg.attributes else None
        train_parts = []
        for k, (part_a, labels) in enumerate(
            holdout_parts(dataset, cfg.holdout, cfg.holdout_share, cfg.folds, cfg.seed)
        ):
            src = CandidateSources(cfg.sources).fit(part_a, self._valid_ds, f"sources (A{k})")
            feats = FeatureBuilder(cfg.features, cfg.sources, self.attributes)
            feats.fit(part_a, src.models[cfg.sources[0].label].seen)
            # ranking among given candidates (fit's valid_candidates, e.g. only new items):
            # train the ranker the same way, among part B's own items
            allowed = None
            if self.valid_candidates is not None:
                allowed = np.unique(self._check()[1].lookup(labels[ITEM]))
                allowed = allowed[allowed >= 0]
            part = self._rows(src, feats, labels, allowed=allowed)
            part["fold"] = np.full(len(part["sizes"]), k)
            train_parts.append(part)
        train = {k: np.concatenate([p[k] for p in train_parts]) for k in train_parts[0]}
        self.sources = CandidateSources(cfg.sources).fit(dataset, self._valid_ds, "sources")
        self.features = FeatureBuilder(cfg.features, cfg.sources, self.attributes).fit(
            dataset, matrix
        )
        valid = None
        if self._valid_ds is not None and self._valid_ds.n_interactions:
            allowed = self.valid_candidates
            valid = self._rows(
                self.sources, self.features, self._valid_ds.interactions, None, allowed
            )
        self._fit_rankers(train, valid)
        if self.keep_rows:
            self.rows = {"train": train, **({"valid": valid} if valid is not None else {})}

    def _fit_rankers(
        self, train: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None
    ) -> None:
        cfg = self.config
        has_pos, rows = groups_with_positives(train["sizes"], train["y"])
        tx, ty, tr = train["x"][rows], train["y"][rows], train["rating"][rows]
        tsz = train["sizes"][has_pos]
        vtuple = (valid["x"], valid["sizes"], valid["y"]) if valid is not None else None
        rankers = ("lgbm", "mtl") if cfg.ranker in ("auto", "blend") else (cfg.ranker,)
        self.report = {"train_rows": len(tx), "train_users": len(tsz)}
        if "lgbm" in rankers:
            folds = train["fold"][has_pos] if "fold" in train else None
            self.lgbm = LGBMRanker(cfg.lgbm).fit(tx, tsz, ty, vtuple, folds=folds)
            self.report["lgbm_rounds"] = self.lgbm.best_iteration
        self._mtl_rates = bool(np.isfinite(tr).any())
        if "mtl" in rankers or (cfg.rating_model in ("auto", "mtl") and self._mtl_rates):
            folds = train["fold"][has_pos] if "fold" in train else None
            if folds is not None and len(np.unique(folds)) > 1:
                self.mtl = fit_fold_stopped(cfg.mtl, tx, tsz, ty, tr, folds)
            else:  # one holdout: early stopping on the validation part, if any
                self.mtl = MultiTaskRanker(cfg.mtl).fit(tx, tsz, ty, rating=tr, valid=vtuple)
        if "rating_x" in train and cfg.rating_model in ("auto", "lgbm"):
            self.rating_lgbm = _fit_rating_lgbm(cfg.lgbm, train, valid)
        if cfg.ranker == "source":
            assert self.features is not None
            if cfg.source_feature not in self.features.names:
                options = [n for n in self.features.names if n.endswith(":z")]
                raise ConfigError(
                    f"source_feature {cfg.source_feature!r} is not a feature; one of {options}"
                )
            self.chosen["ranker"], self.chosen["source"] = "source", cfg.source_feature
        elif cfg.ranker not in ("auto", "blend"):
            self.chosen["ranker"] = cfg.ranker
        elif cfg.ranker == "blend" and valid is None:
            self._fit_blend(tx)
            self.chosen["ranker"] = "blend"
        elif valid is not None and self.lgbm is not None and self.mtl is not None:
            self._fit_blend(tx)
            scores = {
                name: ndcg_at(
                    self._ranker_scores(valid["x"], name),
                    valid["sizes"], valid["y"], valid["n_rel"], 10,
                )
                for name in ("lgbm", "mtl", "blend")
            }  # fmt: skip
            self.report["valid_ndcg@10"] = scores
            if cfg.ranker == "blend":
                scores = {"blend": scores["blend"]}
            self.chosen["ranker"] = max(scores, key=lambda k: scores[k])
        else:
            self.chosen["ranker"] = "lgbm"
        self.chosen["rating"] = self._choose_rating(valid)
        if valid is not None and self.chosen["ranker"] != "source":
            self.report["valid_candidate_recall"] = float(
                np.sum(valid["y"]) / max(float(np.sum(valid["n_rel"])), 1.0)
            )
            self.report["valid_ndcg@10_chosen"] = ndcg_at(
                self._ranker_scores(valid["x"]), valid["sizes"], valid["y"], valid["n_rel"], 10
            )
            if cfg.source_guard and cfg.ranker == "auto":
                self._guard(valid)
        if self.chosen["ranker"] in ("lgbm", "blend") and self.lgbm is not None:
            self.lgbm.compile_trees()  # in the background: serving latency, same scores

    def _fit_blend(self, x: np.ndarray) -> None:
        """Scale of each ranker's scores on training rows, so the blend weighs them equally."""
        assert self.lgbm is not None and self.mtl is not None
        sample = x[np.random.default_rng(0).permutation(len(x))[:50_000]]
        stats = []
        for m in (self.lgbm, self.mtl):
            pred = np.asarray(m.predict(sample), dtype=np.float64)
            stats += [float(pred.mean()), float(max(pred.std(), 1e-9))]
        self.report["blend_scale"] = stats

    def _guard(self, valid: dict[str, np.ndarray]) -> None:
        """Rank by the best single source instead when it beats the ranker on validation."""
        assert self.features is not None
        sizes, y, n_rel = valid["sizes"], valid["y"], valid["n_rel"]
        by_source = {
            name: ndcg_at(valid["x"][:, j], sizes, y, n_rel, 10)
            for j, name in enumerate(self.features.names)
            if name.endswith(":z")
        }
        self.report["valid_ndcg@10_sources"] = by_source
        name = max(by_source, key=lambda n: by_source[n])
        if by_source[name] > self.report["valid_ndcg@10_chosen"]:
            self.chosen["ranker"] = "source"
            self.chosen["source"] = name

    def _choose_rating(self, valid: dict[str, np.ndarray] | None) -> str:
        cfg = self.config
        options = []
        if self.mtl is not None and self._mtl_rates and cfg.rating_model in ("auto", "mtl"):
            options.append("mtl")
        if self.rating_lgbm is not None and cfg.rating_model in ("auto", "lgbm"):
            options.append("lgbm")
        if not options:
            return "none"
        if len(options) == 1 or valid is None or "rating_x" not in valid:
            return options[0]
        rmse = {}
        for name in options:
            pred = self._predict_rating_rows(valid["rating_x"], name)
            rmse[name] = float(np.sqrt(np.mean((pred - valid["rating_y"]) ** 2)))
        self.report["valid_rmse"] = rmse
        return min(rmse, key=lambda k: rmse[k])

    def fitted_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sources is not None:
            out["sources"] = [s.model_dump() for s in self.sources.fitted_configs()]
        out["ranker"] = self.chosen.get("ranker", self.config.ranker)
        if out["ranker"] == "source":
            out["source_feature"] = self.chosen["source"]
        if self.chosen.get("rating") in ("mtl", "lgbm"):
            out["rating_model"] = self.chosen["rating"]
        if self.lgbm is not None:
            out["lgbm"] = {**self.config.lgbm.model_dump(), **self.lgbm.fitted_params()}
        if self.mtl is not None:
            out["mtl"] = {**self.config.mtl.model_dump(), **self.mtl.fitted_params()}
        return out

    # -- scoring -------------------------------------------------------------------------
    def _parts(self) -> tuple[CandidateSources, FeatureBuilder]:
        self._check()
        assert self.sources is not None and self.features is not None
        return self.sources, self.features

    def _ranker_scores(self, x: np.ndarray, kind: str | None = None) -> np.ndarray:
        kind = kind or self.chosen.get("ranker")
        if kind == "source":  # the validation guard kept one source
            j = self._parts()[1].names.index(self.chosen["source"])
            return np.asarray(x[:, j], dtype=np.float64)
        if kind == "blend":
            if self.lgbm is None or self.mtl is None:
                raise InputError("the fusion blend needs both fitted rankers")
            m1, s1, m2, s2 = self.report["blend_scale"]
            a = np.asarray(self.lgbm.predict(x), dtype=np.float64)
            b = np.asarray(self.mtl.predict(x), dtype=np.float64)
            return (a - m1) / s1 + (b - m2) / s2
        model = self.lgbm if kind == "lgbm" else self.mtl
        if model is None:
            raise InputError("the fusion model has no fitted ranker")
        return np.asarray(model.predict(x), dtype=np.float64)

    def rank_block(
        self,
        user_idx: np.ndarray,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[CandidateBlock, np.ndarray]:
        """Candidates of known users and their ranker scores."""
        sources, features = self._parts()
        block = sources.candidates(user_idx, exclude, allowed)
        return block, self._ranker_scores(features.transform(block))

    def rank_items(self, user_id: str, item_ids: Sequence[str]) -> pd.DataFrame:
        """Rank given items for one user (the serving path: candidates come from elsewhere)."""
        users, items, _ = self._check()
        sources, features = self._parts()
        u = users.index([user_id], "user")
        iidx = items.index(item_ids, "item")
        block = sources.block_for_pairs(u, np.zeros(len(iidx), np.int64), iidx)
        scores = self._ranker_scores(features.transform(block))
        order = np.argsort(-scores, kind="stable")
        return pd.DataFrame(
            {ITEM: items.to_ids(iidx[order]), "rank": np.arange(1, len(order) + 1),
             "score": scores[order]}
        )  # fmt: skip

    def _dense(
        self, user_idx: np.ndarray, exclude: sp.csr_matrix | None, allowed: np.ndarray | None
    ) -> np.ndarray:
        _, items, _ = self._check()
        pop = self.popularity()
        fallback = pop / (pop.max() + 1.0)  # orders non-candidates, always below candidates
        out = np.empty((len(user_idx), len(items)), dtype=np.float32)
        for start in range(0, len(user_idx), BLOCK):
            u = user_idx[start : start + BLOCK]
            ex = exclude[start : start + BLOCK] if exclude is not None else None
            block, s = self.rank_block(u, ex, allowed)
            low = np.zeros(len(u))
            if len(s):
                low = np.full(len(u), np.inf)
                np.minimum.at(low, block.pair_user, s)
                low[~np.isfinite(low)] = 0.0
            part = (low - 2.0)[:, None] + fallback[None, :]
            part[block.pair_user, block.pair_item] = s
            out[start : start + len(u)] = part
        return out

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._dense(np.asarray(user_idx, dtype=np.int64), None, None)

    def _scores_for_topk(
        self, user_idx: np.ndarray, exclude: sp.csr_matrix | None, candidates: np.ndarray | None
    ) -> np.ndarray:
        _, _, seen = self._check()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        known = user_idx >= 0
        known[known] &= np.diff(seen.indptr)[user_idx[known]] > 0
        out = np.empty((len(user_idx), seen.shape[1]), dtype=np.float32)
        out[~known] = self.popularity()
        if known.any():
            ex = sp.csr_matrix(exclude[np.flatnonzero(known)]) if exclude is not None else None
            out[known] = self._dense(user_idx[known], ex, candidates)
        return out

    # -- ratings -------------------------------------------------------------------------
    def _predict_rating_rows(self, x: np.ndarray, name: str | None = None) -> np.ndarray:
        name = name or self.chosen.get("rating", "none")
        if name == "lgbm" and self.rating_lgbm is not None:
            return self.rating_lgbm.predict(x)
        if name == "mtl" and self.mtl is not None:
            return np.asarray(self.mtl.predict_rating(x), dtype=np.float64)
        raise InputError("this fusion model predicts no ratings (the training data had none)")

    def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Predicted rating of each aligned (user, item) pair; unknown IDs get mean-based ones."""
        umap, imap, _ = self._check()
        sources, features = self._parts()
        if len(users) != len(items):
            raise InputError(f"{len(users)} users but {len(items)} items")
        uidx, iidx = umap.lookup([str(u) for u in users]), imap.lookup([str(i) for i in items])
        out = features.global_mean + np.where(iidx >= 0, features.item_mean[np.maximum(iidx, 0)], 0)
        out = out + np.where(uidx >= 0, features.user_mean[np.maximum(uidx, 0)], 0)
        ok = np.flatnonzero((uidx >= 0) & (iidx >= 0))
        order = ok[np.argsort(uidx[ok], kind="stable")]
        uniq, first = np.unique(uidx[order], return_index=True)
        bounds = np.r_[first, len(order)]
        for start in range(0, len(uniq), BLOCK):
            rows = order[bounds[start] : bounds[min(start + BLOCK, len(uniq))]]
            u = uniq[start : start + BLOCK]
            pair_user = np.searchsorted(u, uidx[rows])
            block = sources.block_for_pairs(u, pair_user, iidx[rows])
            out[rows] = self._predict_rating_rows(features.transform(block))
        return out

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        _, features = self._parts()
        out = {f"f_{k}": v for k, v in features.state().items()}
        if self.mtl is not None:
            out.update({f"mtl_{k}": v for k, v in self.mtl.state().items()})
        rating = self.rating_lgbm
        meta = {
            "chosen": self.chosen,
            "report": self.report,
            "rating_range": [rating.low, rating.high] if rating is not None else None,
        }
        out["meta"] = np.asarray([json.dumps(meta)])
        return out

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._pending = state

    def _save_files(self, out: Path) -> None:
        sources, _ = self._parts()
        folder = out / "sources"
        if folder.exists():
            shutil.rmtree(folder)
        for i, (label, model) in enumerate(sources.models.items()):
            model.save(folder / f"{i}-{label}")
        if self.attributes is not None:
            self.attributes.save(out / "attributes")
        if self.lgbm is not None:
            (out / "ranker_lgbm.txt").write_text(self.lgbm.to_string())
            if self.lgbm.compiled is not None:
                self.lgbm.compiled.wait()
                self.lgbm.compiled.copy_to(out)
        if self.rating_lgbm is not None:
            (out / "rating_lgbm.txt").write_text(self.rating_lgbm.to_string())

    def _load_files(self, src: Path) -> None:
        state = self._pending
        meta = json.loads(str(state["meta"][0]))
        self.chosen, self.report = meta["chosen"], meta["report"]
        cfg = self.config
        self.attributes = (
            ItemAttributes.load(src / "attributes") if (src / "attributes").is_dir() else None
        )
        self.sources = CandidateSources(cfg.sources)
        for i, s in enumerate(cfg.sources):
            self.sources.models[s.label] = Recommender.load(src / "sources" / f"{i}-{s.label}")
        assert self.seen is not None
        self.features = FeatureBuilder(cfg.features, cfg.sources, self.attributes).set_state(
            {k[2:]: v for k, v in state.items() if k.startswith("f_")}, self.seen
        )
        mtl = {k[4:]: v for k, v in state.items() if k.startswith("mtl_")}
        self.mtl = MultiTaskRanker.from_state(cfg.mtl, mtl) if mtl else None
        path = src / "ranker_lgbm.txt"
        self.lgbm = LGBMRanker.from_string(cfg.lgbm, path.read_text()) if path.is_file() else None
        if self.lgbm is not None and self.chosen.get("ranker") in ("lgbm", "blend"):
            self.lgbm.compile_trees(folder=src)
        path = src / "rating_lgbm.txt"
        self.rating_lgbm = None
        if path.is_file() and meta["rating_range"]:
            low, high = meta["rating_range"]
            self.rating_lgbm = LGBMRating.from_string(cfg.lgbm, path.read_text(), low, high)
        del self._pending


def _fit_rating_lgbm(
    config: LGBMConfig, train: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None
) -> LGBMRating:
    vt = (
        (valid["rating_x"], valid["rating_y"])
        if valid is not None and "rating_x" in valid
        else None
    )
    return LGBMRating(config).fit(train["rating_x"], train["rating_y"], vt)
