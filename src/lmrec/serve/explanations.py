"""Explanations for served lists, built lazily: lists stay fast, explanations come on demand.

The evidence builder (co-occurrence, vectors, vocabulary) is built once per served model and
catalog size, on the first explanation asked for, and rebuilt after a hot swap or new items.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from lmrec.llm.types import Backend
from lmrec.serve.online import OnlineModel


class Explainer:
    """Evidence-first explanations (the LLM drafts, the faithfulness check decides)."""

    def __init__(self, online: OnlineModel, backend: Backend | None) -> None:
        from lmrec.llm.evidence import EvidenceBuilder
        from lmrec.llm.explain import catalog_vocabulary

        table = online.model.item_table
        if table is None or "title" not in table.columns:
            raise ValueError("the served model has no item titles to explain with")
        self.online = online
        self.key = (id(online), len(online.items))
        self.backend = backend
        vectors = getattr(online.model, "item_vectors", None)
        self.builder = EvidenceBuilder(
            table, online.model.fitted_pairs(), vectors, like_threshold=None
        )
        self.vocabulary = catalog_vocabulary(table)

    def explain(
        self,
        user_id: str,
        item_ids: list[str],
        language: Literal["en", "zh"] = "en",
        request: str | None = None,
    ) -> list[dict[str, Any]]:
        """One explanation per item, with the evidence it rests on."""
        from lmrec.llm.explain import explain_list

        history = self.history(user_id)
        out = explain_list(
            self.builder,
            None,
            item_ids,
            self.backend,
            language,
            self.vocabulary,
            request=request,
            history=history,
        )
        return [
            {
                "item_id": iid,
                "explanation": ex.text,
                "source": ex.source,
                "evidence": ex.evidence.to_prompt_data(language),
            }
            for iid, ex in zip(item_ids, out, strict=True)
        ]

    def history(self, user_id: str) -> list[str]:
        """What the user has: fitted history (unless forgotten) plus online events."""
        online = self.online
        ov = online.overlays.get(user_id)
        idx: list[int] = list(ov.seen) if ov else []
        uidx = -1 if ov is not None and ov.forgotten else int(online.users.lookup([user_id])[0])
        if uidx >= 0:
            row = online.seen.indices[online.seen.indptr[uidx] : online.seen.indptr[uidx + 1]]
            idx = [int(i) for i in row] + idx
        known = [i for i in dict.fromkeys(idx) if i < len(self.builder.items)]
        return [str(i) for i in online.items.to_ids(known)]


class Explainers:
    """One `Explainer` per served model version, made on first use."""

    def __init__(self, backend: Backend | None) -> None:
        self.backend = backend
        self._current: Explainer | None = None
        self._lock = threading.Lock()

    def for_model(self, online: OnlineModel) -> Explainer:
        key = (id(online), len(online.items))
        with self._lock:
            if self._current is None or self._current.key != key:
                self._current = Explainer(online, self.backend)
            return self._current
