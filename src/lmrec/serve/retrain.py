"""Rebuild a served model from its fitted data plus the stored events, then swap it in.

The new model is written to a staging folder beside the served one and moved into place
with two renames; a running server notices the change (or is told through
``POST /admin/reload``) and swaps models between requests.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, TIMESTAMP, USER, Dataset
from lmrec.models.base import Recommender, create_model
from lmrec.serve.online import RATING_MIDPOINT
from lmrec.serve.state import SERVING_FILE, item_frame
from lmrec.serve.storage import EventRecord, Store, user_hash

#: Event types that count as an interaction when retraining (ratings: at or above midpoint).
POSITIVE = {"view", "click", "like", "purchase"}


@dataclass(frozen=True)
class RetrainReport:
    """What one retrain did."""

    model_dir: Path
    events_seq: int
    n_interactions: int
    n_events: int
    n_forgotten_users: int
    fit_seconds: float


def base_interactions(model: Recommender) -> pd.DataFrame:
    """The (user, item) pairs the model was fitted on, at time 0 (before any stored event)."""
    pairs = model.fitted_pairs()
    pairs[TIMESTAMP] = np.zeros(len(pairs), dtype=np.float64)
    return pairs


def event_interactions(events: list[EventRecord]) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """Positive events as interactions, and the (user, item) pairs the latest event disliked."""
    last: dict[tuple[str, str], EventRecord] = {}
    rows = []
    for ev in events:
        pair = (ev.user_id, ev.item_id)
        last[pair] = ev
        positive = ev.type in POSITIVE or (
            ev.type == "rating" and (ev.value or 0.0) >= RATING_MIDPOINT
        )
        if positive:
            rows.append((ev.user_id, ev.item_id, ev.ts.timestamp()))
    negative = {
        pair
        for pair, ev in last.items()
        if ev.type == "dislike" or (ev.type == "rating" and (ev.value or 0.0) < RATING_MIDPOINT)
    }
    frame = pd.DataFrame(rows, columns=[USER, ITEM, TIMESTAMP])
    return frame, negative


@dataclass(frozen=True)
class TrainingData:
    """What a retrain fits on."""

    dataset: Dataset
    events_seq: int  # the store position it covers
    n_events: int
    forgotten: set[str]  # hashes of forgotten users whose base rows were dropped


def training_data(store: Store, model: Recommender, base: Dataset | None = None) -> TrainingData:
    """The model's base data plus stored events, minus forgotten users and deleted items."""
    forgotten = store.forgotten_users()  # read first: a user forgotten later is hidden online
    seq = store.max_seq()
    events = store.events_since(0)
    events = [e for e in events if (e.seq or 0) <= seq]
    inter = base.interactions.copy() if base is not None else base_interactions(model)
    if RATING in inter.columns and base is None:
        inter = inter.drop(columns=[RATING])
    new, negative = event_interactions(events)
    if forgotten:
        hashes = inter[USER].map(user_hash)
        inter = inter[~hashes.isin(forgotten)]
    merged = pd.concat([inter, new], ignore_index=True)
    if negative:
        pairs = pd.MultiIndex.from_frame(merged[[USER, ITEM]])
        merged = merged[~pairs.isin(list(negative))]
    items = base.items.copy() if base is not None else _item_table(model)
    records = store.items()
    live = [r for r in records if not r.deleted]
    if live:
        extra = item_frame([(r.item_id, r.fields) for r in live])
        items = pd.concat([items[~items.index.isin(extra.index)], extra])
    dead = {r.item_id for r in records if r.deleted}
    if dead:
        items = items[~items.index.isin(dead)]
        merged = merged[~merged[ITEM].isin(dead)]
    merged = merged.drop_duplicates([USER, ITEM], keep="last")
    dataset = Dataset.build(merged, items=items, name="retrain")
    return TrainingData(dataset, seq, len(events), forgotten)


def _item_table(model: Recommender) -> pd.DataFrame:
    _, items, _ = model._check()
    table = model.item_table
    if table is None or not len(table.columns):
        return pd.DataFrame(index=pd.Index(items.ids.astype(str), dtype=object, name=ITEM))
    return table.copy()


def retrain(store: Store, model_dir: Path, base: Dataset | None = None) -> RetrainReport:
    """Refit the model in ``model_dir`` (same class and config) and swap it in on disk.

    Args:
        store: The event store the service writes to.
        model_dir: The served model folder; replaced in place.
        base: The original training data, when at hand (keeps ratings and timestamps);
            else the model's own fitted pairs are the base.
    """
    model_dir = Path(model_dir)
    current = Recommender.load(model_dir)
    data = training_data(store, current, base)
    dataset, seq = data.dataset, data.events_seq
    t0 = time.perf_counter()
    fresh = create_model(current.name, **current.config.model_dump()).fit(dataset)
    fit_s = time.perf_counter() - t0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    staging = model_dir.parent / f".{model_dir.name}.staging-{stamp}"
    fresh.save(staging)
    (staging / SERVING_FILE).write_text(
        json.dumps(
            {
                "events_seq": seq,
                "trained_at": datetime.now(UTC).isoformat(),
                "n_interactions": dataset.n_interactions,
                "n_events": data.n_events,
                "forgotten": sorted(data.forgotten),
            },
            indent=2,
        )
    )
    _swap(model_dir, staging)
    return RetrainReport(
        model_dir=model_dir,
        events_seq=seq,
        n_interactions=dataset.n_interactions,
        n_events=data.n_events,
        n_forgotten_users=len(data.forgotten),
        fit_seconds=fit_s,
    )


def _swap(model_dir: Path, staging: Path) -> None:
    previous = model_dir.parent / f".{model_dir.name}.previous"
    if previous.exists():
        shutil.rmtree(previous)
    model_dir.rename(previous)
    staging.rename(model_dir)
    # not kept for rollback: it may hold users who asked to be forgotten
    shutil.rmtree(previous)
