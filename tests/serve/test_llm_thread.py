"""The service's LLM thread: lower CPU priority for the model, and for llama.cpp's workers."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from lmrec.llm.backends import LlamaCppBackend
from lmrec.llm.local_models import ensure_model
from lmrec.llm.types import Generation, GenerationError, Message
from lmrec.serve.llm_thread import NicedBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="needs POSIX priorities")
CHAT = [Message("user", "Say hello.")]


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


class Recording:
    """Answers with the nice value and thread of the call."""

    name = "recording"
    languages = ("en",)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def generate(self, messages: Sequence[Message], **kw: object) -> Generation:
        if messages[-1].content == "fail":
            raise GenerationError("recording: refused")
        tid = threading.get_native_id()
        self.seen.append((tid, nice_of(tid)))
        return Generation(str(kw.get("max_tokens")), self.name)

    def generate_many(self, conversations: Sequence[Sequence[Message]], **kw: object) -> list:  # type: ignore[type-arg]
        return [(self.generate(c), kw.get("order")) for c in conversations]


def test_calls_run_on_one_thread_with_lower_priority() -> None:
    mine = threading.get_native_id()
    base = nice_of(mine)
    inner = Recording()
    backend = NicedBackend(inner, niceness=3)  # type: ignore[arg-type]
    assert backend.name == "recording" and backend.languages == ("en",)
    assert backend.generate(CHAT, max_tokens=7).text == "7"
    assert backend.generate(CHAT).text == "256"
    (tid, nice), (tid2, _) = inner.seen
    assert tid == tid2 != mine and nice == min(base + 3, 19) == backend.nice
    assert nice_of(mine) == base  # the caller's own priority is untouched
    many = backend.generate_many([CHAT, CHAT], order="spec")  # type: ignore[attr-defined]
    assert [o for _, o in many] == ["spec", "spec"] and inner.seen[-1][0] == tid
    with pytest.raises(GenerationError, match="refused"):
        backend.generate([Message("user", "fail")])
    backend.close()
    plain = NicedBackend(type("NoMany", (), {"name": "x", "generate": Recording.generate})())  # type: ignore[arg-type]
    assert not hasattr(plain, "generate_many")  # the helper then asks one by one
    plain.close()


def test_llama_cpp_worker_threads_inherit_the_lower_priority() -> None:
    model: Path = ensure_model("smollm2-135m")
    base = nice_of(threading.get_native_id())
    backend = NicedBackend(LlamaCppBackend(model, n_ctx=512, n_threads=2), niceness=5)
    backend.generate(CHAT, max_tokens=4)
    niced = [t for t in os.listdir("/proc/self/task") if nice_of(int(t)) == min(base + 5, 19)]
    # the LLM thread and at least one llama.cpp worker it started
    assert len(niced) >= 2, niced
    backend.close()
