"""The LLM in its own low-priority process: answers, failures, a dead or hung child."""

from __future__ import annotations

import os
import time

import pytest

from lmrec.llm.backends import BackendConfig
from lmrec.llm.constrain import OrderSpec
from lmrec.llm.types import Generation, GenerationError, Message, generate_many
from lmrec.llm.worker import ProcessBackend

CHAT = [Message("system", "Answer briefly."), Message("user", "Say hello.")]


@pytest.fixture(scope="module")
def smol() -> ProcessBackend:
    backend = ProcessBackend(
        BackendConfig(kind="llama-cpp", model="smollm2-135m", timeout_s=60, n_ctx=1024),
        niceness=5,
    )
    yield backend  # type: ignore[misc]
    backend.close()


def test_child_answers_at_lower_priority(smol: ProcessBackend) -> None:
    gen = smol.generate(CHAT, max_tokens=8)
    assert isinstance(gen, Generation) and gen.text.strip() and gen.completion_tokens > 0
    assert "smollm2-135m" in smol.name and smol.languages == ("en",)
    pid = smol.pid
    assert pid is not None and pid != os.getpid()
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(mine + 5, 19)
    # llama.cpp's threads in the child inherit the priority
    tasks = os.listdir(f"/proc/{pid}/task")
    assert len(tasks) >= 2
    assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in tasks} == {min(mine + 5, 19)}


def test_many_in_one_pass_with_order(smol: ProcessBackend) -> None:
    order = OrderSpec(n=4, k=3)
    ask = [Message("user", f"Rank items 1-4. Answer {order.opening}")]
    out = generate_many(smol, [ask, ask], max_tokens=16, order=order)
    assert len(out) == 2 and all(isinstance(g, Generation) for g in out)
    assert out[0].text == out[1].text  # greedy: equal chats, equal answers


def test_a_failing_start_is_a_generation_error() -> None:
    # a .gguf path that is not a model: the child reports why it could not start
    backend = ProcessBackend(BackendConfig(kind="llama-cpp", model="/nonexistent/m.gguf"))
    with pytest.raises(GenerationError, match=r"could not start.*m\.gguf"):
        backend.generate(CHAT)
    t0 = time.monotonic()  # a bad config fails at once for a while: no child per request
    with pytest.raises(GenerationError, match=r"could not start.*m\.gguf"):
        backend.generate(CHAT)
    assert time.monotonic() - t0 < 0.1 and backend.pid is None
    assert backend.languages is None
    backend.close()


def test_a_killed_child_fails_the_call_and_the_next_call_restarts_it(
    smol: ProcessBackend,
) -> None:
    smol.generate(CHAT, max_tokens=2)
    old = smol.pid
    assert old is not None
    os.kill(old, 9)
    time.sleep(0.2)
    with pytest.raises(GenerationError, match="LLM process"):
        smol.generate(CHAT, max_tokens=2)
    assert smol.generate(CHAT, max_tokens=2).text.strip()  # a fresh child
    assert smol.pid not in (None, old)


def test_a_hung_child_is_stopped_at_the_deadline(smol: ProcessBackend) -> None:
    backend = ProcessBackend(
        BackendConfig(kind="llama-cpp", model="smollm2-135m", timeout_s=60, n_ctx=1024),
        deadline_s=1.0,
    )
    backend.wait_ready()
    pid = backend.pid
    assert pid is not None
    os.kill(pid, 19)  # SIGSTOP: alive but silent
    t0 = time.monotonic()
    with pytest.raises(GenerationError, match="no answer within 1 s"):
        backend.generate(CHAT, max_tokens=4)
    assert time.monotonic() - t0 < 10
    assert backend.pid is None  # stopped, not left behind
    backend.close()


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and 2 CPUs",
)
def test_the_child_can_be_kept_to_fewer_cpus() -> None:
    mine = sorted(os.sched_getaffinity(0))
    backend = ProcessBackend(
        BackendConfig(kind="llama-cpp", model="smollm2-135m", timeout_s=60, n_ctx=1024), cpus=1
    )
    assert backend.generate(CHAT, max_tokens=4).text.strip()
    pid = backend.pid
    assert pid is not None
    assert os.sched_getaffinity(pid) == {mine[-1]}  # its threads too: they inherit it
    assert all(os.sched_getaffinity(int(t)) == {mine[-1]} for t in os.listdir(f"/proc/{pid}/task"))
    assert os.sched_getaffinity(0) == set(mine)  # the caller keeps every CPU
    backend.close()
    every = ProcessBackend(BackendConfig(kind="template"), cpus=len(mine))
    assert every.cpus is None  # as many as there are: no restriction
    every.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="needs Linux's SCHED_IDLE")
def test_the_child_can_run_under_sched_idle() -> None:
    backend = ProcessBackend(
        BackendConfig(kind="llama-cpp", model="smollm2-135m", timeout_s=60, n_ctx=1024),
        idle=True,
    )
    assert backend.generate(CHAT, max_tokens=4).text.strip()
    pid = backend.pid
    assert pid is not None
    tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    assert len(tasks) >= 2  # llama.cpp's threads inherit the policy
    assert {os.sched_getscheduler(t) for t in tasks} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller keeps its own
    backend.close()
