"""Full-ranking protocol: exclusions, candidates, slices and selection on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.data.schema import Dataset
from lmrec.data.splits import Split
from lmrec.evaluate.protocol import EvalConfig, compare, evaluate, select_config
from lmrec.models.base import Recommender


class FixedScores(Recommender):
    """Test double: scores every user with one given item ranking."""

    name = "fixed-scores-test"

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.fixed = scores.astype(np.float32)

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        pass

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.tile(self.fixed, (len(user_idx), 1))


def tiny_split() -> Split:
    """Two users over items a..f: train, valid and test parts given by hand."""
    items = pd.DataFrame({"item_id": list("abcdef")})

    def part(rows: list[tuple[str, str]]) -> Dataset:
        return Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id"]), items)

    train = part([("u1", "a"), ("u2", "a"), ("u2", "b")])
    valid = part([("u1", "b"), ("u2", "c")])
    test = part([("u1", "c"), ("u2", "d")])
    return Split(train=train, valid=valid, test=test, protocol="given", seed=None, params={})


def test_test_stage_excludes_train_and_valid_items() -> None:
    split = tiny_split()
    # ranking a > b > c > d > e > f for everyone
    model = FixedScores(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    res = evaluate(model, split, "test", EvalConfig(ks=[1]))
    # u1: a (train) and b (valid) removed -> c first = hit; u2: a, b, c removed -> d = hit
    assert res.metrics["hit@1"] == 1.0
    assert res.metrics["ndcg@1"] == 1.0
    valid = evaluate(model, split, "valid", EvalConfig(ks=[1]))
    # valid stage removes train only: u1 -> b (hit), u2 -> c (hit)
    assert valid.metrics["hit@1"] == 1.0


def test_without_valid_exclusion_the_score_would_drop() -> None:
    split = tiny_split()
    model = FixedScores(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    no_valid = Split(split.train, split.train.with_interactions(split.valid.interactions.iloc[:0]),
                     split.test, "given", None, {})  # fmt: skip
    res = evaluate(model, no_valid, "test", EvalConfig(ks=[1]))
    assert res.metrics["hit@1"] == 0.0  # u1 gets b, u2 gets c: both are valid items, not test


def test_candidates_restrict_ranking_and_targets() -> None:
    split = tiny_split()
    model = FixedScores(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    cand = np.array([3, 4, 5])  # d, e, f
    res = evaluate(model, split, "test", EvalConfig(ks=[1]), candidates=cand)
    # only u2's test item (d) is a candidate, so only u2 is evaluated, and d ranks first
    assert res.n_users == 1
    assert res.metrics["hit@1"] == 1.0


def test_cold_user_slice_holds_users_with_little_training_data() -> None:
    split = tiny_split()
    model = FixedScores(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    res = evaluate(model, split, "test", EvalConfig(ks=[1], cold_user_max=1))
    assert res.slices["cold_users"]["n_users"] == 1.0  # u1 has one training interaction
    assert "long_tail_items" in res.slices


def test_select_config_picks_the_best_validation_trial() -> None:
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", f"i{i}") for u in range(50) for i in rng.choice(30, 8, replace=False)]
    ds = Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id"]))
    inter = ds.interactions
    pos = inter.groupby("user_id").cumcount()
    split = Split(
        ds.with_interactions(inter[pos < 6]),
        ds.with_interactions(inter[pos == 6]),
        ds.with_interactions(inter[pos == 7]),
        "given",
        None,
        {},
    )
    grid = [{"reg_weight": r} for r in (0.1, 10.0, 1000.0)]
    best, trials = select_config("ease", split, EvalConfig(), grid=grid)
    assert len(trials) == 3
    assert best == max(trials, key=lambda t: t["ndcg@10"])["config"]
    runs = compare(split, ["pop", "ease"], EvalConfig(tune=False))
    assert [r.model for r in runs] == ["pop", "ease"]
    assert all(0 <= r.test.metrics["ndcg@10"] <= 1 for r in runs)


def test_validation_ndcg_ranks_among_valid_candidates() -> None:
    from lmrec.models.early_stopping import validation_ndcg

    split = tiny_split()
    model = FixedScores(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    relevant = split.valid.matrix(model.users, model.items)
    # with training items excluded, u1's valid b and u2's valid c both come first
    full = validation_ndcg(model, relevant, k=1)
    assert full == 1.0
    model.valid_candidates = np.array([2, 4, 5])  # c, e, f: only u2's valid item c counts
    assert validation_ndcg(model, relevant, k=1) == 1.0
    model.valid_candidates = np.array([4, 5])  # no valid item among the candidates
    assert validation_ndcg(model, relevant, k=1) == 0.0


def test_sequential_models_test_from_train_plus_valid_history() -> None:
    split = tiny_split()

    class Recent(FixedScores):
        """Scores only the item after the user's most recent history item."""

        name = "recent-test"

        def with_history(self, dataset: Dataset) -> Recent:
            other = Recent(self.fixed)
            other.fit(dataset)
            other.fixed = self.fixed * 0
            other.fixed[3] = 1.0  # d, the item after valid items in this toy order
            return other

    model = Recent(np.array([6, 5, 4, 3, 2, 1])).fit(split.train)
    res = evaluate(model, split, "test", EvalConfig(ks=[1]))
    assert res.metrics["hit@1"] == 0.5  # u2's test item d: found only through with_history
