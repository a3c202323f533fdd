"""A small real catalog, a fitted `text` model, and a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import uvicorn

from lmrec.data.schema import Dataset
from lmrec.models import TextRecommender
from lmrec.serve.app import create_app
from lmrec.serve.settings import ServeSettings

MOVIES = {
    "m1": ("Star Voyage", "Sci-Fi|Action", "A space battle epic with starships and aliens"),
    "m2": ("Alien Dawn", "Sci-Fi|Thriller", "An alien invasion of Earth, science fiction"),
    "m3": ("Orbit", "Sci-Fi|Adventure", "Astronauts on a space adventure beyond the moon"),
    "m4": ("Robot Uprising", "Sci-Fi|Action", "Robots rebel against humans in the future"),
    "m5": ("Paris in Love", "Romance|Comedy", "A romantic comedy about lovers in Paris"),
    "m6": ("The Wedding", "Romance|Drama", "A love story that ends in a wedding"),
    "m7": ("Second Chances", "Romance|Drama", "Heartwarming romance of two old friends"),
    "m8": ("Toy Town", "Animation|Children|Comedy", "An animated cartoon comedy for kids"),
    "m9": ("Little Dragon", "Animation|Children", "A cartoon about a friendly little dragon"),
    "m10": ("Jungle Pals", "Animation|Children|Comedy", "Talking animals in a cartoon jungle"),
    "m11": ("Dark Alley", "Crime|Thriller", "A detective hunts a killer in the city"),
    "m12": ("The Heist", "Crime|Action", "A gang plans a bank robbery"),
    "m13": ("Haunted Hill", "Horror", "A ghost haunts a house on a hill"),
    "m14": ("Night Terror", "Horror|Thriller", "A monster stalks campers at night"),
    "m15": ("Desert Riders", "Western|Action", "Cowboys ride across the desert"),
    "m16": ("Symphony", "Drama|Musical", "A young pianist's road to the concert hall"),
}
HISTORIES = {
    "u1": ["m1", "m2", "m4"],
    "u2": ["m5", "m6"],
    "u3": ["m8", "m9"],
    "u4": ["m11", "m12", "m14"],
    "u5": ["m1", "m5", "m8", "m13"],
    "u6": ["m15", "m16", "m3"],
}


def catalog() -> Dataset:
    """The test catalog and histories as a `Dataset`."""
    items = pd.DataFrame(
        [
            {"item_id": k, "title": t, "genres": g, "description": d}
            for k, (t, g, d) in MOVIES.items()
        ]
    )
    inter = pd.DataFrame(
        [
            {"user_id": u, "item_id": i, "rating": 5.0, "timestamp": float(n)}
            for u, hist in HISTORIES.items()
            for n, i in enumerate(hist)
        ]
    )
    return Dataset.build(inter, items)


def fit_text_model(path: Path) -> Path:
    """Fit the `text` model (real packaged MiniLM) on the catalog and save it to ``path``."""
    TextRecommender().fit(catalog()).save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn running the app in a thread, on a free loopback port."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = settings.port or free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.serving.store.close()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@contextmanager
def live_server(model_dir: Path, db_url: str, **settings: Any) -> Iterator[LiveServer]:
    """Start a server for ``model_dir`` on ``db_url``; stopped on exit."""
    settings.setdefault("reload_interval_s", 0)
    cfg = ServeSettings(model_dir=model_dir, db_url=db_url, port=0, **settings)
    server = LiveServer(cfg).start()
    try:
        yield server
    finally:
        server.stop()
