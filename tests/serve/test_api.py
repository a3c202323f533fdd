"""The HTTP API on a real uvicorn server over loopback, with a real text model and SQLite."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live import LiveServer, fit_text_model, live_server

from lmrec.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_text_model(tmp_path_factory.mktemp("model") / "text")


@pytest.fixture
def server(base_model: Path, tmp_path: Path) -> Iterator[LiveServer]:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)  # catalog writes change the served copy only
    with live_server(model_dir, f"sqlite:///{tmp_path / 'events.db'}") as s:
        yield s


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def ev(user: str, item: str, type_: str = "like", **extra: object) -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": type_, **extra}


def rec_ids(http: httpx.Client, user: str, k: int = 10) -> list[str]:
    r = http.get(f"/users/{user}/recommendations", params={"k": k})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


# -- events --------------------------------------------------------------------------------
def test_single_event_and_batch_are_idempotent_on_event_id(http: httpx.Client) -> None:
    one = ev("u1", "m3")
    r = http.post("/events", json=one)
    assert r.json() == {"accepted": 1, "duplicates": 0, "duplicate_ids": []}
    batch = {"events": [one, ev("u1", "m5", "view"), ev("u2", "m1", "rating", value=4.5)]}
    r = http.post("/events", json=batch)
    assert r.status_code == 200
    assert r.json()["accepted"] == 2 and r.json()["duplicate_ids"] == [one["event_id"]]
    r = http.post("/events", json=batch)  # the whole batch resent: nothing counted twice
    assert r.json()["accepted"] == 0 and r.json()["duplicates"] == 3
    events = http.get("/users/u1/events").json()["events"]
    assert [e["item_id"] for e in events] == ["m5", "m3"]  # newest first
    assert events[1]["event_id"] == one["event_id"]


def test_unknown_item_rejects_the_whole_batch(http: httpx.Client) -> None:
    good, bad = ev("u2", "m1"), ev("u2", "no-such-item")
    r = http.post("/events", json={"events": [good, bad]})
    assert r.status_code == 404
    assert "no-such-item" in r.json()["detail"] and "nothing was stored" in r.json()["detail"]
    assert http.get("/users/u2/events").json()["events"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_id": "x", "user_id": "u1", "item_id": "m1", "type": "poke"}, "type"),
        ({"event_id": "x", "user_id": "u1", "item_id": "m1", "type": "rating"}, "rating"),
        ({"event_id": "x", "user_id": "", "item_id": "m1", "type": "like"}, "user_id"),
        ({"event_id": "x" * 129, "user_id": "u1", "item_id": "m1", "type": "like"}, "event_id"),
        ({"event_id": "x", "user_id": "u\x01", "item_id": "m1", "type": "like"}, "user_id"),
        (
            {"event_id": "x", "user_id": "u1", "item_id": "m1", "type": "like", "value": "a"},
            "value",
        ),
        ({"event_id": "x", "user_id": "u1", "item_id": "m1", "type": "like", "extra": 1}, "extra"),
        ({"event_id": "x", "user_id": 5, "item_id": "m1", "type": "like"}, "user_id"),
        (
            {
                "event_id": "x",
                "user_id": "u1",
                "item_id": "m1",
                "type": "like",
                "timestamp": "2999",
            },
            "timestamp",
        ),
        ({"events": []}, "events"),
        ([1, 2], "body"),
    ],
)
def test_bad_events_get_422_naming_the_field(http: httpx.Client, body: object, field: str) -> None:
    r = http.post("/events", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert http.get("/users/u1/events").json()["events"] == []


def test_future_timestamp_nan_and_oversized_bodies(http: httpx.Client) -> None:
    future = ev("u1", "m1", timestamp="2999-01-01T00:00:00Z")
    r = http.post("/events", json=future)
    assert r.status_code == 422 and "future" in r.json()["detail"]
    raw = b'{"event_id":"n","user_id":"u1","item_id":"m1","type":"rating","value":NaN}'
    r = http.post("/events", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "value" in r.json()["detail"]
    r = http.post("/events", content=b"{" * 3_000_000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = http.post("/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert http.get("/users/u1/events").json()["events"] == []


def test_unicode_ids_round_trip(http: httpx.Client) -> None:
    user = "用户-ß-😀"
    r = http.post("/events", json=ev(user, "m8"))
    assert r.status_code == 200
    events = http.get(f"/users/{user}/events").json()
    assert events["user_id"] == user and events["events"][0]["item_id"] == "m8"


# -- online updates ------------------------------------------------------------------------
def test_an_event_changes_the_next_list(http: httpx.Client) -> None:
    before = rec_ids(http, "u2", k=14)  # u2 likes romance
    assert before[0] in {"m7"}
    http.post("/events", json=ev("u2", "m8"))  # likes a cartoon
    after = rec_ids(http, "u2", k=14)
    assert "m8" not in after  # seen filter updated before the next request
    # the interest vector moved: the other cartoons climb
    assert after.index("m9") < before.index("m9") and after.index("m10") < before.index("m10")
    http.post("/events", json=ev("u2", "m7", "dislike"))
    assert "m7" not in rec_ids(http, "u2", k=14)


def test_unknown_user_gets_cold_start_and_profile_text_personalises(http: httpx.Client) -> None:
    r = http.get("/users/stranger/recommendations", params={"k": 3}).json()
    assert r["cold_start"] is True and len(r["items"]) == 3
    put = http.put("/users/parent", json={"profile_text": "cartoons for my little kids"})
    assert put.status_code == 200 and put.json()["known_to_model"] is False
    top = rec_ids(http, "parent", k=3)
    assert set(top) == {"m8", "m9", "m10"}
    profile = http.get("/users/parent/profile").json()
    assert profile["profile_text"] == "cartoons for my little kids"


def test_new_item_is_recommendable_at_once_and_delete_hides_it(http: httpx.Client) -> None:
    item = {
        "title": "Starship Legion",
        "description": "A space battle epic with aliens and starships",
        "genres": ["Sci-Fi", "Action"],
    }
    r = http.put("/items/m99", json=item)
    assert r.status_code == 200 and r.json()["in_model"] is True
    assert rec_ids(http, "u1", k=3)[0] == "m99"  # u1 likes space sci-fi
    similar = http.get("/items/m1/similar", params={"k": 3}).json()["items"]
    assert "m99" in [i["item_id"] for i in similar]
    assert http.delete("/items/m99").status_code == 204
    assert "m99" not in rec_ids(http, "u1", k=16)
    assert "m99" not in [i["item_id"] for i in http.get("/items/m1/similar").json()["items"]]
    assert http.post("/events", json=ev("u1", "m99")).status_code == 404
    assert http.delete("/items/m99").status_code == 404
    assert http.get("/items/nope/similar").status_code == 404


def test_delete_user_forgets_events_profile_and_fitted_history(http: httpx.Client) -> None:
    http.put("/users/u3", json={"profile_text": "cartoons"})
    http.post("/events", json={"events": [ev("u3", "m10"), ev("u3", "m1", "view")]})
    assert http.get("/users/u3/profile").json()["known_to_model"] is True
    r = http.delete("/users/u3")
    assert r.status_code == 200 and r.json() == {"user_id": "u3", "deleted_events": 2}
    assert http.get("/users/u3/events").json()["events"] == []
    profile = http.get("/users/u3/profile").json()
    assert profile["profile_text"] is None and profile["known_to_model"] is False
    recs = http.get("/users/u3/recommendations").json()
    assert recs["cold_start"] is True
    assert {"m8", "m9"} & {i["item_id"] for i in recs["items"]}  # fitted history not excluded


def test_k_limits_and_ops_routes(http: httpx.Client) -> None:
    assert http.get("/users/u1/recommendations", params={"k": 0}).status_code == 422
    assert http.get("/users/u1/recommendations", params={"k": 201}).status_code == 422
    assert http.get("/users/u1/recommendations", params={"k": "ten"}).status_code == 422
    assert http.get("/health").json()["status"] == "ok"
    ready = http.get("/ready").json()
    assert ready["status"] == "ready" and ready["detail"]["model"] == "text"
    http.get("/users/u1/recommendations")
    metrics = http.get("/metrics").text
    assert 'lmrec_requests_total{route="/users/{user_id}/recommendations",status="200"}' in metrics
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/events", "/users/{user_id}/recommendations", "/items/{item_id}"} <= set(paths)


# -- access --------------------------------------------------------------------------------
CLIENT_KEY = "client-key-0123456789"
ADMIN_KEY = "admin-key-0123456789ab"


def test_api_keys_and_roles(base_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    with (
        live_server(
            model_dir,
            f"sqlite:///{tmp_path / 'k.db'}",
            client_keys=[CLIENT_KEY],
            admin_keys=[ADMIN_KEY],
        ) as s,
        s.client() as http,
    ):
        assert http.get("/users/u1/recommendations").status_code == 401
        assert (
            http.get("/users/u1/recommendations", headers={"X-API-Key": "x" * 20}).status_code
            == 401
        )
        ok = http.get("/users/u1/recommendations", headers={"X-API-Key": CLIENT_KEY})
        assert ok.status_code == 200
        bearer = http.get(
            "/users/u1/recommendations", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        assert bearer.status_code == 200
        item = {"title": "X"}
        assert http.put("/items/z", json=item, headers={"X-API-Key": CLIENT_KEY}).status_code == 403
        assert http.delete("/users/u1", headers={"X-API-Key": CLIENT_KEY}).status_code == 403
        assert http.put("/items/z", json=item, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert http.get("/health").status_code == 200  # probes need no key


def test_open_access_serves_loopback_only() -> None:
    from fastapi import Request

    from lmrec.serve.security import role_of

    settings = ServeSettings(model_dir=Path("."))

    def req(host: str) -> Request:
        return Request({"type": "http", "client": (host, 1234), "headers": []})

    assert role_of(settings, req("127.0.0.1"), None) == "admin"
    assert role_of(settings, req("::1"), None) == "admin"
    assert role_of(settings, req("10.1.2.3"), None) is None
    with pytest.raises(ValueError, match="16 characters"):
        ServeSettings(model_dir=Path("."), client_keys=["short"])


def test_put_user_keeps_fields_left_out_and_ids_must_fit_a_path(http: httpx.Client) -> None:
    http.put("/users/p1", json={"profile_text": "westerns", "attributes": {"country": "NZ"}})
    r = http.put("/users/p1", json={"profile_text": "westerns and horror"})
    assert r.json()["attributes"] == {"country": "NZ"}  # attributes left out: kept
    r = http.put("/users/p1", json={"attributes": {"age": 30}})
    assert r.json()["profile_text"] == "westerns and horror"
    assert r.json()["attributes"] == {"age": 30}
    r = http.put("/users/p1", json={"profile_text": None})
    assert r.json()["profile_text"] is None
    r = http.post("/events", json=ev("a/b", "m1"))
    assert r.status_code == 422 and "'/'" in r.json()["detail"]
    r = http.put("/items/m77", json={"title": "   "})
    assert r.status_code == 422 and "title" in r.json()["detail"]


def test_unknown_items_can_be_auto_created_and_batches_are_capped(
    base_model: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    with (
        live_server(model_dir, db, unknown_items="create", max_batch=3) as s,
        s.client() as http,
    ):
        r = http.post("/events", json=ev("u1", "brand-new"))
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert "brand-new" not in rec_ids(http, "u1", k=17)  # now seen by u1
        assert "brand-new" in rec_ids(http, "u2", k=17)  # a real, recommendable item
        r = http.post("/events", json={"events": [ev("u1", "m1") for _ in range(4)]})
        assert r.status_code == 413 and "at most 3" in r.json()["detail"]


def test_explanations_are_lazy_by_recommendation_id_and_inline_on_request(
    http: httpx.Client,
) -> None:
    r = http.get("/users/u1/recommendations", params={"k": 3}).json()
    assert all(i["explanation"] is None for i in r["items"])  # lists stay lean
    ex = http.get(f"/recommendations/{r['recommendation_id']}/explanations").json()
    assert [i["item_id"] for i in ex["items"]] == [i["item_id"] for i in r["items"]]
    for item in ex["items"]:
        assert item["explanation"] and item["source"] == "template"
        assert item["evidence"]["recommended"]["title"] == item["title"]
        assert item["evidence"]["nearest_liked_items"]  # u1's history backs it
    zh = http.get(
        f"/recommendations/{r['recommendation_id']}/explanations", params={"language": "zh"}
    ).json()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh["items"][0]["explanation"])
    inline = http.get("/users/u1/recommendations", params={"k": 2, "explain": "true"}).json()
    assert all(i["explanation"] for i in inline["items"])
    assert http.get("/recommendations/nope/explanations").status_code == 404
    assert (
        http.get(
            f"/recommendations/{r['recommendation_id']}/explanations", params={"language": "fr"}
        ).status_code
        == 422
    )


def test_a_local_llm_explains_from_its_own_process_stopped_at_shutdown(
    base_model: Path, tmp_path: Path
) -> None:
    import os

    from lmrec.llm.worker import ProcessBackend

    model_dir = tmp_path / "model"
    shutil.copytree(base_model, model_dir)
    db = f"sqlite:///{tmp_path / 'events.db'}"
    with live_server(model_dir, db, llm_backend="smollm2-135m", llm_timeout_s=60) as s:
        llm = s.app.state.explainers.backend
        assert isinstance(llm, ProcessBackend)
        with s.client() as http:
            r = http.get("/users/u1/recommendations", params={"k": 2}).json()
            ex = http.get(f"/recommendations/{r['recommendation_id']}/explanations").json()
        assert len(ex["items"]) == 2 and all(i["explanation"] for i in ex["items"])
        assert all(i["source"] in ("llm", "template") for i in ex["items"])
        pid = llm.pid
        assert pid is not None and pid != os.getpid()
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(mine + 10, 19)  # llm_nice default
        if hasattr(os, "SCHED_IDLE"):  # llm_idle is off by default
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        assert os.sched_getaffinity(pid) == os.sched_getaffinity(0)  # llm_cpus 0: every CPU
    assert llm.pid is None and not os.path.exists(f"/proc/{pid}/status")  # stopped with it
