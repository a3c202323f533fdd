"""A loaded model plus what happened since it was fitted: online events, catalog edits.

Every acknowledged event updates the user's overlay before their next request:

- the item joins their seen-item filter (any event type, dislikes included);
- for models with item vectors (``text``, ``two-tower``), the event moves the user's interest
  vector: scores become the weighted mean of the fitted scores (weight = fitted history
  size) and the cosine to each event's item (weight per event type, negative for dislikes
  and low ratings). This is the score-level form of adding the item to the history the
  model pools, so no refit is needed.

Models without item vectors keep their fitted scores and get the seen-item filter only;
their next retrain folds the events in.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmrec.errors import InputError, UnknownIdError
from lmrec.models.base import Recommender
from lmrec.serve.storage import EventRecord, user_hash

#: How much one event of each type moves the interest vector (ratings: see `event_weight`).
EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.25,
    "click": 0.5,
    "like": 1.0,
    "purchase": 1.0,
    "dislike": -1.0,
}
RATING_MIDPOINT = 3.0
PROFILE_CACHE = 4096


def event_weight(type_: str, value: float | None) -> float:
    """Signed weight of one event: ratings map 1..5 to -1..+1 around the midpoint."""
    if type_ == "rating":
        return float(np.clip(((value or RATING_MIDPOINT) - RATING_MIDPOINT) / 2.0, -1.0, 1.0))
    base = EVENT_WEIGHTS.get(type_, 0.0)
    if value is not None and type_ != "dislike" and 0 < value <= 10:
        base *= value  # an explicit weight (e.g. watch fraction) scales the signal
    return base


@dataclass
class Overlay:
    """What a user did since the model was fitted."""

    seen: set[int] = field(default_factory=set)
    delta: np.ndarray | None = None  # sum of weight * item vector
    weight: float = 0.0  # sum of |weight|
    forgotten: bool = False  # ignore the fitted history (right to be forgotten)


class OnlineModel:
    """Thread-safe serving view of one fitted model.

    Args:
        model: A fitted or loaded recommender.
        version: A label for this model build (shown in responses and metrics).
        events_seq: Store sequence number the model was trained up to; later events are
            replayed into overlays.
    """

    def __init__(self, model: Recommender, version: str, events_seq: int = 0) -> None:
        self.model = model
        self.version = version
        self.trained_seq = events_seq
        self.applied_seq = events_seq
        self.lock = threading.RLock()
        self.overlays: dict[str, Overlay] = {}
        self.deleted: set[int] = set()
        self._profile_scores: OrderedDict[str, np.ndarray] = OrderedDict()
        self._refresh()

    # -- derived arrays ------------------------------------------------------------------
    def _refresh(self) -> None:
        users, items, seen = self.model._check()
        self.users, self.items, self.seen = users, items, seen
        self.history_len = np.diff(seen.indptr)
        vecs = getattr(self.model, "item_vectors", None)
        self.vectors: np.ndarray | None = None
        if isinstance(vecs, np.ndarray) and vecs.ndim == 2 and len(vecs) == len(items):
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            self.vectors = (vecs / np.maximum(norms, 1e-12)).astype(np.float32)
        pop = self.model.popularity()
        self.popularity = (pop / max(float(pop.max()), 1.0)).astype(np.float32)
        table = self.model.item_table
        self.titles: np.ndarray | None = (
            table["title"].astype(str).to_numpy(dtype=object)
            if table is not None and "title" in table
            else None
        )

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def online_vectors(self) -> bool:
        """Whether events move interest vectors (else only the seen filter)."""
        return self.vectors is not None

    @property
    def can_add_items(self) -> bool:
        return callable(getattr(self.model, "add_items", None))

    # -- catalog -------------------------------------------------------------------------
    def has_item(self, item_id: str) -> bool:
        """Known to the model and not deleted."""
        idx = self.items.lookup([item_id])[0]
        return bool(idx >= 0 and idx not in self.deleted)

    def title(self, idx: int) -> str | None:
        if self.titles is None or idx >= len(self.titles):
            return None
        return str(self.titles[idx])

    def add_items(self, table: pd.DataFrame) -> None:
        """Embed and add (or replace) items; recommendable on the next request."""
        if not self.can_add_items:
            raise InputError(
                f"model '{self.name}' cannot add items without retraining; serve a 'text' or "
                "'two-tower' model, or add the item and run `lmrec retrain`"
            )
        with self.lock:
            self.model.add_items(table)  # type: ignore[attr-defined]
            self._refresh()
            for item_id in table.index:
                self.deleted.discard(int(self.items.lookup([item_id])[0]))

    def delete_item(self, item_id: str) -> bool:
        """Stop recommending ``item_id``; False when the model never had it."""
        idx = int(self.items.lookup([item_id])[0])
        if idx < 0:
            return False
        with self.lock:
            self.deleted.add(idx)
        return True

    # -- events --------------------------------------------------------------------------
    def apply(self, events: list[EventRecord]) -> None:
        """Fold acknowledged events into overlays (events for unknown items are skipped)."""
        with self.lock:
            for ev in events:
                if ev.seq is not None and ev.seq <= self.trained_seq:
                    continue  # already in the fitted model
                idx = int(self.items.lookup([ev.item_id])[0])
                ov = self.overlays.setdefault(ev.user_id, Overlay())
                if ev.seq is not None:
                    self.applied_seq = max(self.applied_seq, ev.seq)
                if idx < 0:
                    continue
                ov.seen.add(idx)
                w = event_weight(ev.type, ev.value)
                if self.vectors is not None and w != 0.0:
                    step = w * self.vectors[idx]
                    ov.delta = step if ov.delta is None else ov.delta + step
                    ov.weight += abs(w)

    def forget(self, user_id: str) -> None:
        """Drop the user's overlay and hide their fitted history until the next retrain."""
        with self.lock:
            self.overlays[user_id] = Overlay(forgotten=True)
            self._profile_scores.pop(user_id, None)

    def forget_hashes(self, hashes: set[str]) -> None:
        """Hide fitted histories of users the store says were forgotten."""
        if not hashes:
            return
        for user_id in self.users.ids:
            if user_hash(str(user_id)) in hashes:
                self.forget(str(user_id))

    # -- scoring -------------------------------------------------------------------------
    def _profile(self, user_id: str, text: str) -> np.ndarray | None:
        key = f"{user_id}\x00{text}"
        with self.lock:
            hit = self._profile_scores.get(key)
            if hit is not None:
                self._profile_scores.move_to_end(key)
                return hit
        recommend_for = getattr(self.model, "recommend_for", None)
        if recommend_for is None:
            return None
        frame = recommend_for(text=text, k=len(self.items))
        scores = np.full(len(self.items), -1.0, dtype=np.float32)
        scores[self.items.index(frame["item_id"], "item")] = frame["score"].to_numpy()
        with self.lock:
            self._profile_scores[key] = scores
            while len(self._profile_scores) > PROFILE_CACHE:
                self._profile_scores.popitem(last=False)
        return scores

    def scores(
        self, user_id: str, profile_text: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Scores over all items, the exclusion mask, and whether this is a cold start."""
        with self.lock:
            ov = self.overlays.get(user_id)
            seen = set(ov.seen) if ov else set()
            delta = None if ov is None or ov.delta is None else ov.delta.copy()
            weight = ov.weight if ov else 0.0
            forgotten = bool(ov and ov.forgotten)
            uidx = -1 if forgotten else int(self.users.lookup([user_id])[0])
            n0 = int(self.history_len[uidx]) if uidx >= 0 else 0
            if n0 or (uidx >= 0 and self.model.handles_cold_users):
                base = self.model.score_idx(np.array([uidx]))[0].astype(np.float32)
            else:
                base = None
            exclude = np.zeros(len(self.items), dtype=bool)
            if uidx >= 0:
                exclude[self.seen.indices[self.seen.indptr[uidx] : self.seen.indptr[uidx + 1]]] = (
                    True
                )
            vectors = self.vectors
        cold = base is None
        if base is None and profile_text:
            base = self._profile(user_id, profile_text)
            n0 = 1 if base is not None else 0
        if delta is not None and vectors is not None:
            sims = delta @ vectors.T
            base = sims / max(weight, 1e-6) if base is None else (n0 * base + sims) / (n0 + weight)
            cold = False if seen else cold
        if base is None:
            base = self.popularity.copy()
        exclude[list(seen)] = True
        return np.asarray(base, dtype=np.float32), exclude, cold

    def recommend(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool = True,
        profile_text: str | None = None,
    ) -> tuple[list[tuple[str, float, str | None]], bool]:
        """Top-k ``(item_id, score, title)`` and the cold-start flag."""
        scores, exclude, cold = self.scores(user_id, profile_text)
        scores = scores.copy()
        if exclude_seen:
            scores[exclude] = -np.inf
        with self.lock:
            if self.deleted:
                scores[list(self.deleted)] = -np.inf
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        ids = self.items.to_ids(top)
        return [
            (str(i), float(scores[t]), self.title(int(t))) for i, t in zip(ids, top, strict=True)
        ], cold

    def similar(self, item_id: str, k: int) -> list[tuple[str, float, str | None]]:
        """Items nearest to ``item_id`` (the model's own notion when it has one)."""
        if not self.has_item(item_id):
            raise UnknownIdError("item", [item_id])
        similar_items = getattr(self.model, "similar_items", None)
        if similar_items is not None:
            frame = similar_items(item_id, k=k + len(self.deleted))
        elif self.vectors is not None:
            idx = int(self.items.lookup([item_id])[0])
            sims = self.vectors @ self.vectors[idx]
            sims[idx] = -np.inf
            top = np.argsort(-sims)[: k + len(self.deleted)]
            frame = pd.DataFrame({"item_id": self.items.to_ids(top), "score": sims[top]})
        else:
            raise InputError(f"model '{self.name}' has no item similarity")
        out = []
        for iid, score in zip(frame["item_id"], frame["score"], strict=True):
            idx = int(self.items.lookup([iid])[0])
            if idx in self.deleted:
                continue
            out.append((str(iid), float(score), self.title(idx)))
        return out[:k]

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "items": len(self.items),
            "users": len(self.users),
            "online_vectors": self.online_vectors,
            "trained_seq": self.trained_seq,
            "applied_seq": self.applied_seq,
        }
