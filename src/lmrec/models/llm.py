"""An LLM step over a base recommender: direct generation or listwise reranking.

``step = "generate"``: the base model shortlists each user's unseen items and the LLM picks
the best ``k`` (`lmrec.llm.generate.DirectGenerator`: grounded, never seen, never repeated).
``step = "rerank"``: the LLM reorders the base model's top ``rerank_n`` (LLMRank-style, one
listwise prompt with numbered candidates). Either way the LLM's items get the top scores and
every other item keeps the base model's order, so the model is a full `Recommender`: it
evaluates under the standard protocols, saves and loads, and serves as one candidate
source of the fusion ranker (``[[sources]] model = "llm"``).

Every call goes through a backend with a timeout and the template fallback; a failing LLM
leaves the base model's order in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.schema import ITEM, TIMESTAMP, USER, Dataset, IdMap
from lmrec.errors import ConfigError
from lmrec.llm.backends import BackendConfig
from lmrec.llm.generate import GenerateConfig
from lmrec.llm.types import Backend, GenerationError
from lmrec.models.base import ModelConfig, Recommender, create_model, register
from lmrec.models.topk import topk

BASE_DIR = "base"


class LLMConfig(ModelConfig):
    """Configuration of `LLMRecommender` (``lmrec fit --model llm --config x.toml``)."""

    base: str = Field("text", description="Registered model that shortlists (and fills in).")
    base_config: dict[str, Any] = Field(default_factory=dict, description="Its config.")
    step: Literal["generate", "rerank"] = Field(
        "generate", description="LLM picks from a shortlist, or reorders the base's top list."
    )
    k: int = Field(10, ge=1, le=50, description="Items the LLM places at the top per user.")
    rerank_n: int = Field(20, ge=2, le=100, description="rerank: how many of the base's top.")
    backend: BackendConfig = Field(default_factory=BackendConfig, description="The LLM.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="generate.")


class _Shortlister:
    """`DirectGenerator`'s retriever over one user's precomputed base scores."""

    def __init__(self, model: LLMRecommender, scores: np.ndarray) -> None:
        self.base = model.base
        self.name = model.config.base
        self.item_table = model.item_table
        self.items = model.items
        self.item_vectors = getattr(model.base, "item_vectors", None)
        self.scores = scores

    def recommend_for(
        self, history: Sequence[str] = (), request: str | None = None, k: int = 10
    ) -> pd.DataFrame:
        if request and callable(getattr(self.base, "recommend_for", None)):
            return self.base.recommend_for(history=history, request=request, k=k)  # type: ignore[union-attr]
        assert self.items is not None
        row = self.scores.copy()
        if history:
            row[self.items.index(list(history), "item")] = -np.inf
        idx, vals = topk(row[None, :], k)
        keep = idx[0] >= 0
        return pd.DataFrame(
            {ITEM: self.items.to_ids(idx[0][keep]), "score": vals[0][keep].astype(np.float64)}
        )


@register
class LLMRecommender(Recommender):
    """An LLM that generates from, or reranks, a base recommender's list."""

    name: ClassVar[str] = "llm"
    Config = LLMConfig
    config: LLMConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if self.config.base == self.name:
            raise ConfigError("model 'llm' cannot be its own base")
        self.base: Recommender | None = None
        self.history: sp.csr_matrix | None = None  # item indices per user, oldest first
        self._backend: Backend | None = None
        #: Per call of `_score`: users whose LLM answer failed (the base order stood).
        self.failures = 0

    # -- Recommender -------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        if self.item_table is None or "title" not in self.item_table.columns:
            raise ConfigError("model 'llm' needs item titles (a 'title' column in the items)")
        self.base = create_model(self.config.base, **self.config.base_config).fit(dataset)
        assert self.users is not None and self.items is not None
        self.history = _ordered_history(dataset.interactions, self.users, self.items)

    def fitted_params(self) -> dict[str, Any]:
        assert self.base is not None
        return {"base_config": {**self.config.base_config, **self.base.fitted_params()}}

    def backend(self) -> Backend:
        """The LLM backend, built on first use."""
        if self._backend is None:
            from lmrec.llm.backends import make_backend

            self._backend = make_backend(self.config.backend)
        return self._backend

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.base is not None and self.history is not None and self.items is not None
        scores = np.asarray(self.base.score_idx(user_idx), dtype=np.float32).copy()
        hist = self.history
        for row, u in enumerate(user_idx):
            history = self.items.to_ids(hist.indices[hist.indptr[u] : hist.indptr[u + 1]])
            picks = self._llm_items(scores[row], [str(i) for i in history])
            finite = scores[row][np.isfinite(scores[row])]
            top = float(finite.max()) if finite.size else 0.0
            pos = self.items.index(picks, "item") if picks else np.empty(0, dtype=np.int64)
            scores[row, pos] = top + 1.0 + np.arange(len(pos), 0, -1, dtype=np.float32)
        return scores

    def _llm_items(self, scores: np.ndarray, history: list[str]) -> list[str]:
        """The LLM's items for one user, best first (empty when it failed)."""
        cfg = self.config
        if cfg.step == "generate":
            from lmrec.llm.generate import DirectGenerator

            gen = DirectGenerator(_Shortlister(self, scores), self.backend(), config=cfg.generate)
            out = gen.generate(history, k=cfg.k)
            self.failures += int(out.generation is None or out.generation.fallback)
            return list(out.grounding.items)
        return self._rerank(scores, history)

    def _rerank(self, scores: np.ndarray, history: list[str]) -> list[str]:
        from lmrec.llm.prompts import (
            build_rerank_prompt,
            item_texts,
            order_grammar,
            parse_order_result,
        )

        assert self.items is not None and self.item_table is not None
        row = scores.copy()
        if history:
            row[self.items.index(history, "item")] = -np.inf
        idx, _ = topk(row[None, :], self.config.rerank_n)
        top = [str(i) for i in self.items.to_ids(idx[0][idx[0] >= 0])]
        if len(top) < 2:
            return top
        texts = item_texts(self.item_table, top)
        recent = item_texts(self.item_table, history[-self.config.generate.history_items :])
        messages = build_rerank_prompt(recent, texts, None, self.config.generate.language)
        try:
            out = self.backend().generate(
                messages,
                max_tokens=8 * len(top) + 16,
                temperature=0.0,
                grammar=order_grammar(len(top), len(top)) if self.config.generate.grammar else None,
            )
        except GenerationError:
            self.failures += 1
            return top
        self.failures += int(out.fallback)
        return [top[i] for i in parse_order_result(out.text, len(top)).order]

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.history is not None
        return {"hist_indptr": self.history.indptr, "hist_indices": self.history.indices}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        assert self.items is not None  # `load` sets the ID maps first
        indptr, indices = state["hist_indptr"], state["hist_indices"]
        self.history = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr),
            shape=(len(indptr) - 1, len(self.items)),
        )

    def _save_files(self, out: Path) -> None:
        assert self.base is not None
        self.base.save(out / BASE_DIR)

    def _load_files(self, src: Path) -> None:
        self.base = Recommender.load(src / BASE_DIR)


def _ordered_history(inter: pd.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix:
    """Each user's items oldest first (a CSR whose index order is the time order)."""
    order = (
        inter.sort_values([USER, TIMESTAMP], kind="stable") if TIMESTAMP in inter else inter
    ).drop_duplicates([USER, ITEM], keep="last")
    u = users.index(order[USER], "user")
    i = items.index(order[ITEM], "item")
    sort = np.argsort(u, kind="stable")
    u, i = u[sort], i[sort]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.add.at(indptr, u + 1, 1)
    return sp.csr_matrix(
        (np.ones(len(i), dtype=np.float32), i, np.cumsum(indptr)), shape=(len(users), len(items))
    )
