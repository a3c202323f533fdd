"""Direct generation: the LLM proposes titles, grounding turns them into real, new items.

Two modes (``GenerateConfig.mode``):

- ``candidates``: a retriever (any fitted recommender with ``recommend_for``, e.g. ``text``)
  shortlists unseen items for the user's history and request; the LLM picks among them, held
  to their titles by a GBNF grammar where the backend decodes with one (the "title trie");
- ``free``: the LLM names titles from what it knows; each is snapped to the nearest catalog
  item (exact, fuzzy, then embedding match).

Either way grounding drops history, disliked, duplicate and (in ``candidates`` mode)
non-shortlisted items, and the list is topped up from the retriever's order, so every list
has ``k`` real items the user has not seen. Backend failures fall through to the same top-up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from lmrec.errors import InputError
from lmrec.llm.grounding import Catalog, GroundingResult, ground
from lmrec.llm.prompts import (
    Feedback,
    build_recommend_prompt,
    item_texts,
    parse_items,
    title_grammar,
)
from lmrec.llm.types import Backend, Generation, GenerationError


class GenerateConfig(BaseModel):
    """Configuration of `DirectGenerator`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["candidates", "free"] = Field(
        "candidates", description="Pick among retrieved candidates, or name titles freely."
    )
    n_candidates: int = Field(30, ge=1, le=500, description="Shortlist size in candidates mode.")
    grammar: bool = Field(True, description="Constrain decoding to the shortlist's titles.")
    max_tokens: int = Field(400, gt=0, description="Most tokens the LLM may write.")
    history_items: int = Field(20, ge=0, description="Most recent history items in the prompt.")
    language: Literal["en", "zh"] = Field("en", description="Language of the instruction.")


@dataclass
class GeneratedList:
    """One generated list and how it came about."""

    items: list[str]
    proposals: list[str]  # titles as the LLM wrote them
    grounding: GroundingResult
    generation: Generation | None
    filled: int  # items topped up from the retriever
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class DirectGenerator:
    """LLM recommendations grounded to a catalog.

    Args:
        retriever: A fitted recommender with ``recommend_for(history, request=, k=)`` (the
            shortlist and the top-up).
        backend: The LLM.
        catalog: Titles (and vectors) to ground in; built from the retriever's item table
            when None.
        config: Mode and limits.
    """

    def __init__(
        self,
        retriever: Any,
        backend: Backend,
        catalog: Catalog | None = None,
        config: GenerateConfig | None = None,
    ) -> None:
        if not callable(getattr(retriever, "recommend_for", None)):
            raise InputError(
                f"model '{getattr(retriever, 'name', retriever)}' cannot shortlist from a "
                "history; use a 'text' or 'two-tower' model as the retriever"
            )
        table = retriever.item_table
        if table is None or "title" not in table.columns:
            raise InputError("the retriever's item table has no 'title' column")
        self.retriever = retriever
        self.backend = backend
        self.items: pd.DataFrame = table
        self.catalog = catalog or Catalog(table)
        self.config = config or GenerateConfig()

    def generate(
        self,
        history: Sequence[str],
        k: int = 10,
        request: str | None = None,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
    ) -> GeneratedList:
        """``k`` new items for someone with this history (oldest first) and request.

        Args:
            history: Item IDs the user has (never recommended back).
            k: List length.
            request: Optional typed request ("a 90s animated comedy").
            liked: Recently liked item IDs (from feedback events), stressed in the prompt.
            disliked: Recently disliked item IDs: never recommended, named in the prompt.
        """
        t0 = time.perf_counter()
        cfg = self.config
        known = [h for h in history if h in self.items.index]
        exclude = set(known) | set(disliked)
        shortlist_k = max(cfg.n_candidates, k) + len(disliked)
        ranked = self.retriever.recommend_for(history=known, request=request, k=shortlist_k)
        order = [str(i) for i in ranked["item_id"] if str(i) not in exclude]
        shortlist = order[: max(cfg.n_candidates, k)]
        feedback = Feedback(
            liked=[self.catalog.title(i) for i in liked if i in self.catalog],
            disliked=[self.catalog.title(i) for i in disliked if i in self.catalog],
        )
        candidates = item_texts(self.items, shortlist) if cfg.mode == "candidates" else None
        messages = build_recommend_prompt(
            item_texts(self.items, known[-cfg.history_items :]) if cfg.history_items else [],
            request,
            feedback,
            k,
            candidates,
            language=cfg.language,
        )
        grammar = None
        if cfg.mode == "candidates" and cfg.grammar and candidates:
            grammar = title_grammar([c.title for c in candidates], k)
        problems: list[str] = []
        generation: Generation | None = None
        proposals: list[str] = []
        try:
            generation = self.backend.generate(
                messages, max_tokens=cfg.max_tokens, temperature=0.0, grammar=grammar
            )
            parsed = parse_items(generation.text, max_items=3 * k)
            proposals, problems = parsed.titles, list(parsed.problems)
        except GenerationError as e:
            problems.append(f"backend: {e}")
        allowed = set(shortlist) if cfg.mode == "candidates" else None
        grounded = (
            ground(proposals, self.catalog, exclude, k, allowed=allowed)
            if proposals
            else (GroundingResult())
        )
        items = list(grounded.items)
        taken = set(items)
        for iid in order:  # top up from the retriever: always k real, unseen items
            if len(items) >= k:
                break
            if iid not in taken:
                items.append(iid)
                taken.add(iid)
        return GeneratedList(
            items=items,
            proposals=proposals,
            grounding=grounded,
            generation=generation,
            filled=len(items) - len(grounded.items),
            problems=problems,
            seconds=time.perf_counter() - t0,
        )
