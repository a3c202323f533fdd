"""Load test of `lmrec serve` on loopback: list latency at a fixed rate, event throughput.

Starts the real service (`python -m lmrec.cli serve`, uvicorn, SQLite store with
``synchronous=FULL``) in one process and drives it from a load generator in a second
process, bounded in request count and time:

1. **Lists**: ``GET /users/{id}/recommendations?k=10`` at a fixed arrival rate (open loop:
   each request is due at its own time whether or not earlier ones finished, and latency is
   measured from that due time, so a stalled server cannot hide its queue). Users are drawn
   from the model's users plus 10% unknown users (cold start). Baseline, same run, same
   rate: ``GET /health``, the framework's floor.
2. **Events**: sustained events/s through batched ``POST /events`` (``--batch`` events per
   request, two concurrent clients), every batch acknowledged after its transaction is
   durable. Baseline, same run: the same events one per request.
3. **Lazy explanations** (``--explain``): the lists again at the same rate while a second
   client, closed loop, takes a top-5 list and then its explanations
   (``GET /recommendations/{id}/explanations``) over and over; reported: list latency during
   that, and the explanation latency. The server's LLM is ``--llm-backend`` (``template`` or
   a packaged model such as ``smollm2-135m``); one fresh server per ``--llm-runs`` entry:
   where the local model runs (``process``: its own process, the default; ``thread``: a
   thread of the server's), how much lower its CPU priority is (nice) and, for a process,
   how many CPUs it may use, e.g. ``thread:10`` or ``process:10:1``; NICE ``idle`` runs the
   LLM process under Linux's ``SCHED_IDLE`` policy (``process:idle``).
   With a model as ``--llm-backend``, the lists are first measured on a server without one
   (``template``): the reference for the model-loaded server's lists, whose explanations
   are lazy (nobody fetches them during step 1).

    python benchmarks/bench_serve.py [--model DIR] [--rate 100] [--seconds 30]
        [--explain] [--llm-backend template] [--llm-runs thread:10,process:10]
        [--append-results]

Without ``--model`` it fits the ``text`` model (packaged MiniLM) on MovieLens-100K into
``runs/bench-serve/model``. Targets on 2 cores: p99 <= 50 ms at 100 requests/s;
>= 2,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from common import append_results, log, machine_info, markdown_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench-serve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_model(model: Path | None) -> Path:
    if model is not None:
        return model
    path = OUT / "model"
    if not (path / "model.json").is_file():
        from lmrec.data.fetch import load_builtin
        from lmrec.models import create_model

        log("fitting the text model on ML-100K")
        create_model("text").fit(load_builtin("ml-100k")).save(path)
    return path


def start_server(
    model: Path,
    db: Path,
    llm_backend: str = "template",
    llm_nice: int = 10,
    llm_process: bool = True,
    llm_cpus: int = 0,
    llm_idle: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "lmrec.cli", "serve", "--model", str(model)]
    cmd += ["--db", f"sqlite:///{db}", "--port", str(port)]
    env = {**os.environ, "LMREC_RELOAD_INTERVAL_S": "0", "LMREC_LOG_LEVEL": "warning"}
    env["LMREC_LLM_BACKEND"] = llm_backend
    env["LMREC_LLM_TIMEOUT_S"] = "120"
    env["LMREC_LLM_NICE"] = str(llm_nice)
    env["LMREC_LLM_PROCESS"] = "true" if llm_process else "false"
    env["LMREC_LLM_CPUS"] = str(llm_cpus)
    env["LMREC_LLM_IDLE"] = "true" if llm_idle else "false"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    import httpx

    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready")


# -- load generator (runs in its own process) --------------------------------------------------
async def _fixed_rate(url: str, paths: list[str], rate: float) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    lat: list[float] = []
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        start = time.perf_counter() + 0.2

        async def one(i: int, path: str) -> None:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.get(path)
                status = str(r.status_code)
            except httpx.HTTPError as e:
                status = type(e).__name__
            lat.append(time.perf_counter() - due)  # from the due time: no coordinated omission
            if status != "200":
                errors[status] = errors.get(status, 0) + 1

        await asyncio.gather(*(one(i, p) for i, p in enumerate(paths)))
        wall = time.perf_counter() - start
    ms = np.asarray(lat) * 1000.0
    return {
        "requests": len(paths),
        "achieved_rps": len(paths) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "errors": errors,
    }


async def _events(url: str, batches: list[list[dict[str, Any]]], clients: int) -> dict[str, Any]:
    import httpx

    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    accepted = 0
    errors: dict[str, int] = {}

    async def worker() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not queue.empty():
                batch = queue.get_nowait()
                body = {"events": batch} if len(batch) > 1 else batch[0]
                r = await client.post("/events", json=body)
                if r.status_code == 200:
                    accepted += r.json()["accepted"]
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {
        "accepted": accepted,
        "seconds": wall,
        "events_per_s": accepted / wall,
        "errors": errors,
    }


def _explain_loop(url: str, users: list[str], seconds: float) -> dict[str, Any]:
    """Closed loop: a top-5 list, then its explanations, until ``seconds`` have passed."""
    import httpx

    lat: list[float] = []
    llm = 0
    end = time.perf_counter() + seconds
    with httpx.Client(base_url=url, timeout=300) as client:
        n = 0
        while time.perf_counter() < end:
            user = users[n % len(users)]
            n += 1
            rid = client.get(f"/users/{user}/recommendations?k=5").json()["recommendation_id"]
            t0 = time.perf_counter()
            r = client.get(f"/recommendations/{rid}/explanations")
            lat.append(time.perf_counter() - t0)
            llm += sum(i["source"] == "llm" for i in r.json()["items"])
    ms = np.asarray(lat) * 1000.0
    return {
        "lists_explained": len(lat),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p90_ms": float(np.percentile(ms, 90)) if len(ms) else float("nan"),
        "llm_sentences": llm,
    }


def loadgen(task: str, url: str, payload: Any, param: float, queue: Any) -> None:
    """Child-process entry: run one load task and put its result on ``queue``."""
    if task == "rate":
        queue.put(asyncio.run(_fixed_rate(url, payload, param)))
    elif task == "explain":
        queue.put(_explain_loop(url, payload, param))
    else:
        queue.put(asyncio.run(_events(url, payload, int(param))))


def run_child(task: str, url: str, payload: Any, param: float, timeout_s: float) -> dict[str, Any]:
    ctx = get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=loadgen, args=(task, url, payload, param, queue))
    proc.start()
    try:
        result: dict[str, Any] = queue.get(timeout=timeout_s)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    return result


def make_events(
    users: list[str], items: list[str], n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    kinds = ["view", "click", "like", "dislike", "purchase"]
    u = rng.integers(0, len(users), n)
    i = rng.integers(0, len(items), n)
    t = rng.integers(0, len(kinds), n)
    return [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": users[a],
            "item_id": items[b],
            "type": kinds[c],
        }
        for a, b, c in zip(u, i, t, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="Saved model folder (default: fit text on ML-100K)")
    ap.add_argument("--rate", type=float, default=100.0, help="List requests per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="Length of each fixed-rate run")
    ap.add_argument("--events", type=int, default=100_000, help="Events in the batched run")
    ap.add_argument("--batch", type=int, default=500, help="Events per POST in the batched run")
    ap.add_argument("--single", type=int, default=3_000, help="Events in the one-per-POST run")
    ap.add_argument("--explain", action="store_true", help="Also measure lazy explanations")
    ap.add_argument("--llm-backend", default="template", help="The server's explanation LLM")
    ap.add_argument(
        "--llm-runs",
        default="process:10",
        help="With --explain, one server each: comma-separated WHERE:NICE[:CPUS], WHERE one "
        "of process (the LLM in its own process) or thread (on a thread of the server's), NICE "
        "how much lower the LLM's CPU priority is, CPUS how many CPUs the LLM process may use "
        "(0: all; e.g. thread:10,process:10,process:10:1); NICE idle: SCHED_IDLE (process:idle)",
    )
    ap.add_argument("--append-results", action="store_true")
    args = ap.parse_args()

    model_dir = ensure_model(args.model)
    from lmrec.models.base import Recommender

    model = Recommender.load(model_dir)
    assert model.users is not None and model.items is not None
    users = [str(u) for u in model.users.ids]
    items = [str(i) for i in model.items.ids]
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    served = OUT / "served-model"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(model_dir, served)
    rng = np.random.default_rng(0)
    n = int(args.rate * args.seconds)
    pick = rng.integers(0, len(users), n)
    cold = rng.random(n) < 0.10
    list_paths = [
        f"/users/{'new-' + str(j) if c else users[j]}/recommendations?k=10"
        for j, c in zip(pick, cold, strict=True)
    ]
    limit = args.seconds * 3 + 60
    no_llm: dict[str, Any] | None = None
    if args.explain and args.llm_backend != "template":
        # the reference for "lists unchanged when explanations are lazy": no model loaded
        proc, url = start_server(served, db, "template")
        try:
            run_child("rate", url, list_paths[:200], args.rate, limit)
            no_llm = run_child("rate", url, list_paths, args.rate, limit)
            log(f"lists, server without an LLM: {no_llm}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    proc, url = start_server(served, db, args.llm_backend)
    try:
        log(f"warm-up, then {n} list requests at {args.rate:g}/s")
        run_child("rate", url, list_paths[:200], args.rate, limit)
        lists = run_child("rate", url, list_paths, args.rate, limit)
        log(f"lists: {lists}")
        health = run_child("rate", url, ["/health"] * n, args.rate, limit)
        log(f"health: {health}")
        events = make_events(users, items, args.events, rng)
        batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
        batched = run_child("events", url, batches, 2, 600)
        log(f"batched events: {batched}")
        singles = [[e] for e in make_events(users, items, args.single, rng)]
        single = run_child("events", url, singles, 2, 600)
        log(f"single events: {single}")
        # lists again, now that the events sit in the overlays and the store
        after = run_child("rate", url, list_paths, args.rate, limit)
        log(f"lists after events: {after}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    explain_runs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for run in args.llm_runs.split(",") if args.explain else []:
        where, nice_text, cpus_text = ([*run.split(":"), "0"])[:3]
        idle = where == "process" and nice_text == "idle"
        nice_text = "0" if idle else nice_text
        if where not in ("process", "thread") or not (nice_text + cpus_text).isdigit():
            raise SystemExit(
                f"--llm-runs: expected process:NICE[:CPUS] or thread:NICE, got {run!r}"
            )
        nice, cpus = int(nice_text), int(cpus_text)
        # a fresh server per run: the LLM's priority is set when it starts
        proc, url = start_server(served, db, args.llm_backend, nice, where == "process", cpus, idle)
        try:
            run_child("rate", url, list_paths[:200], args.rate, limit)
            ctx = get_context("spawn")
            queue = ctx.Queue()
            explainer = ctx.Process(
                target=loadgen, args=("explain", url, users, args.seconds, queue)
            )
            explainer.start()
            during = run_child("rate", url, list_paths, args.rate, limit)
            explained = queue.get(timeout=args.seconds + 600)
            explainer.join(timeout=10)
            log(f"{run}: lists during explanations: {during}; explanations: {explained}")
            label = "LLM in its own process" if where == "process" else "LLM on a server thread"
            label += ", SCHED_IDLE" if idle else f", nice {nice}"
            label += f", on {cpus} CPU" if cpus else ""
            explain_runs.append((label, during, explained))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    result = {
        "model": model.name,
        "items": len(items),
        "users": len(users),
        "rate": args.rate,
        "lists": lists,
        "health": health,
        "batched_events": batched,
        "single_events": single,
        "lists_after_events": after,
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2))

    def row(label: str, stats: dict[str, Any]) -> list[Any]:
        return [
            label,
            f"{stats['p50_ms']:.1f}",
            f"{stats['p99_ms']:.1f}",
            f"{stats['p99_ms'] / health['p99_ms']:.2f}x",
            f"{stats['achieved_rps']:.0f}/s",
            sum(stats["errors"].values()),
        ]

    lists_label = f"GET recommendations k=10 @ {args.rate:g}/s"
    rows = []
    if no_llm is not None:
        result["lists_without_llm"] = no_llm
        rows.append(row(f"{lists_label}, server without an LLM (reference)", no_llm))
        lists_label += f", {args.llm_backend} loaded, explanations lazy, none fetched"
    rows.append(row(lists_label, lists))
    rows.append(row(f"same, after {args.events:,} events ingested", after))
    for label, during, explained in explain_runs:
        rows.append(
            row(f"same, while another client fetches explanations ({args.llm_backend}, {label})",
                during)
        )  # fmt: skip
        result[f"lists_during_explanations ({label})"] = during
        result[f"explanations ({label})"] = explained
    rows.append(row(f"GET /health @ {args.rate:g}/s (baseline)", health))
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    table = markdown_table(
        ["request", "p50 ms", "p99 ms", "p99 vs /health", "achieved", "errors"], rows
    )
    for label, _, explained in explain_runs:
        table += (
            f"\n\nExplanations of a top-5 list ({args.llm_backend}, {label}), "
            f"fetched lazily by recommendation_id: {explained['lists_explained']} lists, "
            f"median {explained['p50_ms']:.0f} ms, p90 {explained['p90_ms']:.0f} ms, "
            f"{explained['llm_sentences']} sentences from the LLM."
        )
    ev_rows = [
        [
            f"POST /events, {args.batch} per batch, 2 clients",
            batched["accepted"],
            f"{batched['events_per_s']:,.0f}",
            f"{batched['events_per_s'] / single['events_per_s']:.1f}x",
        ],
        [
            "POST /events, 1 per request, 2 clients (baseline)",
            single["accepted"],
            f"{single['events_per_s']:,.0f}",
            "1.0x",
        ],
    ]
    table += "\n\n" + markdown_table(["ingestion", "events", "events/s", "vs single"], ev_rows)
    print(table)
    if args.append_results:
        append_results(
            "Service load on loopback: list latency at a fixed rate, event throughput",
            table,
            notes=[
                f"Model: {model.name} on {len(items)} items / {len(users)} users; SQLite store "
                "(WAL, synchronous=FULL); server and load generator in separate processes.",
                "Latency is measured from each request's scheduled time (open loop).",
                "Targets: p99 <= 50 ms at 100 requests/s; >= 2,000 events/s.",
            ],
            machine=machine_info(),
        )


if __name__ == "__main__":
    main()
