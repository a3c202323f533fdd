"""SASRec learns sequential patterns, persists, and scores from a longer history on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError
from lmrec.models import SASRec, create_model
from lmrec.models.base import Recommender

N_ITEMS, N_USERS, LENGTH = 30, 150, 12
SMALL = {
    "hidden_size": 16,
    "n_heads": 1,
    "n_layers": 1,
    "inner_size": 32,
    "hidden_dropout": 0.1,
    "attn_dropout": 0.1,
    "max_len": 8,
    "stride": 8,
    "epochs": 12,
    "batch_size": 16,
    "learning_rate": 0.01,
    "num_threads": 1,
}


def walks() -> tuple[Dataset, Dataset, Dataset, dict[str, str]]:
    """Each user walks i -> i+1 -> ... (mod N_ITEMS) from a random start.

    Returns the full data, the data without each user's last item (train), that last item
    (test), and the item that would come after the last one.
    """
    rng = np.random.default_rng(0)
    rows, after = [], {}
    for u in range(N_USERS):
        start = int(rng.integers(N_ITEMS))
        rows += [(f"u{u}", f"i{(start + t) % N_ITEMS}", float(1000 * u + t)) for t in range(LENGTH)]
        after[f"u{u}"] = f"i{(start + LENGTH) % N_ITEMS}"
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    inter = inter.sample(frac=1.0, random_state=1).reset_index(drop=True)  # file order is noise
    full = Dataset.build(inter)
    is_last = inter.groupby("user_id")["timestamp"].transform("max") == inter["timestamp"]
    return (
        full,
        full.with_interactions(inter[~is_last]),
        full.with_interactions(inter[is_last]),
        after,
    )


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset, Dataset, dict[str, str]]:
    return walks()


@pytest.fixture(scope="module")
def model(data: tuple[Dataset, Dataset, Dataset, dict[str, str]]) -> SASRec:
    _, train, _, _ = data
    return SASRec(**SMALL).fit(train)


def _top1_accuracy(model: Recommender, truth: dict[str, str]) -> float:
    recs = model.recommend(list(truth), k=1)
    return float(np.mean([truth[u] == i for u, i in recs[["user_id", "item_id"]].to_numpy()]))


def _last_items(part: Dataset) -> dict[str, str]:
    return dict(zip(part.interactions["user_id"], part.interactions["item_id"], strict=True))


def test_learns_the_next_item_where_popularity_cannot(model: SASRec, data) -> None:
    _, train, test, _ = data
    truth = _last_items(test)
    assert _top1_accuracy(model, truth) >= 0.8
    assert _top1_accuracy(create_model("pop").fit(train), truth) < 0.3


def test_bpr_loss_learns_too(data) -> None:
    _, train, test, _ = data
    model = SASRec(**{**SMALL, "loss": "bpr"}).fit(train)
    assert _top1_accuracy(model, _last_items(test)) >= 0.8


def test_with_history_scores_from_the_new_sequences(model: SASRec, data) -> None:
    full, train, _, after = data
    longer = model.with_history(full)
    assert longer.net is model.net  # no retraining
    assert longer.seen is not None and longer.seen.nnz == full.n_interactions
    assert model.seen is not None and model.seen.nnz == train.n_interactions  # untouched
    assert _top1_accuracy(longer, after) >= 0.8  # predicts the step after the held-out item
    assert not np.array_equal(longer.score(["u0"]), model.score(["u0"]))


def test_save_load_round_trip(model: SASRec, data, tmp_path: Path) -> None:
    full, _, _, _ = data
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, SASRec)
    users = ["u0", "u1", "u77"]
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loaded.with_history(full).score(users), model.with_history(full).score(users), rtol=1e-5
    )


def test_early_stopping_reports_epochs(data) -> None:
    _, train, _, _ = data
    inter = train.interactions
    is_last = inter.groupby("user_id")["timestamp"].transform("max") == inter["timestamp"]
    fit_part, valid = (
        train.with_interactions(inter[~is_last]),
        train.with_interactions(inter[is_last]),
    )
    model = SASRec(**{**SMALL, "epochs": 12, "eval_every": 3, "patience": 2}).fit(
        fit_part, valid=valid
    )
    epochs = model.fitted_params()["epochs"]
    assert 3 <= epochs <= 12 and epochs % 3 == 0
    assert [e for e, _ in model.history][:2] == [3, 6]
    assert model.valid_matrix is None


def test_seeded_fits_agree(data) -> None:
    _, train, _, _ = data
    cfg = {**SMALL, "epochs": 2}
    a, b = SASRec(**cfg).fit(train), SASRec(**cfg).fit(train)
    np.testing.assert_allclose(a.score(["u3"]), b.score(["u3"]), rtol=1e-5, atol=1e-6)


def test_learns_clusters_when_time_order_is_random() -> None:
    # as the shared suite's clustered data (two user groups, each on its own half of the
    # items), but in random time order: the suite's times ascend with the item index
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{i}", float(t))
        for u in range(60)
        for i in rng.choice(np.arange(u % 2 * 20, u % 2 * 20 + 20), size=8, replace=False)
        for t in [rng.random()]
    ]
    data = Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    model = SASRec(**{**SMALL, "max_len": 10, "epochs": 15}).fit(data)
    recs = model.recommend(list(data.user_ids), k=5)
    same = [int(u[1:]) % 2 == int(i[1:]) // 20 for u, i in recs[["user_id", "item_id"]].to_numpy()]
    assert np.mean(same) > 0.9


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="n_heads"):
        SASRec(hidden_size=10, n_heads=3)
    with pytest.raises(ConfigError, match="stride"):
        SASRec(max_len=5, stride=6)
    with pytest.raises(ConfigError, match="loss"):
        SASRec(loss="bce")
