"""Parallel greedy decoding over a shared prefix, with the real packaged SmolLM2."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmrec.llm.backends import FallbackBackend, LlamaCppBackend, TemplateBackend
from lmrec.llm.constrain import NumberListState, OrderSpec, valid_number_list
from lmrec.llm.parallel import ParallelDecoder, chat_formatter, chat_tokens, common_prefix
from lmrec.llm.types import Generation, GenerationError, Message, generate_many

SYSTEM = "You answer in one short English sentence."
QUESTIONS = [
    "What colour is the sky on a clear day?",
    "Name a fruit that is yellow.",
    "What do bees make?",
    "Which animal says moo?",
    "What is frozen water called?",
]


def chat(question: str) -> list[Message]:
    return [Message("system", SYSTEM), Message("user", question)]


@pytest.fixture(scope="module")
def llama(smollm2_path: Path) -> Any:
    import llama_cpp

    return llama_cpp.Llama(model_path=str(smollm2_path), n_ctx=1024, logits_all=True, verbose=False)


@pytest.fixture(scope="module")
def prompts(llama: Any) -> list[list[int]]:
    fmt = chat_formatter(llama)
    return [chat_tokens(llama, fmt, chat(q)) for q in QUESTIONS]


def reference_logits(llama: Any, prompt: list[int]) -> np.ndarray:
    """llama-cpp-python's own logits after ``prompt``, read alone from an empty cache."""
    llama.reset()
    llama.eval(prompt)
    return np.array(llama.scores[llama.n_tokens - 1], dtype=np.float64)


def greedy(llama: Any, prompt: list[int], n: int) -> str:
    """llama-cpp-python's own greedy continuation of one prompt."""
    llama.reset()
    out = []
    for tok in llama.generate(prompt, temp=0.0, top_k=1, reset=True):
        if len(out) == n:
            break
        out.append(int(tok))
    return str(llama.detokenize(out).decode("utf-8", errors="ignore"))


def test_common_prefix() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[1], [2]]) == 0 and common_prefix([]) == 0
    assert common_prefix([[5, 6]]) == 2


def test_parallel_decoding_matches_one_at_a_time(llama: Any, prompts: list[list[int]]) -> None:
    # the prompts share the system part: it is read once into sequence 0 and copied
    assert common_prefix(prompts) > 10
    dec = ParallelDecoder(llama, max_seqs=8, n_ctx=2048)
    logits = dec.next_logits(prompts)
    assert logits.shape == (len(prompts), llama.n_vocab())
    for p, row in zip(prompts, logits, strict=True):
        ref = reference_logits(llama, p)
        # same next token and the same distribution up to float noise. llama.cpp's own
        # logits move by up to ~1 (of a ~35 range) when it reads one prompt in chunks of 7
        # instead of 512 (measured), and greedy texts can then part at a near-tie; a wrong
        # position or a lost prefix would move them far more
        span = ref.max() - ref.min()
        assert int(row.argmax()) == int(ref.argmax())
        assert np.abs(row - ref).max() < 0.06 * span
        assert np.abs(row - ref).mean() < 0.02 * span
        assert np.corrcoef(row, ref)[0, 1] > 0.999
    n = 12
    got = dec.run(prompts, n)
    assert len(got) == len(prompts)
    for p, d in zip(prompts, got, strict=True):
        assert d.prompt_tokens == len(p) and 0 < d.completion_tokens <= n
        assert d.finish_reason == ("length" if d.completion_tokens == n else "stop")
        first_word = greedy(llama, p, 2)
        assert d.text.startswith(first_word), (d.text, first_word)
    # equal calls, equal output; the kept prefix gives what a fresh context gives
    assert dec.run(prompts, n) == got
    assert ParallelDecoder(llama, n_ctx=2048).run(prompts, n) == got
    dec.close()


def test_groups_stop_strings_and_limits(llama: Any, prompts: list[list[int]]) -> None:
    dec = ParallelDecoder(llama, max_seqs=2, n_ctx=2048)
    many = dec.run(prompts, 8)  # 5 prompts in groups of at most 2
    assert len(many) == len(prompts) and all(d.text for d in many)
    assert many[4] == dec.run(prompts[4:], 8)[0]  # the last group held it alone
    first = many[0].text
    cut = next(c for c in first[1:] if c.isalpha())  # a letter the answer writes
    stopped = dec.run(prompts[:1], 8, stop=(cut,))[0]
    assert stopped.finish_reason == "stop" and cut not in stopped.text
    assert first.startswith(stopped.text)
    with pytest.raises(GenerationError, match="exceeds the context"):
        dec.run([prompts[0] * 100], 8)
    with pytest.raises(GenerationError, match="empty prompt"):
        dec.run([[]], 8)
    with pytest.raises(GenerationError, match="max_tokens"):
        dec.run(prompts, 0)


def test_constrained_decoding_writes_valid_distinct_numbers(
    llama: Any, prompts: list[list[int]]
) -> None:
    dec = ParallelDecoder(llama, max_seqs=8, n_ctx=2048)
    spec = OrderSpec(n=12, k=4)
    opening = list(llama.tokenize(spec.opening.encode(), add_bos=False))
    pieces = dec.number_pieces()
    assert pieces and all(set(p) <= set("0123456789, ]") for p in pieces.values())
    states = [NumberListState(spec, pieces) for _ in prompts]
    # the questions are about colours and bees: unconstrained, nobody answers with numbers
    free = dec.run([p + opening for p in prompts], 12)
    assert not all(valid_number_list(d.text, spec) for d in free)
    out = dec.run([p + opening for p in prompts], 40, constraints=states)
    for d, state in zip(out, states, strict=True):
        assert d.finish_reason == "stop" and state.done and d.text == state.text
        numbers = json.loads(spec.opening + d.text + "}")["order"]
        assert 1 <= len(numbers) <= 4 and len(set(numbers)) == len(numbers)
        assert all(1 <= n <= 12 for n in numbers)
    with pytest.raises(GenerationError, match="constraints for"):
        dec.run(prompts, 8, constraints=states[:1])
    dec.close()


def test_backend_generate_many_answers_orders(smollm2: LlamaCppBackend) -> None:
    convs = [chat(q + " Answer with candidate numbers.") for q in QUESTIONS[:3]]
    out = smollm2.generate_many(convs, max_tokens=40, order=OrderSpec(n=20, k=10))
    for g in out:
        order = json.loads(g.text)["order"]
        assert order and len(set(order)) == len(order) <= 10 and max(order) <= 20


def test_backend_generate_many(smollm2: LlamaCppBackend) -> None:
    convs = [chat(q) for q in QUESTIONS]
    out = smollm2.generate_many(convs, max_tokens=16)
    assert [g.backend for g in out] == ["llama-cpp:smollm2-135m"] * len(QUESTIONS)
    assert all(isinstance(g, Generation) and g.text and "\n" not in g.text for g in out)
    again = smollm2.generate_many(convs, max_tokens=16)
    assert [g.text for g in again] == [g.text for g in out]
    # through the helper every backend answers a list; the template backend one by one
    helper = generate_many(smollm2, convs, max_tokens=16)
    assert [g.text for g in helper if isinstance(g, Generation)] == [g.text for g in out]
    tmpl = generate_many(TemplateBackend(), convs, max_tokens=16)
    assert all(isinstance(g, Generation) and g.text == "{}" for g in tmpl)


def test_generate_many_times_out_and_falls_back(smollm2_path: Path) -> None:
    slow = LlamaCppBackend(smollm2_path, n_ctx=1024, timeout_s=60.0)
    convs = [chat(q) for q in QUESTIONS]
    warm = slow.generate_many(convs, max_tokens=4)  # loads the model, keeps the prefix
    slow.timeout_s = 0.05
    start = time.monotonic()
    with pytest.raises(GenerationError, match="timed out"):
        slow.generate_many([chat(q + " Explain.") for q in QUESTIONS], max_tokens=200)
    assert time.monotonic() - start < 5
    # the helper returns failures in place; a fallback answers for them
    failed = generate_many(slow, convs[::-1], max_tokens=200)
    assert all(isinstance(g, GenerationError) for g in failed)
    both = FallbackBackend(slow, TemplateBackend()).generate_many(convs[::-1], max_tokens=200)
    assert all(g.fallback and "timed out" in (g.error or "") for g in both)
    # after aborts the decoder still works and its kept prefix was not left half-written
    slow.timeout_s = 60.0
    assert [g.text for g in slow.generate_many(convs, max_tokens=4)] == [g.text for g in warm]
    slow.close()


def test_packaged_models_say_which_languages_they_write(smollm2_path: Path) -> None:
    from lmrec.llm.backends import BackendConfig, make_backend
    from lmrec.llm.local_models import LOCAL_MODELS

    assert LOCAL_MODELS["smollm2-135m"].languages == ("en",)
    assert LOCAL_MODELS["qwen2.5-0.5b"].languages == ("en", "zh")
    made = make_backend(BackendConfig(kind="llama-cpp", model="smollm2-135m"))
    assert getattr(made, "languages", None) == ("en",)
    assert LlamaCppBackend(smollm2_path).languages is None  # a bare file: ask in any
