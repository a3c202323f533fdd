"""The serving state: the current model (hot-swappable), the store, and recent lists."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lmrec.models.base import Recommender
from lmrec.serve.online import OnlineModel
from lmrec.serve.storage import EventRecord, IngestResult, Store

log = logging.getLogger("lmrec.serve")

#: Written next to a retrained model: the store sequence number it was trained up to.
SERVING_FILE = "serving.json"
RECENT_LISTS = 10_000


def model_stamp(model_dir: Path) -> tuple[int, int] | None:
    """Identity of the model on disk (changes when `lmrec retrain` swaps it in)."""
    try:
        st = (model_dir / "model.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def serving_info(model_dir: Path) -> dict[str, Any]:
    """What `lmrec retrain` recorded next to the model (empty for `lmrec fit` models)."""
    path = model_dir / SERVING_FILE
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def trained_seq(model_dir: Path) -> int:
    """The store sequence number ``model_dir`` was trained up to (0 for `lmrec fit` models)."""
    return int(serving_info(model_dir).get("events_seq", 0))


@dataclass(frozen=True)
class ServedList:
    """A list handed out, kept so later calls (explanations, attribution) can find it."""

    recommendation_id: str
    user_id: str
    items: tuple[str, ...]
    model_version: str
    created: datetime


class ServingState:
    """Holds the store and the current `OnlineModel`; swaps in retrained models.

    Ingestion and swapping share one lock, so an event acknowledged while a new model loads
    is replayed into it before it goes live: no acknowledged event is missed.
    """

    def __init__(self, store: Store, model_dir: Path) -> None:
        self.store = store
        self.model_dir = model_dir
        self.ingest_lock = threading.Lock()
        self.swap_count = 0
        self.lists: OrderedDict[str, ServedList] = OrderedDict()
        self._lists_lock = threading.Lock()
        self._stamp = model_stamp(model_dir)
        self.current = self._build(Recommender.load(model_dir))
        with self.ingest_lock:
            self._catch_up(self.current)

    # -- model lifecycle -----------------------------------------------------------------
    def _build(self, model: Recommender) -> OnlineModel:
        info = serving_info(self.model_dir)
        seq = int(info.get("events_seq", 0))
        # name, store position it was trained to, and when it was loaded
        loaded = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        version = f"{model.name}:{seq}@{loaded}"
        online = OnlineModel(model, version, events_seq=seq)
        self._apply_catalog(online)
        # users forgotten after this model was trained: hide their fitted history
        online.forget_hashes(self.store.forgotten_users() - set(info.get("forgotten", [])))
        return online

    def _apply_catalog(self, online: OnlineModel) -> None:
        """Replay catalog edits made through the service since the model was fitted."""
        records = self.store.items()
        live = [r for r in records if not r.deleted]
        if live and online.can_add_items:
            missing = [r for r in live if not online.has_item(r.item_id)]
            if missing:
                online.add_items(item_frame([(r.item_id, r.fields) for r in missing]))
        for r in records:
            if r.deleted:
                online.delete_item(r.item_id)

    def _catch_up(self, online: OnlineModel) -> None:
        """Apply every stored event after what ``online`` already holds (lock held)."""
        while True:
            batch = self.store.events_since(online.applied_seq, limit=50_000)
            if not batch:
                return
            online.apply(batch)
            last = batch[-1].seq or 0
            online.applied_seq = max(online.applied_seq, last)

    def reload(self, force: bool = False) -> bool:
        """Load the model on disk if it changed (or ``force``); True when swapped."""
        stamp = model_stamp(self.model_dir)
        if stamp is None or (stamp == self._stamp and not force):
            return False
        try:
            fresh = self._build(Recommender.load(self.model_dir))
        except Exception:  # a retrain may be mid-swap: keep serving, try again later
            log.exception("could not load %s; keeping the current model", self.model_dir)
            return False
        if model_stamp(self.model_dir) != stamp:
            return False  # changed while loading: the next check picks up the newest
        with self.ingest_lock:
            self._catch_up(fresh)
            self.current = fresh  # one reference swap: in-flight requests keep the old one
            self._stamp = stamp
            self.swap_count += 1
        log.info("serving %s", fresh.version)
        return True

    # -- events --------------------------------------------------------------------------
    def ingest(self, events: list[EventRecord]) -> IngestResult:
        """Store events durably, then fold the new ones into the live overlays."""
        with self.ingest_lock:
            result = self.store.add_events(events)
            if result.accepted:
                # a model loaded later replays these from the store by sequence number
                fresh = set(result.accepted)
                new = []
                for ev in events:
                    if ev.event_id in fresh:
                        new.append(ev)
                        fresh.discard(ev.event_id)  # the first copy in a batch is the one stored
                self.current.apply(new)
        return result

    def forget_user(self, user_id: str) -> int:
        with self.ingest_lock:
            deleted = self.store.delete_user(user_id)
            self.current.forget(user_id)
        with self._lists_lock:
            for rid in [r for r, s in self.lists.items() if s.user_id == user_id]:
                del self.lists[rid]
        return deleted

    # -- lists ---------------------------------------------------------------------------
    def remember(self, user_id: str, items: list[str]) -> str:
        rid = uuid.uuid4().hex
        served = ServedList(rid, user_id, tuple(items), self.current.version, datetime.now(UTC))
        with self._lists_lock:
            self.lists[rid] = served
            while len(self.lists) > RECENT_LISTS:
                self.lists.popitem(last=False)
        return rid

    def served(self, recommendation_id: str) -> ServedList | None:
        with self._lists_lock:
            return self.lists.get(recommendation_id)


def item_frame(rows: list[tuple[str, dict[str, object]]]) -> pd.DataFrame:
    """Item table rows for `add_items` from stored item fields (attributes flattened)."""
    records = []
    for item_id, fields in rows:
        rec: dict[str, object] = {"item_id": item_id}
        for key, value in fields.items():
            if key == "attributes" and isinstance(value, dict):
                rec.update({str(k): v for k, v in value.items()})
            elif key == "genres" and isinstance(value, list):
                rec["genres"] = "|".join(str(g) for g in value)
            elif value is not None:
                rec[key] = value
        records.append(rec)
    return pd.DataFrame(records).set_index("item_id")


class Watcher(threading.Thread):
    """Background thread: reload the model when it changes on disk."""

    def __init__(self, state: ServingState, interval_s: float) -> None:
        super().__init__(name="lmrec-model-watcher", daemon=True)
        self.state = state
        self.interval_s = interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.state.reload()
            except Exception:  # never let the watcher die
                log.exception("model reload failed")

    def stop(self) -> None:
        self.stop_event.set()


def wait_for(predicate: object, timeout_s: float) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes (for tests and scripts)."""
    assert callable(predicate)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
