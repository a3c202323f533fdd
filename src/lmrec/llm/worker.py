"""A backend run in its own low-priority process, so a service's requests keep their CPU.

In the service's process a local model competes with list requests for more than the cores:
its Python side (sampling, constraints, the decode loop) holds the interpreter lock between
llama.cpp calls, and a lower-priority thread holding that lock makes a list request wait
behind it (priority inversion). `ProcessBackend` builds the backend from its config in a
child process whose niceness is raised (llama.cpp's threads inherit it) and forwards every
call over a pipe; the caller's thread waits on the pipe without the interpreter lock.

A child that dies, hangs past the deadline or fails to start becomes a `GenerationError`
(the explainers then ship their template sentences); the next call starts a fresh child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from lmrec.llm.types import Generation, GenerationError, Message

log = logging.getLogger(__name__)
#: Seconds a child may take to import and load its model before the first answer.
START_TIMEOUT_S = 120.0
#: Seconds after a failed start during which calls fail at once instead of starting again.
RESTART_BACKOFF_S = 30.0


def _child(
    conn: Connection, config: dict[str, Any], niceness: int, cpus: list[int] | None, idle: bool
) -> None:
    """Child-process entry: lower the priority, build the backend, answer calls until EOF."""
    # Ctrl-C reaches the whole process group: the parent decides when the child stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if idle and hasattr(os, "SCHED_IDLE"):
        # below every nice level: a waking request thread preempts the model's threads at
        # once instead of waiting out their time slice (llama.cpp's threads inherit it)
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if niceness > 0 and hasattr(os, "nice"):
        # a sandbox that forbids it: answer at normal priority
        with contextlib.suppress(OSError):
            os.nice(niceness)
    if cpus and hasattr(os, "sched_setaffinity"):
        # llama.cpp's threads inherit it: the other CPUs stay free for the caller
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
        config = {**config, "n_threads": len(cpus)}
    try:
        from lmrec.llm.backends import BackendConfig, make_backend
        from lmrec.llm.types import generate_many

        backend = make_backend(BackendConfig(**config))
        # a list of chats in one pass where the backend can, else one by one
        methods: dict[str, Callable[..., Any]] = {
            "generate": backend.generate,
            "generate_many": lambda *a, **k: generate_many(backend, *a, **k),
        }
        conn.send(("ready", backend.name, getattr(backend, "languages", None)))
    except Exception as e:  # any start failure is reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            method, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", methods[method](*args, **kwargs)))
        except GenerationError as e:
            conn.send(("generation-error", str(e)))
        except Exception as e:  # the parent makes it a GenerationError
            conn.send(("generation-error", f"{type(e).__name__}: {e}"))


class ProcessBackend:
    """The backend a `BackendConfig` describes, run in a child process at lower priority.

    Calls are serialised (a local model serves one call at a time anyway). The child starts
    at construction and loads its model there; the first call waits for it.

    Args:
        config: What to build in the child (`lmrec.llm.backends.BackendConfig`).
        niceness: How much lower than the caller's the child's CPU priority is (0-19).
        idle: Run the child under Linux's ``SCHED_IDLE`` policy: it gets a CPU only when
            no normal thread wants one (niceness then no longer matters).
        cpus: How many CPUs the child may run on (the last ones of the caller's; its model
            then uses that many threads); 0: all of them.
        deadline_s: Most seconds one call may take, start-up excluded, before the child is
            stopped and the call fails (None: the config's ``timeout_s`` x (retries + 1) x 4,
            room for a list of chats).
    """

    def __init__(
        self,
        config: Any,
        niceness: int = 10,
        deadline_s: float | None = None,
        cpus: int = 0,
        idle: bool = False,
    ) -> None:
        self.config = config
        self.niceness, self.idle = niceness, idle
        mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.cpus: list[int] | None = mine[-cpus:] if 0 < cpus < len(mine) else None
        self.deadline_s = deadline_s or config.timeout_s * (config.retries + 1) * 4
        self.name: str = f"{config.kind}:{config.model}"
        self._languages: tuple[str, ...] | None = None
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._start_failure: tuple[float, str] | None = None  # when and why a start failed
        self._start()
        self.generate_many = self._generate_many

    @property
    def pid(self) -> int | None:
        """The child's process ID (None when none is running)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def languages(self) -> tuple[str, ...] | None:
        """The languages the child's model writes (waits for it to start; None: any)."""
        try:
            self.wait_ready()
        except GenerationError:
            return None
        return self._languages

    def _start(self) -> None:
        ctx = get_context("spawn")  # no fork of a multi-threaded server
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child,
            args=(child, self.config.model_dump(), self.niceness, self.cpus, self.idle),
            name="lmrec-llm",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn, self._ready = parent, False

    def _stop(self) -> None:
        if self._ready:
            log.warning("%s: stopping the LLM process %s", self.name, self.pid)
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(timeout=2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        self._proc, self._conn, self._ready = None, None, False

    def _receive(self, timeout: float, what: str) -> Any:
        assert self._conn is not None and self._proc is not None
        end = time.monotonic() + timeout
        while not self._conn.poll(min(1.0, max(end - time.monotonic(), 0.0))):
            if not self._proc.is_alive():
                code = self._proc.exitcode
                self._stop()
                raise GenerationError(f"{self.name}: the LLM process exited ({code}) {what}")
            if time.monotonic() >= end:
                self._stop()
                raise GenerationError(f"{self.name}: no answer within {timeout:g} s {what}")
        try:
            return self._conn.recv()
        except (EOFError, OSError) as e:
            self._stop()
            raise GenerationError(f"{self.name}: the LLM process failed {what} ({e})") from e

    def _ensure_ready(self) -> None:
        if self._proc is None:
            failed = self._start_failure
            if failed is not None and time.monotonic() - failed[0] < RESTART_BACKOFF_S:
                raise GenerationError(failed[1])  # no new child per request for a bad config
            self._start()
        if self._ready:
            return
        try:
            reply = self._receive(START_TIMEOUT_S, "while starting")
        except GenerationError as e:
            self._start_failure = (time.monotonic(), str(e))
            raise
        if reply[0] != "ready":
            self._stop()
            why = f"{self.name}: the LLM process could not start: {reply[1]}"
            self._start_failure = (time.monotonic(), why)
            raise GenerationError(why)
        self._start_failure = None
        _, self.name, languages = reply
        self._languages = tuple(languages) if languages else None
        self._ready = True

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._ensure_ready()
            assert self._conn is not None
            try:
                self._conn.send((method, args, kwargs))
            except (OSError, ValueError) as e:
                self._stop()
                raise GenerationError(f"{self.name}: the LLM process is gone ({e})") from e
            status, value = self._receive(self.deadline_s, f"in {method}")
        if status != "ok":
            raise GenerationError(value)
        return value

    def wait_ready(self) -> None:
        """Block until the child has loaded its model.

        Raises:
            GenerationError: If it could not start.
        """
        with self._lock:
            self._ensure_ready()

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """The child backend's `generate`.

        Raises:
            GenerationError: If the child's backend failed, or the child died or hung.
        """
        out: Generation = self._call(
            "generate",
            list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            grammar=grammar,
        )
        return out

    def _generate_many(
        self, conversations: Sequence[Sequence[Message]], **kwargs: Any
    ) -> list[Generation | GenerationError]:
        """`lmrec.llm.types.generate_many` over the child's backend: failures in place."""
        convs = [list(c) for c in conversations]
        out: list[Generation | GenerationError] = self._call("generate_many", convs, **kwargs)
        return out

    def close(self) -> None:
        """Stop the child (after the call in progress)."""
        with self._lock:
            self._ready = False  # a planned stop: nothing to warn about
            self._stop()


__all__ = ["ProcessBackend"]
