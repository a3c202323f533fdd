"""The deterministic, model-free backend: answers from the prompt's ``<data>`` block.

Tests and deployments without an LLM use it; `FallbackBackend` answers with it when a model
fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from lmrec.llm.types import Generation, GenerationError, Message

_NUMBERED = re.compile(r"\d{1,4}\. ")


class TemplateBackend:
    """Deterministic, model-free output derived from the data in the prompt.

    The data block is the JSON between the first ``<data>`` and the last ``</data>`` of the
    last user message that has one (taking the last ``</data>`` keeps a title that contains
    the tag from cutting the JSON short). Then:

    * if the JSON is an object with a list ``candidates`` whose entries carry a ``number``
      (objects with a ``number`` field, or strings ``"3. title ..."``: rerank and pick
      prompts), the output is ``{"order": [...]}`` with the numbers of the
      first ``k`` candidates (JSON field ``k``, default all), in order: the input order kept;
    * else if it has a list ``candidates``, the output is
      ``{"items": [{"title": t}, ...]}`` with the titles of the first ``k`` candidates (JSON
      field ``k``, default 10) that are objects with a string ``title``, in order;
    * else if it has a key ``evidence``, the output is ``{"text": ""}``: an empty text,
      meaning "use the template sentence";
    * else (or with no data block at all) the output is ``{}``.

    ``max_tokens``, ``temperature`` and ``grammar`` are ignored.

    Raises:
        GenerationError: If a data block is not valid JSON, or ``k`` is not a
            non-negative integer.
    """

    name = "template"

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """Return the template output for ``messages`` (see the class docstring)."""
        start = time.perf_counter()
        text = json.dumps(self._output(messages), ensure_ascii=False)
        return Generation(text=text, backend=self.name, seconds=time.perf_counter() - start)

    @staticmethod
    def _output(messages: Sequence[Message]) -> dict[str, Any]:
        for m in reversed(messages):
            begin, end = m.content.find("<data>"), m.content.rfind("</data>")
            if m.role == "user" and 0 <= begin < end:
                raw = m.content[begin + len("<data>") : end]
                break
        else:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise GenerationError(f"template: the <data> block is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            return {}
        if isinstance(data.get("candidates"), list):
            cands = data["candidates"]
            numbered = [
                c["number"] if isinstance(c, dict) else int(c.split(".", 1)[0])
                for c in cands
                if (isinstance(c, dict) and "number" in c)
                or (isinstance(c, str) and _NUMBERED.match(c))
            ]
            k = data.get("k", len(numbered) if numbered else 10)
            if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                raise GenerationError(f"template: k must be a non-negative integer, got {k!r}")
            if numbered:
                return {"order": numbered[:k]}
            titles = [
                c["title"]
                for c in data["candidates"]
                if isinstance(c, dict) and isinstance(c.get("title"), str)
            ]
            return {"items": [{"title": t} for t in titles[:k]]}
        if "evidence" in data:
            return {"text": ""}
        return {}


__all__ = ["TemplateBackend"]
