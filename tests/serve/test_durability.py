"""SIGKILL the server mid-ingestion: every acknowledged event survives, none counts twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from live import fit_text_model, free_port

from lmrec.serve.storage import Store

BATCH = 100


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_text_model(tmp_path_factory.mktemp("model") / "text")


@contextmanager
def server_process(
    model: Path, db_url: str, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`lmrec serve` in its own process; yields it and its base URL once healthy."""
    port = free_port()
    cmd = [sys.executable, "-m", "lmrec.cli", "serve", "--model", str(model), "--db", db_url]
    cmd += ["--port", str(port)]
    env = {**os.environ, "LMREC_RELOAD_INTERVAL_S": "0"}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode}: {log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("server did not come up")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def batch_of(n: int) -> list[dict[str, object]]:
    items = [f"m{i}" for i in range(1, 17)]
    return [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": f"load-{i % 50}",
            "item_id": items[i % len(items)],
            "type": "click",
        }
        for i in range(n)
    ]


def test_sigkill_during_ingestion_loses_no_acknowledged_event(
    model_dir: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'events.db'}"
    acked: list[str] = []
    sent: list[list[str]] = []
    with server_process(model_dir, db_url, tmp_path / "server.log") as (proc, url):
        stop = threading.Event()

        def ingest() -> None:
            with httpx.Client(base_url=url, timeout=10) as c:
                while not stop.is_set():
                    events = batch_of(BATCH)
                    ids = [str(e["event_id"]) for e in events]
                    sent.append(ids)
                    try:
                        r = c.post("/events", json={"events": events})
                    except httpx.HTTPError:
                        return  # the server died under us: this batch is unacknowledged
                    if r.status_code == 200:
                        assert r.json()["accepted"] == BATCH
                        acked.extend(ids)  # this thread's batch, not sent[-1]

        threads = [threading.Thread(target=ingest) for _ in range(2)]
        for t in threads:
            t.start()
        while len(acked) < 20 * BATCH:  # kill well into ingestion, with requests in flight
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert proc.returncode == -signal.SIGKILL

    store = Store(db_url)
    stored = {e.event_id for e in store.events_since(0)}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    for ids in sent:  # a batch is one transaction: all of it or none of it
        present = sum(i in stored for i in ids)
        assert present in (0, len(ids))
    count = store.count_events()
    store.close()

    with server_process(model_dir, db_url, tmp_path / "server.log") as (_, url):
        resend = [
            {"event_id": i, "user_id": f"load-{n % 50}", "item_id": "m1", "type": "click"}
            for n, i in enumerate(acked[:BATCH])
        ]
        r = httpx.post(f"{url}/events", json={"events": resend}, timeout=10)
        assert r.json() == {"accepted": 0, "duplicates": BATCH, "duplicate_ids": acked[:BATCH]}
        # the restarted server replayed the stored events into its online state
        ids = [
            e["event_id"]
            for e in httpx.get(f"{url}/users/load-0/events", timeout=10).json()["events"]
        ]
        assert ids and set(ids) <= stored
    store = Store(db_url)
    assert store.count_events() == count
    store.close()
