"""The FastAPI application: wiring, error handling, metrics and operational routes."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lmrec import __version__
from lmrec.errors import InputError, LmrecError, UnknownIdError
from lmrec.serve.explanations import Explainers
from lmrec.serve.generation import Generators
from lmrec.serve.routes import router
from lmrec.serve.schemas import ERROR_RESPONSES, StatusOut
from lmrec.serve.security import BodyLimit, require
from lmrec.serve.settings import ServeSettings
from lmrec.serve.state import ServingState, Watcher
from lmrec.serve.storage import Store, StoreError

log = logging.getLogger("lmrec.serve")


class Metrics:
    """Prometheus series for one app (own registry, so several apps can live in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lmrec_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "lmrec_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.accepted = Counter("lmrec_events_accepted", "Events stored", registry=self.registry)
        self.duplicates = Counter(
            "lmrec_events_duplicate", "Resent events ignored", registry=self.registry
        )
        self.swaps = Gauge("lmrec_model_swaps", "Models hot-swapped in", registry=self.registry)

    def events(self, accepted: int, duplicates: int) -> None:
        self.accepted.inc(accepted)
        self.duplicates.inc(duplicates)


def _message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        # drop "body" and the discriminator tags of POST /events from the field path
        loc = ".".join(
            str(p)
            for i, p in enumerate(err.get("loc", ()))
            if p != "body" and not (i == 1 and p in ("event", "batch"))
        )
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(settings: ServeSettings, state: ServingState | None = None) -> FastAPI:
    """Build the app; ``state`` defaults to the store and model the settings name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the model, torch and pandas leave ~10^6 long-lived objects: freezing them keeps
        # full garbage collections (tens of ms each) out of request tails
        gc.collect()
        gc.freeze()
        # requests are the parallelism: a multi-threaded BLAS per tiny product only makes
        # the worker threads fight over OpenBLAS's pool (seen as 100+ ms request tails)
        from threadpoolctl import threadpool_limits

        blas = threadpool_limits(limits=1, user_api="blas")
        watcher = None
        if settings.reload_interval_s > 0:
            watcher = Watcher(app.state.serving, settings.reload_interval_s)
            watcher.start()
        retrainer = None
        if settings.retrain_interval_s > 0:
            retrainer = Retrainer(app.state.serving, settings.retrain_interval_s)
            retrainer.start()
        try:
            yield
        finally:
            for thread in (watcher, retrainer):
                if thread is not None:
                    thread.stop()
            if callable(close := getattr(llm, "close", None)):
                close()  # the LLM's own process or thread
            blas.restore_original_limits()

    app = FastAPI(
        responses=ERROR_RESPONSES,
        title="lmrec",
        version=__version__,
        description="Recommendations, feedback events and catalog updates.",
        lifespan=lifespan,
    )
    if state is None:
        state = ServingState(Store(settings.db_url), settings.model_dir)
    app.state.settings = settings
    app.state.serving = state
    app.state.metrics = metrics = Metrics()
    app.state.retrain_lock = threading.Lock()
    llm = _llm_backend(settings)
    app.state.explainers = Explainers(llm)
    app.state.generators = Generators(llm)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return JSONResponse(
            {"detail": _message(list(errors)), "errors": _jsonable(errors)}, status_code=422
        )

    @app.exception_handler(UnknownIdError)
    async def unknown(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # the database failed, not the caller: retry later (nothing was acknowledged)
        log.error("store error: %s", exc)
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(LmrecError)
    async def bad_input(request: Request, exc: LmrecError) -> JSONResponse:
        status = 422 if isinstance(exc, InputError | ValueError) else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.include_router(router)

    @app.get("/health", response_model=StatusOut, tags=["ops"])
    def health() -> StatusOut:
        """Liveness: the process answers."""
        return StatusOut(status="ok")

    @app.get("/ready", response_model=StatusOut, tags=["ops"], responses={503: {}})
    def ready() -> Any:
        """Readiness: the store answers and a model is loaded."""
        ok = state.store.ping()
        body = StatusOut(
            status="ready" if ok else "store unavailable", detail=state.current.describe()
        )
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics."""
        metrics.swaps.set(state.swap_count)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        response_model=StatusOut,
        tags=["ops"],
        dependencies=[Depends(require("admin"))],
    )
    def reload() -> StatusOut:
        """Load the model directory again now (after `lmrec retrain`)."""
        swapped = state.reload(force=True)
        return StatusOut(
            status="swapped" if swapped else "unchanged", detail=state.current.describe()
        )

    @app.post(
        "/admin/retrain",
        response_model=StatusOut,
        status_code=202,
        tags=["ops"],
        dependencies=[Depends(require("admin"))],
    )
    def retrain() -> StatusOut:
        """Retrain from stored events in the background, then hot-swap the new model."""
        lock: threading.Lock = app.state.retrain_lock
        if not lock.acquire(blocking=False):
            raise HTTPException(409, "a retrain is already running")
        threading.Thread(target=_retrain_once, args=(state, lock), daemon=True).start()
        return StatusOut(status="started")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_page_html())

    return app


def _llm_backend(settings: ServeSettings) -> Any:
    from lmrec.llm.backends import make_backend
    from lmrec.llm.commands import backend_config

    config = backend_config(settings.llm_backend, settings.llm_timeout_s)
    if config.kind == "llama-cpp" and settings.llm_process:
        # its own process: no interpreter lock shared with the list handlers
        from lmrec.llm.worker import ProcessBackend

        return ProcessBackend(
            config, settings.llm_nice, cpus=settings.llm_cpus, idle=settings.llm_idle
        )
    backend = make_backend(config)
    if settings.llm_nice > 0 and settings.llm_backend != "template":
        from lmrec.serve.llm_thread import NicedBackend

        return NicedBackend(backend, settings.llm_nice)
    return backend


def _jsonable(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))})
    return out


def _page_html() -> str:
    try:
        return (resources.files("lmrec.serve") / "static" / "index.html").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return "<!doctype html><title>lmrec</title><p>lmrec service: see <a href=/docs>/docs</a>"


def _retrain_once(state: ServingState, lock: threading.Lock | None = None) -> None:
    from lmrec.serve.retrain import retrain

    try:
        retrain(state.store, state.model_dir)
        state.reload()
    except Exception:
        log.exception("retrain failed; still serving %s", state.current.version)
    finally:
        if lock is not None:
            lock.release()


class Retrainer(threading.Thread):
    """Background thread: retrain on a fixed schedule."""

    def __init__(self, state: ServingState, interval_s: float) -> None:
        super().__init__(name="lmrec-retrainer", daemon=True)
        self.state = state
        self.interval_s = interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            _retrain_once(self.state)

    def stop(self) -> None:
        self.stop_event.set()
