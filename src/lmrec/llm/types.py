"""Types shared by the LLM backends, prompts, grounding and explanations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from lmrec.errors import LmrecError

if TYPE_CHECKING:
    from lmrec.llm.constrain import OrderSpec

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat message. Instructions go in ``system``; untrusted data only in ``user``."""

    role: Role
    content: str


@dataclass(frozen=True)
class Generation:
    """What a backend produced, and what it cost."""

    text: str
    backend: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    fallback: bool = False  # produced by a fallback after the primary backend failed
    error: str | None = None  # why the primary backend failed, when it did


class GenerationError(LmrecError):
    """A backend failed (unreachable, timed out, refused); the message says which and why."""


class Backend(Protocol):
    """A text generator behind one call; every backend must return or raise within its timeout."""

    name: str

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """Complete the chat; ``grammar`` (GBNF) constrains decoding where supported."""
        ...


def generate_many(
    backend: Backend,
    conversations: Sequence[Sequence[Message]],
    *,
    max_tokens: int = 256,
    order: OrderSpec | None = None,
) -> list[Generation | GenerationError]:
    """Greedy replies to several chats: in one pass where the backend can (its own
    ``generate_many``), else one `Backend.generate` each. A failure is returned in its
    conversation's place, not raised, so one bad reply does not cost the others.

    With ``order``, every reply is asked to be an ``{"order": [...]}`` answer: held to it
    token by token in one pass, by `OrderSpec.gbnf` one at a time (where the backend takes a
    grammar); the caller parses it either way.
    """
    many = getattr(backend, "generate_many", None)
    if many is not None and len(conversations) > 1:
        try:
            if order is None:
                return list(many(conversations, max_tokens=max_tokens))
            return list(many(conversations, max_tokens=max_tokens, order=order))
        except GenerationError as e:
            return [e] * len(conversations)
    grammar = None if order is None else order.gbnf()
    out: list[Generation | GenerationError] = []
    for messages in conversations:
        try:
            out.append(
                backend.generate(messages, max_tokens=max_tokens, temperature=0.0, grammar=grammar)
            )
        except GenerationError as e:
            out.append(e)
    return out
