"""The web page at ``GET /``, driven in headless Chromium against a real server and model."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live import MOVIES, LiveServer, fit_text_model, live_server
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = os.environ.get("LMREC_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
TITLES = {item_id: title for item_id, (title, _, _) in MOVIES.items()}
ANIMATION = {"m8", "m9", "m10"}
NEW_ITEM = {
    "title": "Galaxy Quest Returns",
    "description": "A space battle sci-fi epic with aliens and starships",
    "genres": ["Sci-Fi", "Action"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app with a fitted `text` model, on a SQLite file, for the module."""
    base = tmp_path_factory.mktemp("page")
    model = fit_text_model(base / "model")
    with live_server(model, f"sqlite:///{base / 'page.db'}") as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("LMREC_SKIP_BROWSER") == "1":
            pytest.skip("LMREC_SKIP_BROWSER=1")
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install chromium); "
            "or set LMREC_CHROMIUM, or LMREC_SKIP_BROWSER=1 to skip the browser tests"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser, server: LiveServer) -> Iterator[Page]:
    """A fresh browser context (empty localStorage) on the page; JS errors fail the test."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(f"{server.url}/")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def rows(page: Page) -> Locator:
    return page.get_by_test_id("rec-item")


def row(page: Page, item_id: str) -> Locator:
    return page.locator(f'[data-testid="rec-item"][data-item-id="{item_id}"]')


def shown(page: Page) -> list[str]:
    return rows(page).evaluate_all("els => els.map(e => e.dataset.itemId)")


def api_list(api: httpx.Client, user: str, k: int = 10) -> dict[str, Any]:
    r = api.get(f"/users/{user}/recommendations", params={"k": k})
    r.raise_for_status()
    return r.json()


def api_ids(api: httpx.Client, user: str, k: int = 10) -> list[str]:
    return [it["item_id"] for it in api_list(api, user, k)["items"]]


def load_user(page: Page, user: str) -> None:
    page.get_by_test_id("user-id").fill(user)
    page.get_by_test_id("load").click()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ok")
    expect(page.get_by_test_id("rec-meta")).to_contain_text(f"for {user}")


def feedback(page: Page, item_id: str, kind: str) -> None:
    """Click like/dislike on a row and wait for the refreshed list without it."""
    rid = page.get_by_test_id("rec-list").get_attribute("data-recommendation-id")
    row(page, item_id).get_by_test_id(kind).click()
    expect(row(page, item_id)).to_have_count(0)
    expect(page.get_by_test_id("rec-list")).not_to_have_attribute("data-recommendation-id", rid)
    expect(page.get_by_test_id("status")).to_contain_text(f"Recorded {kind}")
    expect(page.get_by_test_id("event").first).to_have_attribute("data-type", kind)
    expect(page.get_by_test_id("event").first).to_have_attribute("data-item-id", item_id)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("LMREC_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_whole_flow(page: Page, api: httpx.Client) -> None:
    ready = api.get("/ready").json()
    expect(page.get_by_test_id("ready")).to_contain_text(
        f"ready · {ready['detail']['version']} · {ready['detail']['items']} items"
    )

    # u1 (sci-fi history m1, m2, m4): the page shows exactly the API's list, with titles
    load_user(page, "u1")
    expect(rows(page)).to_have_count(10)
    before = shown(page)
    assert before == api_ids(api, "u1")
    assert not {"m1", "m2", "m4"} & set(before)  # seen items are excluded
    assert page.get_by_test_id("rec-title").all_inner_texts() == [TITLES[i] for i in before]
    assert page.get_by_test_id("rec-rank").all_inner_texts() == [f"#{n}" for n in range(1, 11)]
    top = api_list(api, "u1")["items"][0]
    expect(page.get_by_test_id("rec-score").first).to_have_text(f"{top['score']:.3f}")
    expect(page.get_by_test_id("events-list")).to_contain_text("No events yet")

    # "Why?" fetches the list's explanations lazily, by recommendation_id
    first = rows(page).first
    first.get_by_test_id("why").click()
    expect(first.get_by_test_id("rec-why")).to_contain_text("Because you liked")
    expect(first.get_by_test_id("rec-why")).to_contain_text(TITLES[before[0]])

    # like the first item: it leaves the list, the rest re-ranks, the event is listed
    liked = before[0]
    rid = page.get_by_test_id("rec-list").get_attribute("data-recommendation-id")
    feedback(page, liked, "like")
    after_like = shown(page)
    assert liked not in after_like
    assert len(after_like) == 10
    assert after_like == api_ids(api, "u1")
    assert after_like[:9] != [i for i in before if i != liked]  # scores moved, not just a gap
    expect(page.get_by_test_id("event").first).to_contain_text(TITLES[liked])
    stored = api.get("/users/u1/events", params={"limit": 10}).json()["events"]
    assert [(e["type"], e["item_id"], e["recommendation_id"]) for e in stored] == [
        ("like", liked, rid)
    ]

    # dislike another one: it leaves too
    disliked = after_like[1]
    feedback(page, disliked, "dislike")
    after_dislike = shown(page)
    assert disliked not in after_dislike
    assert after_dislike == api_ids(api, "u1")
    expect(page.get_by_test_id("event")).to_have_count(2)
    assert page.get_by_test_id("event").evaluate_all("els => els.map(e => e.dataset.type)") == [
        "dislike",
        "like",
    ]

    # add a sci-fi item: it is embedded at once and joins u1's refreshed list
    assert "m99" not in api_ids(api, "u1", k=50)
    page.get_by_test_id("add-item-id").fill("m99")
    page.get_by_test_id("add-title").fill(NEW_ITEM["title"])
    page.get_by_test_id("add-description").fill(NEW_ITEM["description"])
    page.get_by_test_id("add-genres").fill(" Sci-Fi,  Action ")
    page.get_by_test_id("add-submit").click()
    expect(page.get_by_test_id("status")).to_contain_text("Added item m99")
    expect(row(page, "m99")).to_have_count(1)
    expect(row(page, "m99").get_by_test_id("rec-title")).to_have_text(NEW_ITEM["title"])
    expect(page.get_by_test_id("add-item-id")).to_have_value("")
    assert shown(page) == api_ids(api, "u1")
    expect(page.get_by_test_id("ready")).to_contain_text(f"{ready['detail']['items'] + 1} items")

    # a new user with a profile text gets cartoons first
    load_user(page, "page-new")
    expect(page.get_by_test_id("rec-meta")).to_contain_text("cold start")
    expect(page.get_by_test_id("status")).to_contain_text("new user")
    assert set(shown(page)[:3]) != ANIMATION  # the popular fallback is something else
    page.get_by_test_id("profile-text").fill("cartoons for my kids")
    page.get_by_test_id("save-profile").click()
    expect(page.get_by_test_id("status")).to_contain_text("Saved the profile of page-new")
    expect(rows(page).first).to_have_attribute("data-item-id", re.compile(r"^m(8|9|10)$"))
    assert set(shown(page)[:3]) == ANIMATION
    assert shown(page) == api_ids(api, "page-new")
    assert api.get("/users/page-new/profile").json()["profile_text"] == "cartoons for my kids"

    # back to u1: the profile text box shows what is stored for them (nothing)
    load_user(page, "u1")
    expect(page.get_by_test_id("profile-text")).to_have_value("")
    expect(row(page, "m99")).to_have_count(1)

    shot = artifacts_dir() / "page-flow.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


def test_server_errors_are_shown(page: Page, api: httpx.Client) -> None:
    status = page.get_by_test_id("status")

    # an empty title: the server's 422 message (naming the field) reaches the status line
    expected = api.put("/items/m-bad", json={"title": ""})
    assert expected.status_code == 422
    detail = expected.json()["detail"]
    assert detail.startswith("title:")
    page.get_by_test_id("add-item-id").fill("m-bad")
    page.get_by_test_id("add-submit").click()
    expect(status).to_have_attribute("data-state", "error")
    expect(status).to_contain_text(f"422: {detail}")
    assert "m-bad" not in api_ids(api, "u1", k=200)

    # an ID the server refuses (a zero-width space is a format character)
    bad_user = "bad\u200bid"
    detail = api.get(f"/users/{bad_user}/recommendations").json()["detail"]
    assert detail.startswith("user_id:")
    page.get_by_test_id("user-id").fill(bad_user)
    page.get_by_test_id("load").click()
    expect(status).to_have_attribute("data-state", "error")
    expect(status).to_contain_text(detail)
    expect(rows(page)).to_have_count(0)

    # an empty user ID never reaches the server
    page.get_by_test_id("user-id").fill("  ")
    page.get_by_test_id("load").click()
    expect(status).to_have_text("Enter a user ID first.")


def test_titles_are_inserted_as_text(page: Page, api: httpx.Client) -> None:
    title = '<img src=x onerror="window.__pwned = 1"><b>Bold</b>'
    put = api.put(
        "/items/m-xss", json={"title": title, "description": "a cartoon about talking cats"}
    )
    assert put.status_code == 200, put.text
    try:
        assert api.put("/users/page-xss", json={"profile_text": "cartoons"}).status_code == 200
        assert "m-xss" in api_ids(api, "page-xss", k=20)
        page.get_by_test_id("k").fill("20")
        load_user(page, "page-xss")
        expect(row(page, "m-xss").get_by_test_id("rec-title")).to_have_text(title)
        assert page.get_by_test_id("rec-list").locator("img, b").count() == 0
        assert page.evaluate("window.__pwned") is None
    finally:
        api.delete("/items/m-xss")


def test_api_key_is_kept_and_sent(page: Page) -> None:
    key = "page-test-key-0123456789"
    expect(page.get_by_test_id("key-toggle")).to_have_text("API key")
    page.get_by_test_id("key-toggle").click()
    page.get_by_test_id("api-key").fill(key)
    page.get_by_test_id("api-key").dispatch_event("change")
    page.reload()
    expect(page.get_by_test_id("key-toggle")).to_have_text("API key (set)")
    expect(page.get_by_test_id("api-key")).to_have_value(key)
    with page.expect_request(re.compile(r"/users/u2/recommendations")) as req:
        load_user(page, "u2")
    assert req.value.headers.get("x-api-key") == key
    page.get_by_test_id("key-toggle").click()
    page.get_by_test_id("api-key").fill("")
    page.get_by_test_id("api-key").dispatch_event("change")
    with page.expect_request(re.compile(r"/users/u2/recommendations")) as req:
        page.get_by_test_id("load").click()
    assert "x-api-key" not in req.value.headers


def test_asking_the_llm_shows_a_grounded_explained_list(page: Page, api: httpx.Client) -> None:
    page.get_by_test_id("user-id").fill("page-asker")
    page.get_by_test_id("k").fill("3")
    page.get_by_test_id("ask-text").fill("a cartoon for my kids")
    page.get_by_test_id("ask").click()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ok")
    expect(rows(page)).to_have_count(3)
    shown = [rows(page).nth(i).get_attribute("data-item-id") for i in range(3)]
    catalog = set(MOVIES) | {"m99"}  # the whole-flow test adds one item to the catalog
    assert set(shown) <= catalog, shown
    assert set(shown) & ANIMATION and len(set(shown)) == 3
    expect(page.get_by_test_id("rec-meta")).to_contain_text("LLM template")
    for i in range(3):  # explained inline, each a sentence naming the item's evidence
        expect(rows(page).nth(i).get_by_test_id("rec-why")).not_to_be_empty()
    # a new user with neither history nor a request gets the service's error, shown
    page.get_by_test_id("user-id").fill("page-nobody")
    page.get_by_test_id("ask-text").fill("")
    page.get_by_test_id("ask").click()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("status")).to_contain_text("send a request")
