"""Retraining from stored events and hot-swapping the model under live traffic."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from live import fit_text_model, live_server

from lmrec.models.base import Recommender
from lmrec.serve.retrain import retrain, training_data
from lmrec.serve.state import trained_seq, wait_for
from lmrec.serve.storage import Store, user_hash


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_text_model(tmp_path_factory.mktemp("model") / "text")


def ev(user: str, item: str, type_: str = "like") -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": type_}


def test_training_data_folds_in_events_forgets_users_and_catalog_edits(
    base_model: Path, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    from lmrec.serve.storage import EventRecord

    def rec(user: str, item: str, type_: str, value: float | None = None) -> EventRecord:
        from datetime import UTC, datetime

        return EventRecord(uuid.uuid4().hex, user, item, type_, datetime.now(UTC), value)

    store.add_events(
        [
            rec("u1", "m5", "like"),
            rec("new", "m8", "click"),
            rec("u2", "m5", "dislike"),  # disliked after the fitted like: dropped
            rec("u2", "m7", "rating", 1.0),  # a low rating is not an interaction
        ]
    )
    store.delete_user("u4")
    store.add_events([rec("u4", "m1", "like")])  # back after being forgotten: a fresh user
    store.upsert_item("m50", {"title": "Space Opera", "genres": ["Sci-Fi"]})
    store.delete_item("m13")
    model = Recommender.load(base_model)
    td = training_data(store, model)
    data, seq, n_events = td.dataset, td.events_seq, td.n_events
    pairs = set(zip(data.interactions["user_id"], data.interactions["item_id"], strict=True))
    assert ("u1", "m5") in pairs and ("new", "m8") in pairs
    assert ("u2", "m5") not in pairs and ("u2", "m7") not in pairs and ("u2", "m6") in pairs
    assert {i for u, i in pairs if u == "u4"} == {"m1"}  # old base rows gone, new event kept
    assert td.forgotten == {user_hash("u4")}
    assert "m50" in data.items.index and "m13" not in data.items.index
    assert not any(i == "m13" for _, i in pairs)
    assert seq == store.max_seq() and n_events == 5
    store.close()


def test_retrain_hot_swaps_with_no_failed_requests(base_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with live_server(model_dir, db) as server, server.client() as http:
        r = http.post("/events", json={"events": [ev("fresh", "m8"), ev("fresh", "m9")]})
        assert r.json()["accepted"] == 2
        http.delete("/users/u4")
        version = http.get("/ready").json()["detail"]["version"]

        failures: list[str] = []
        served = 0
        stop = threading.Event()

        def hammer() -> None:
            nonlocal served
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set():
                    for user in ("u1", "fresh", "u4"):
                        resp = c.get(f"/users/{user}/recommendations", params={"k": 5})
                        served += 1
                        if resp.status_code != 200:
                            failures.append(f"{resp.status_code} {resp.text[:100]}")

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        store = Store(db)
        report = retrain(store, model_dir)
        # an event acknowledged after the retrain read the store must survive the swap
        late = ev("fresh", "m10")
        assert http.post("/events", json=late).json()["accepted"] == 1
        at_swap = served
        assert http.post("/admin/reload").json()["status"] == "swapped"
        assert wait_for(lambda: served > at_swap + 30, timeout_s=30)  # traffic after the swap
        stop.set()
        for t in threads:
            t.join()
        assert failures == [] and served > 10
        assert report.n_events == 2 and trained_seq(model_dir) == report.events_seq
        ready = http.get("/ready").json()["detail"]
        assert ready["version"] != version and ready["trained_seq"] == report.events_seq
        # "fresh" is now a fitted user, u4 is gone from the model, the late event still counts
        model = Recommender.load(model_dir)
        assert model.users is not None and "fresh" in model.users and "u4" not in model.users
        ids = [i["item_id"] for i in http.get("/users/fresh/recommendations").json()["items"]]
        assert not {"m8", "m9", "m10"} & set(ids)
        store.close()


def test_watcher_picks_up_a_retrained_model(base_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with live_server(model_dir, db, reload_interval_s=0.2) as server, server.client() as http:
        http.post("/events", json=ev("w", "m1"))
        store = Store(db)
        retrain(store, model_dir)
        store.close()
        assert wait_for(
            lambda: http.get("/ready").json()["detail"]["trained_seq"] == 1, timeout_s=20
        )
        assert server.app.state.serving.swap_count == 1


def test_scheduled_retrain_swaps_in_new_events(base_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with (
        live_server(model_dir, db, retrain_interval_s=0.5) as server,
        server.client() as http,
    ):
        http.post("/events", json=ev("sched", "m2"))
        assert wait_for(lambda: server.app.state.serving.swap_count >= 1, timeout_s=60)
        model = Recommender.load(model_dir)
        assert model.users is not None and "sched" in model.users
