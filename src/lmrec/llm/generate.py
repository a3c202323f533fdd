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

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from lmrec.errors import InputError
from lmrec.llm.constrain import OrderSpec
from lmrec.llm.grounding import Catalog, GroundingResult, ground
from lmrec.llm.prompts import (
    Feedback,
    ItemText,
    build_recommend_prompt,
    build_rerank_prompt,
    item_texts,
    parse_items,
    parse_order_result,
    title_grammar,
)
from lmrec.llm.types import Backend, Generation, GenerationError, Message, generate_many


class GenerateConfig(BaseModel):
    """Configuration of `DirectGenerator`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["candidates", "free"] = Field(
        "candidates", description="Pick among retrieved candidates, or name titles freely."
    )
    n_candidates: int = Field(20, ge=1, le=100, description="Shortlist size in candidates mode.")
    output: Literal["numbers", "titles"] = Field(
        "numbers",
        description="Candidates mode: the LLM writes shortlist numbers (few tokens) or titles.",
    )
    grammar: bool = Field(
        True, description="Constrain decoding to shortlist numbers or titles (llama-cpp)."
    )
    max_tokens: int = Field(400, gt=0, description="Most tokens the LLM may write.")
    history_items: int = Field(10, ge=0, description="Most recent history items in the prompt.")
    language: Literal["en", "zh"] = Field("en", description="Language of the instruction.")
    dislike_penalty: float = Field(
        0.5,
        ge=0,
        description="Shortlist score minus this x the item's best cosine to a disliked item.",
    )


@dataclass(frozen=True)
class GenerateRequest:
    """What `DirectGenerator.generate` takes, for `DirectGenerator.generate_many`."""

    history: Sequence[str]
    k: int = 10
    request: str | None = None
    liked: Sequence[str] = ()
    disliked: Sequence[str] = ()
    language: Literal["en", "zh"] | None = None
    exclude: Sequence[str] = ()


@dataclass
class _Ask:
    """One request made ready for the LLM (see `DirectGenerator._prepare`)."""

    k: int
    messages: list[Message]
    grammar: str | None
    order: OrderSpec | None  # the answer is shortlist numbers (batched decoding holds it)
    candidates: list[ItemText] | None  # the numbered shortlist, when answered by numbers
    ranked: list[str]  # unseen items in retriever order (shortlist first; the top-up)
    shortlist: list[str]
    banned: set[str]


@dataclass
class GeneratedList:
    """One generated list and how it came about."""

    items: list[str]
    proposals: list[str]  # titles as the LLM wrote them
    grounding: GroundingResult
    generation: Generation | None
    filled: int  # items topped up from the retriever
    shortlist: list[str] = field(default_factory=list)  # what the LLM could pick from
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
        language: Literal["en", "zh"] | None = None,
        exclude: Sequence[str] = (),
    ) -> GeneratedList:
        """``k`` new items for someone with this history (oldest first) and request.

        Args:
            history: Item IDs the user has (never recommended back).
            k: List length.
            request: Optional typed request ("a 90s animated comedy").
            liked: Recently liked item IDs (from feedback events), stressed in the prompt.
            disliked: Recently disliked item IDs: never recommended, pushed down in the
                shortlist with the items like them, named in the prompt.
            language: Language of the instruction (default: the config's).
            exclude: Items that must not be recommended for other reasons (e.g. deleted
                from the catalog); unlike dislikes they are not named in the prompt.
        """
        t0 = time.perf_counter()
        ask = self._prepare(
            GenerateRequest(history, k, request, liked, disliked, language, exclude)
        )
        generation: Generation | GenerationError
        try:
            generation = self.backend.generate(
                ask.messages,
                max_tokens=self.config.max_tokens,
                temperature=0.0,
                grammar=ask.grammar,
            )
        except GenerationError as e:
            generation = e
        return self._finish(ask, generation, time.perf_counter() - t0)

    def generate_many(self, requests: Sequence[GenerateRequest]) -> list[GeneratedList]:
        """One list per request, as `generate` makes it, with the LLM asked for all at once.

        Where the backend decodes several chats in one pass (llama.cpp), the shared
        instructions are read once and the answers decoded together, held to the shortlist
        numbers token by token; otherwise each is one `generate` call. ``seconds`` of each
        list is the whole batch's share per request.
        """
        if not requests:
            return []
        t0 = time.perf_counter()
        asks = [self._prepare(r) for r in requests]
        batched = [j for j, a in enumerate(asks) if a.order is not None]
        answers: dict[int, Generation | GenerationError] = {}
        orders = {asks[j].order for j in batched}
        for spec in orders:  # one pass per answer shape (usually one: same n and k)
            group = [j for j in batched if asks[j].order == spec]
            got = generate_many(
                self.backend,
                [asks[j].messages for j in group],
                max_tokens=self.config.max_tokens,
                order=spec,
            )
            answers.update(zip(group, got, strict=True))
        for j, ask in enumerate(asks):
            if j not in answers:
                try:
                    answers[j] = self.backend.generate(
                        ask.messages,
                        max_tokens=self.config.max_tokens,
                        temperature=0.0,
                        grammar=ask.grammar,
                    )
                except GenerationError as e:
                    answers[j] = e
        share = (time.perf_counter() - t0) / len(asks)
        return [self._finish(a, answers[j], share) for j, a in enumerate(asks)]

    def _prepare(self, req: GenerateRequest) -> _Ask:
        """The prompt, grammar and grounding limits for one request."""
        cfg = self.config
        lang = req.language or cfg.language
        k = req.k
        known = [h for h in req.history if h in self.items.index]
        liked = [i for i in req.liked if i in self.items.index]
        disliked = [i for i in req.disliked if i in self.items.index]
        banned = set(known) | set(liked) | set(disliked) | {str(i) for i in req.exclude}
        shortlist_k = max(cfg.n_candidates, k)
        order = self._shortlist_order(known, liked, disliked, req.request, shortlist_k, banned)
        shortlist = order[:shortlist_k]
        feedback = Feedback(
            liked=[self.catalog.title(i) for i in liked if i in self.catalog],
            disliked=[self.catalog.title(i) for i in disliked if i in self.catalog],
        )
        candidates = item_texts(self.items, shortlist) if cfg.mode == "candidates" else None
        history_texts = (
            item_texts(self.items, known[-cfg.history_items :]) if cfg.history_items else []
        )
        numbers = candidates is not None and cfg.output == "numbers"
        grammar, spec = None, None
        if numbers and candidates:
            messages = build_rerank_prompt(
                history_texts, candidates, req.request, lang, k=k, feedback=feedback
            )
            if cfg.grammar:
                spec = OrderSpec(len(candidates), min(k, len(candidates)))
                grammar = spec.gbnf()
        else:
            messages = build_recommend_prompt(
                history_texts, req.request, feedback, k, candidates, language=lang
            )
            if candidates and cfg.grammar:
                grammar = title_grammar([c.title for c in candidates], k)
        return _Ask(
            k=k,
            messages=messages,
            grammar=grammar,
            order=spec,
            candidates=candidates if numbers else None,
            ranked=order,
            shortlist=shortlist,
            banned=banned,
        )

    def _finish(
        self, ask: _Ask, generation: Generation | GenerationError, seconds: float
    ) -> GeneratedList:
        """Parse the answer, ground it, top it up."""
        cfg, k = self.config, ask.k
        problems: list[str] = []
        proposals: list[str] = []
        if isinstance(generation, GenerationError):
            problems.append(f"backend: {generation}")
            gen: Generation | None = None
        else:
            gen = generation
            if ask.candidates:
                proposals, problems = _picked_titles(gen.text, ask.candidates, k)
            else:
                parsed = parse_items(gen.text, max_items=3 * k)
                proposals, problems = parsed.titles, list(parsed.problems)
        allowed = set(ask.shortlist) if cfg.mode == "candidates" else None
        grounded = (
            ground(proposals, self.catalog, ask.banned, k, allowed=allowed)
            if proposals
            else (GroundingResult())
        )
        items = list(grounded.items)
        taken = set(items)
        for iid in ask.ranked:  # top up from the retriever: always k real, unseen items
            if len(items) >= k:
                break
            if iid not in taken:
                items.append(iid)
                taken.add(iid)
        return GeneratedList(
            items=items,
            proposals=proposals,
            grounding=grounded,
            generation=gen,
            filled=len(items) - len(grounded.items),
            shortlist=ask.shortlist if cfg.mode == "candidates" else [],
            problems=problems,
            seconds=seconds,
        )

    def _shortlist_order(
        self,
        known: list[str],
        liked: list[str],
        disliked: list[str],
        request: str | None,
        n: int,
        exclude: set[str],
    ) -> list[str]:
        """Unseen items best first: the retriever queried with history + likes, then pushed
        down by their similarity to disliked items (so a dislike changes the next list)."""
        query = known + [i for i in liked if i not in set(known)]
        extra = len(exclude) + (2 * n if disliked else 0)
        ranked = self.retriever.recommend_for(history=query, request=request, k=n + extra)
        ids = [str(i) for i in ranked["item_id"]]
        scores = np.asarray(ranked["score"], dtype=np.float64)
        keep = [j for j, i in enumerate(ids) if i not in exclude]
        ids, scores = [ids[j] for j in keep], scores[keep]
        vectors = getattr(self.retriever, "item_vectors", None)
        if disliked and vectors is not None and self.config.dislike_penalty > 0 and ids:
            pos = self.retriever.items.index(ids + disliked, "item")
            cand, bad = vectors[pos[: len(ids)]], vectors[pos[len(ids) :]]
            penalty = (cand @ bad.T).max(axis=1)
            scores = scores - self.config.dislike_penalty * penalty
            ids = [ids[j] for j in np.argsort(-scores, kind="stable")]
        return ids


def _picked_titles(
    text: str, candidates: Sequence[ItemText], k: int
) -> tuple[list[str], list[str]]:
    """Titles of the shortlist numbers the model wrote, best first (at most ``k``).

    Only the numbers the model actually wrote count (not the ones `parse_order_result`
    appends), so a list the model left short is topped up by the caller, in retriever order.
    """
    result = parse_order_result(text, len(candidates))
    picked = result.order[: min(result.given, k)]
    problems = [p for p in result.problems if "appended in their original order" not in p]
    return [candidates[i].title for i in picked], problems
