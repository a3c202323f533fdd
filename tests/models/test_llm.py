"""The `llm` model: an LLM step (generate or rerank) over a base recommender."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_recommender_suite import clustered_dataset

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError
from lmrec.llm.types import Generation, GenerationError, Message
from lmrec.models import FusionRecommender, LLMRecommender, create_model
from lmrec.models.base import Recommender


class Scripted:
    """Answers with a fixed text; records the prompts."""

    name = "scripted"

    def __init__(self, text: str, fail: bool = False) -> None:
        self.text, self.fail = text, fail
        self.asked: list[Sequence[Message]] = []

    def generate(self, messages: Sequence[Message], **_: object) -> Generation:
        self.asked.append(messages)
        if self.fail:
            raise GenerationError("unreachable")
        return Generation(self.text, self.name)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return clustered_dataset()


def base_top(model: LLMRecommender, user: str, n: int) -> list[str]:
    assert model.base is not None
    return list(model.base.recommend([user], k=n)["item_id"])


def test_generate_puts_the_llm_picks_first_then_the_base_order(data: Dataset) -> None:
    model = LLMRecommender(base="itemknn", k=3, generate={"n_candidates": 6}).fit(data)
    user = "u3"
    shortlist = base_top(model, user, 6)
    model._backend = Scripted(json.dumps({"order": [4, 2, 2, 99]}))  # a repeat, out of range
    got = list(model.recommend([user], k=6)["item_id"])
    assert got[:2] == [shortlist[3], shortlist[1]]
    assert got[2:] == [i for i in shortlist if i not in got[:2]][:4]
    prompt = model._backend.asked[0][1].content  # type: ignore[union-attr]
    titles = data.items["title"]
    assert all(titles[i] in prompt for i in shortlist)  # the shortlist, numbered, is the data


def test_history_in_the_prompt_is_oldest_first_and_survives_save(
    data: Dataset, tmp_path: Path
) -> None:
    model = LLMRecommender(base="itemknn", k=2).fit(data)
    inter = data.interactions[data.interactions["user_id"] == "u3"].sort_values("timestamp")
    titles = data.items["title"]
    expected = [titles[i] for i in inter["item_id"]][-model.config.generate.history_items :]
    for m in (model, Recommender.load(model.save(tmp_path / "llm"))):
        assert isinstance(m, LLMRecommender)
        m._backend = backend = Scripted("{}")
        m.recommend(["u3"], k=2)
        prompt = backend.asked[0][1].content
        positions = [prompt.index(json.dumps(t)[1:-1]) for t in expected]
        assert positions == sorted(positions)


def test_rerank_reorders_the_base_top_n(data: Dataset) -> None:
    model = LLMRecommender(base="itemknn", step="rerank", rerank_n=5).fit(data)
    top = base_top(model, "u10", 5)
    model._backend = Scripted(json.dumps({"order": [5, 4, 3, 2, 1]}))
    assert list(model.recommend(["u10"], k=5)["item_id"]) == top[::-1]
    model._backend = Scripted("no idea")  # unparseable: the base order stands
    assert list(model.recommend(["u10"], k=5)["item_id"]) == top


def test_a_failing_llm_leaves_the_base_order(data: Dataset) -> None:
    for step in ("generate", "rerank"):
        model = LLMRecommender(base="itemknn", step=step).fit(data)
        model._backend = Scripted("", fail=True)
        got = list(model.recommend(["u3", "u10"], k=5)["item_id"])
        base = base_top(model, "u3", 5) + base_top(model, "u10", 5)
        assert got == base and model.failures == 2


def test_llm_is_a_fusion_candidate_source(data: Dataset) -> None:
    fusion = create_model(
        "fusion",
        sources=[
            {"model": "ease", "budget": 10, "config": {"reg_weight": 1.0}},
            {
                "model": "llm",
                "budget": 5,
                "config": {"base": "itemknn", "base_config": {"k": 10}, "k": 5},
            },
        ],
        holdout="random",
        holdout_share=0.25,
        ranker="lgbm",
        lgbm={"n_estimators": 20, "min_child_samples": 5, "num_threads": 1},
    ).fit(data)
    assert isinstance(fusion, FusionRecommender) and fusion.sources is not None
    assert isinstance(fusion.sources.models["llm"], LLMRecommender)
    recs = fusion.recommend(["u3"], k=5)
    assert len(recs) == 5
    seen = set(data.interactions.loc[data.interactions["user_id"] == "u3", "item_id"])
    assert not set(recs["item_id"]) & seen


def test_config_errors(data: Dataset) -> None:
    with pytest.raises(ConfigError, match="own base"):
        LLMRecommender(base="llm")
    with pytest.raises(ConfigError, match="step"):
        LLMRecommender(step="guess")
    no_titles = Dataset.build(data.interactions)
    with pytest.raises(ConfigError, match="title"):
        LLMRecommender(base="itemknn").fit(no_titles)
    assert np.isfinite(LLMRecommender(base="pop").fit(data).score(["u3"])).all()


def test_the_shipped_rerank_config_is_valid() -> None:
    import tomllib

    path = Path(__file__).parents[2] / "configs" / "llm-rerank-ml100k.toml"
    model = LLMRecommender(**tomllib.loads(path.read_text())["model"])
    assert model.config.step == "rerank" and model.config.backend.kind == "llama-cpp"
