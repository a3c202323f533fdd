"""LLM direct generation for the service, with feedback from the event store in the loop.

The user's latest reaction per item (like, dislike, rating, purchase) is read from the store
on every call: likes join the retrieval query and the prompt, dislikes are never recommended,
push similar shortlist items down and are named in the prompt. So a dislike sent as an event
changes the very next generated list.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lmrec.llm.generate import DirectGenerator, GenerateConfig, GeneratedList
from lmrec.llm.types import Backend
from lmrec.serve.online import OnlineModel, event_weight
from lmrec.serve.records import EventRecord

#: Events read back per call to find the user's latest reactions.
FEEDBACK_EVENTS = 200
#: A rating counts as a like or dislike when its `event_weight` is at least this far from 0
#: (with the 1..5 scale around 3: ratings >= 4 and <= 2).
RATING_VERDICT = 0.5


@dataclass
class Reactions:
    """A user's latest reaction per item, newest first."""

    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)


def reactions(events: Sequence[EventRecord]) -> Reactions:
    """Likes and dislikes from events given newest first; the latest reaction per item wins."""
    out = Reactions()
    decided: set[str] = set()
    for ev in events:
        if ev.item_id in decided:
            continue
        verdict: bool | None = None
        if ev.type in ("like", "purchase"):
            verdict = True
        elif ev.type == "dislike":
            verdict = False
        elif ev.type == "rating" and ev.value is not None:
            weight = event_weight("rating", ev.value)  # the scale online updates use
            if abs(weight) >= RATING_VERDICT:
                verdict = weight > 0
        if verdict is None:
            continue
        decided.add(ev.item_id)
        (out.liked if verdict else out.disliked).append(ev.item_id)
    return out


class Generators:
    """One `DirectGenerator` per served model version, made on first use."""

    def __init__(self, backend: Backend | None, config: GenerateConfig | None = None) -> None:
        self.backend = backend
        self.config = config or GenerateConfig()
        self._current: tuple[tuple[int, int], DirectGenerator] | None = None
        self._lock = threading.Lock()

    def for_model(self, online: OnlineModel) -> DirectGenerator:
        """The generator over ``online``'s model.

        Raises:
            ValueError: If the model cannot shortlist from a history (no ``recommend_for``),
                has no titles, or no backend is configured.
        """
        from lmrec.errors import InputError
        from lmrec.llm.backends import TemplateBackend

        key = (id(online), len(online.items))
        with self._lock:
            if self._current is None or self._current[0] != key:
                try:
                    gen = DirectGenerator(
                        online.model, self.backend or TemplateBackend(), config=self.config
                    )
                except InputError as e:
                    raise ValueError(str(e)) from None
                self._current = (key, gen)
            return self._current[1]


def generate_for(
    gen: DirectGenerator,
    history: list[str],
    events: Sequence[EventRecord],
    k: int,
    request: str | None,
    language: Literal["en", "zh"],
    exclude: Sequence[str] = (),
) -> tuple[GeneratedList, Reactions]:
    """One generated list for a user with this history and these stored events."""
    react = reactions(events)
    out = gen.generate(
        history,
        k=k,
        request=request,
        liked=react.liked,
        disliked=react.disliked,
        language=language,
        exclude=exclude,
    )
    return out, react


def generation_meta(out: GeneratedList) -> dict[str, Any]:
    """What the response says about how the list came about."""
    gen = out.generation
    return {
        "grounded": len(out.grounding.items),
        "filled": out.filled,
        "backend": gen.backend if gen is not None else "none",
        "fallback": bool(gen.fallback) if gen is not None else True,
        "problems": out.problems[:10],
        "seconds": round(out.seconds, 4),
    }
