"""The service's LLM calls on one low-priority thread, so lists stay fast while it writes.

A local model keeps both cores busy for seconds per explanation list; list requests served
meanwhile (a few milliseconds of work each) would wait for CPU behind it. `NicedBackend`
runs every call of the wrapped backend on one dedicated thread whose OS scheduling priority
is lowered (Linux lets a thread raise its own niceness). The threads llama.cpp starts for
its work are created by that thread and inherit its niceness, so the kernel serves the list
requests first and gives the LLM whatever CPU is left.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lmrec.llm.types import Backend, Generation, Message

log = logging.getLogger(__name__)
T = TypeVar("T")


def lower_priority(niceness: int) -> int | None:
    """Add ``niceness`` to the calling thread's (Linux) nice value; returns the new value,
    or None where threads have no nice value of their own or the OS refuses."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return None
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(now + niceness, 19))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as e:  # e.g. a sandbox that forbids it: serve at normal priority
        log.warning("could not lower the LLM thread's priority: %s", e)
        return None


class NicedBackend:
    """Every call of ``inner`` on one thread with its priority lowered by ``niceness``.

    Calls are serialised (the local backends serialise them anyway). The caller's thread
    waits for the answer; timeouts stay the inner backend's.

    Args:
        inner: The backend to run.
        niceness: How much lower than the service the LLM thread runs (1-19).
    """

    def __init__(self, inner: Backend, niceness: int = 10) -> None:
        self.inner = inner
        self.name = inner.name
        self.languages = getattr(inner, "languages", None)
        self.niceness = niceness
        self.nice: int | None = None  # the thread's nice value once it started
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lmrec-llm", initializer=self._start)
        if callable(getattr(inner, "generate_many", None)):
            self.generate_many = self._generate_many

    def _start(self) -> None:
        self.nice = lower_priority(self.niceness)

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """The inner backend's `generate`, on the LLM thread."""
        return self._run(
            self.inner.generate,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            grammar=grammar,
        )

    def _generate_many(self, conversations: Sequence[Sequence[Message]], **kwargs: Any) -> Any:
        return self._run(self.inner.generate_many, conversations, **kwargs)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop the thread (after the call in progress)."""
        self._pool.shutdown(wait=True)


__all__ = ["NicedBackend", "lower_priority"]
