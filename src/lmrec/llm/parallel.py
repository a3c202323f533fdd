"""Greedy decoding of several prompts at once in one llama.cpp context, sharing their prefix.

Explaining a top-5 list asks five questions that begin alike (the same instructions and
examples) and differ only in their evidence. One at a time, a small model on 2 cores spends
most of its time re-reading the common beginning and then decoding five sentences token by
token. `ParallelDecoder` instead keeps the common prefix in the KV cache of sequence 0 (kept
between calls, so fixed instructions are read once per process), copies it to one sequence
per prompt, reads all the differing suffixes in one batch, and decodes every sequence in the
same forward pass (one token per sequence per step; on a CPU a batch of 5 costs little more
than one). Decoding is greedy (temperature 0), so equal calls give equal outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.llm.constrain import NumberListState, number_list_pieces
from lmrec.llm.types import GenerationError, Message

#: A completion stops when its latest this-many tokens already occurred in it (a loop).
REPEAT = 8


@dataclass(frozen=True)
class Decoded:
    """One prompt's output."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string), "length" or "repeat"


def chat_formatter(llama: Any) -> Any:
    """A formatter for the chat template stored in the GGUF file (as llama-cpp-python builds)."""
    from llama_cpp import llama_chat_format

    template = (llama.metadata or {}).get("tokenizer.chat_template")
    if not template:
        raise GenerationError("the model file has no chat template")
    eos, bos = llama.token_eos(), llama.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
    )


def chat_tokens(llama: Any, formatter: Any, messages: Sequence[Message]) -> list[int]:
    """Token IDs of a chat prompt, ready for the assistant's reply."""
    prompt = formatter(messages=[{"role": m.role, "content": m.content} for m in messages]).prompt
    return list(llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all ``rows`` share."""
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    first = rows[0]
    for r in rows[1:]:
        for i in range(n):
            if r[i] != first[i]:
                n = i
                break
    return n


class ParallelDecoder:
    """Several greedy completions per call over one llama.cpp context (see the module doc).

    Args:
        llama: A loaded ``llama_cpp.Llama``; its model weights are shared, not copied.
        max_seqs: Prompts decoded together (more are done in groups).
        prefixes: Prefixes kept between calls (e.g. one per language's instructions).
        n_ctx: KV cache cells shared by the prefix and every sequence.
        n_threads: Threads for reading prompts.
        decode_threads: Threads for the token-by-token steps.
        abort: A llama.cpp abort callback and its data pointer (the caller's timeout).
    """

    def __init__(
        self,
        llama: Any,
        *,
        max_seqs: int = 8,
        prefixes: int = 2,
        n_ctx: int = 4096,
        n_threads: int = 2,
        decode_threads: int = 1,
        abort: tuple[Any, Any] | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llama = llama
        self.max_seqs = max_seqs
        self.n_threads, self.decode_threads = n_threads, decode_threads
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = min(n_ctx, 512)
        params.n_seq_max = max_seqs + prefixes  # sequences 0..prefixes-1 hold kept prefixes
        params.kv_unified = True  # one pool of cells: the prefix is copied, not duplicated
        params.n_threads, params.n_threads_batch = decode_threads, n_threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(llama._model.model, params)
        if not ctx:
            raise GenerationError("llama.cpp could not create a decoding context")
        self._ctx = ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = int(params.n_batch)
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, max_seqs + prefixes)
        self._vocab = llama._model.vocab
        self._n_vocab = int(llama.n_vocab())
        self._prefixes: list[list[int]] = [[] for _ in range(prefixes)]  # held by slot i
        self._used = [0] * prefixes  # when each slot was last used, for LRU replacement
        self._clock = 0
        self._number_pieces: dict[int, str] | None = None
        if abort is not None:
            llama_cpp.llama_set_abort_callback(ctx, abort[0], abort[1])

    # -- low-level steps ----------------------------------------------------------------
    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Evaluate ``(token, position, sequence, want_logits)`` entries (one batch)."""
        b = self._batch
        b.n_tokens = len(entries)
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        code = int(self._lib.llama_decode(self._ctx, b))
        if code == 2:
            raise GenerationError("aborted")
        if code != 0:
            raise GenerationError(f"llama_decode failed with code {code}")

    def _logits(self, index: int) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._ctx, index)
        if not ptr:
            raise GenerationError(f"llama.cpp has no logits for batch entry {index}")
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def _argmax(self, index: int) -> int:
        return int(self._logits(index).argmax())

    def _choose(self, index: int, state: NumberListState | None) -> int:
        """The most likely next token, among those ``state`` allows when given."""
        if state is None:
            return self._argmax(index)
        allowed = state.allowed()
        if not allowed:
            raise GenerationError(f"no token continues the constrained answer {state.text!r}")
        ids = np.asarray(allowed, dtype=np.int64)
        return int(ids[self._logits(index)[ids].argmax()])

    def number_pieces(self) -> dict[int, str]:
        """This model's tokens that may appear in a number list (see `NumberListState`)."""
        if self._number_pieces is None:
            vocab = {}
            for t in range(self._n_vocab):
                if self._lib.llama_vocab_is_control(self._vocab, t):
                    continue
                piece = self.llama.detokenize([t], special=False)
                if piece and len(piece) <= 8:
                    vocab[t] = piece.decode("utf-8", errors="replace")
            self._number_pieces = number_list_pieces(vocab)
        return self._number_pieces

    def _set_threads(self, n: int) -> None:
        # llama.cpp picks its batch thread count for any batch of more than one token, and
        # a decoding step is a batch of one token per sequence: set both
        self._lib.llama_set_n_threads(self._ctx, n, n)

    def _hold_prefix(self, prefix: list[int]) -> int:
        """A kept-prefix sequence holding exactly ``prefix`` (extending or trimming the slot
        that shares most of it, else the least recently used one); returns its ID."""
        common = [common_prefix([held, prefix]) for held in self._prefixes]
        slot = max(range(len(common)), key=lambda i: (common[i], self._used[i]))
        if 2 * common[slot] < len(self._prefixes[slot]):
            # it would lose most of what it holds (English and Chinese instructions begin
            # alike): take the least recently used slot instead
            slot = min(range(len(common)), key=lambda i: self._used[i])
        self._clock += 1
        self._used[slot] = self._clock
        held, keep = self._prefixes[slot], common[slot]
        if keep < len(held):
            self._lib.llama_memory_seq_rm(self._mem, slot, keep, -1)
            del held[keep:]
        self._set_threads(self.n_threads)
        for start in range(keep, len(prefix), self.n_batch):
            chunk = prefix[start : start + self.n_batch]
            try:
                self._decode([(t, start + j, slot, False) for j, t in enumerate(chunk)])
            except GenerationError:
                self._lib.llama_memory_seq_rm(self._mem, slot, len(held), -1)
                raise
            held.extend(chunk)
        return slot

    # -- the call -------------------------------------------------------------------------
    def run(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: int,
        stop: Sequence[str] = (),
        constraints: Sequence[NumberListState] | None = None,
    ) -> list[Decoded]:
        """Greedy completions of token prompts; a completion ends at end of turn, a stop
        string (not included) or ``max_tokens``.

        Args:
            prompts: Token IDs of each prompt.
            max_tokens: Most tokens per completion.
            stop: Strings that end a completion.
            constraints: One fresh state per prompt: its completion takes only tokens the
                state allows and ends when the state is done (its text included).

        Raises:
            GenerationError: If a prompt does not fit, or llama.cpp fails or is aborted.
        """
        if max_tokens < 1:
            raise GenerationError("max_tokens must be at least 1")
        if constraints is not None and len(constraints) != len(prompts):
            raise GenerationError(f"{len(constraints)} constraints for {len(prompts)} prompts")
        out: list[Decoded] = []
        start = 0
        for group in self._groups([list(p) for p in prompts], max_tokens):
            states = None if constraints is None else list(constraints[start : start + len(group)])
            start += len(group)
            out.extend(self._run_group(group, max_tokens, tuple(stop), states))
        return out

    def next_logits(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits of the token after each prompt, ``(len(prompts), n_vocab)`` (e.g. to score
        choices by their first token), read the way `run` reads them.

        Raises:
            GenerationError: If a prompt does not fit, or llama.cpp fails or is aborted.
        """
        rows: list[np.ndarray] = []
        for group in self._groups([list(p) for p in prompts], 1):
            rows.extend(self._read_group(group, lambda i, _: self._logits(i).copy()).values())
        return np.stack(rows) if rows else np.zeros((0, self._n_vocab), np.float32)

    def _groups(self, prompts: list[list[int]], max_tokens: int) -> list[list[list[int]]]:
        """Prompts in groups that fit ``max_seqs`` and the KV cache."""
        if any(not p for p in prompts):
            raise GenerationError("empty prompt")
        groups: list[list[list[int]]] = []
        for p in prompts:
            if len(p) + max_tokens > self.n_ctx:
                raise GenerationError(
                    f"prompt of {len(p)} tokens + {max_tokens} to generate exceeds the "
                    f"context of {self.n_ctx}"
                )
            group = [*groups[-1], p] if groups else None
            if (
                group is None
                or len(group) > self.max_seqs
                or self._cells(group, max_tokens) > (self.n_ctx)
            ):
                groups.append([p])
            else:
                groups[-1] = group
        return groups

    def _cells(self, group: list[list[int]], max_tokens: int) -> int:
        shared = min(common_prefix(group), min(len(p) for p in group) - 1)
        kept = sum(len(h) for h in self._prefixes)  # other slots keep their cells
        return kept + shared + sum(len(p) - shared + max_tokens for p in group)

    def _read_group(
        self,
        prompts: list[list[int]],
        read: Callable[[int, int], Any],
        then: Callable[..., Any] | None = None,
    ) -> Any:
        """Read the prompts into their own sequences over a kept prefix; ``read(batch_index,
        prompt_index)`` runs on each prompt's last token right after its batch. Returns
        ``{seq: read(..)}``, or ``then(seqs, that)`` while the sequences still exist."""
        lib, mem = self._lib, self._mem
        # every prompt keeps at least its last token: its logits give the first output token
        shared = min(common_prefix(prompts), min(len(p) for p in prompts) - 1)
        slot = self._hold_prefix(prompts[0][:shared])
        first = len(self._prefixes)
        seqs = list(range(first, first + len(prompts)))
        try:
            for s in seqs:
                lib.llama_memory_seq_rm(mem, s, -1, -1)
                lib.llama_memory_seq_cp(mem, slot, s, -1, -1)
            self._set_threads(self.n_threads)
            pending = [
                (tok, pos, s, pos == len(p) - 1)
                for s, p in zip(seqs, prompts, strict=True)
                for pos, tok in enumerate(p[shared:], start=shared)
            ]
            got: dict[int, Any] = {}
            for start in range(0, len(pending), self.n_batch):
                chunk = pending[start : start + self.n_batch]
                self._decode(chunk)
                for i, (_, _, s, last) in enumerate(chunk):
                    if last:
                        got[s] = read(i, s - first)
            return got if then is None else then(seqs, got)
        finally:
            for s in seqs:
                lib.llama_memory_seq_rm(mem, s, -1, -1)

    def _run_group(
        self,
        prompts: list[list[int]],
        max_tokens: int,
        stop: tuple[str, ...],
        states: list[NumberListState] | None,
    ) -> list[Decoded]:
        def generate(seqs: list[int], first: dict[int, int]) -> list[Decoded]:
            self._set_threads(self.decode_threads)
            held = None if states is None else dict(zip(seqs, states, strict=True))
            return self._generate(prompts, seqs, first, max_tokens, stop, held)

        def choose(index: int, prompt: int) -> int:
            return self._choose(index, None if states is None else states[prompt])

        out: list[Decoded] = self._read_group(prompts, choose, generate)
        return out

    def _generate(
        self,
        prompts: list[list[int]],
        seqs: list[int],
        first: dict[int, int],
        max_tokens: int,
        stop: tuple[str, ...],
        states: dict[int, NumberListState] | None = None,
    ) -> list[Decoded]:
        lib, llama = self._lib, self.llama
        out_tokens: dict[int, list[int]] = {s: [] for s in seqs}
        text: dict[int, bytes] = {s: b"" for s in seqs}
        reason: dict[int, str] = {}
        pos = {s: len(p) for s, p in zip(seqs, prompts, strict=True)}
        nxt = dict(first)
        bstop = [x.encode("utf-8") for x in stop]
        grams: dict[int, set[tuple[int, ...]]] = {s: set() for s in seqs}
        while nxt:
            step = []
            for s, tok in nxt.items():
                if lib.llama_vocab_is_eog(self._vocab, tok):
                    reason[s] = "stop"
                    continue
                out_tokens[s].append(tok)
                text[s] += llama.detokenize([tok], special=False)
                hit = [text[s].find(x) for x in bstop if x in text[s]]
                gram = tuple(out_tokens[s][-REPEAT:])
                state = None if states is None else states[s]
                if state is not None:
                    state.advance(tok)
                if state is not None and state.done:
                    reason[s] = "stop"
                elif hit:
                    text[s], reason[s] = text[s][: min(hit)], "stop"
                elif len(gram) == REPEAT and gram in grams[s]:
                    reason[s] = "repeat"  # a small model in a loop: no sense in going on
                elif len(out_tokens[s]) >= max_tokens:
                    reason[s] = "length"
                else:
                    grams[s].add(gram)
                    step.append((tok, pos[s], s, True))
                    pos[s] += 1
            if not step:
                break
            self._decode(step)
            nxt = {
                s: self._choose(i, None if states is None else states[s])
                for i, (_, _, s, _) in enumerate(step)
            }
        return [
            Decoded(
                text=text[s].decode("utf-8", errors="ignore"),
                prompt_tokens=len(p),
                completion_tokens=len(out_tokens[s]),
                finish_reason=reason.get(s, "length"),
            )
            for s, p in zip(seqs, prompts, strict=True)
        ]

    def close(self) -> None:
        """Free the context and batch (the model stays with its `Llama`)."""
        if self._ctx is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None
            self._prefixes = [[] for _ in self._prefixes]

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        with contextlib.suppress(Exception):  # nothing to report at teardown
            self.close()


__all__ = ["Decoded", "ParallelDecoder", "chat_formatter", "chat_tokens", "common_prefix"]
