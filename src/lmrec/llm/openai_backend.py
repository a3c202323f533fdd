"""`OpenAIBackend`: any server with the OpenAI chat-completions API, over httpx.

For example ``python -m llama_cpp.server``, vLLM or a hosted API. `lmrec.llm.backends`
re-exports it; the request helpers here are shared with the other backends.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from lmrec.errors import ConfigError
from lmrec.llm.types import Generation, GenerationError, Message

if TYPE_CHECKING:
    from lmrec.llm.constrain import OrderSpec

log = logging.getLogger(__name__)

_MAX_RESPONSE = 8 << 20  # bytes; a chat completion is a few KB


def check_request(messages: Sequence[Message], max_tokens: int) -> None:
    """Raise `GenerationError` for a request no backend can serve."""
    if not messages:
        raise GenerationError("no messages to complete")
    if max_tokens < 1:
        raise GenerationError(f"max_tokens must be >= 1, got {max_tokens}")


def as_chat(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the role/content dicts of the chat-completions API."""
    return [{"role": m.role, "content": m.content} for m in messages]


class OpenAIBackend:
    """A server with the OpenAI chat-completions API, over HTTP.

    Connection errors, HTTP 429 and 5xx are retried with a short exponential backoff while
    the timeout allows; other 4xx fail at once with the server's message. ``timeout_s``
    bounds the whole call including retries (a server that trickles bytes can stretch one
    attempt to at most twice that). A ``grammar`` goes in the request's ``grammar`` field,
    which llama.cpp's servers honour and others may ignore or refuse.

    Args:
        base_url: The server, with or without the trailing ``/v1``.
        model: The model name sent in each request.
        api_key: Sent as a bearer token when given.
        timeout_s: Seconds one `generate` may take in all.
        retries: Extra attempts after a transient failure.
        backoff_s: The first wait between attempts (doubling each time).
        concurrency: Requests in flight at once in `generate_many` (a list of
            explanations, a batch of users): servers batch them, so a list takes about
            the time of its slowest reply rather than the sum.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        concurrency: int = 4,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or concurrency < 1:
            raise ConfigError(
                "need timeout_s > 0, retries >= 0, backoff_s >= 0 and concurrency >= 1"
            )
        self.concurrency = concurrency
        base = base_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model, self.timeout_s = model, timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.name = f"openai:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers)

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar: str | None = None,
    ) -> Generation:
        """Complete the chat on the server.

        Raises:
            GenerationError: If the server is unreachable, too slow, refuses the request,
                or answers with something that is not a chat completion.
        """
        return self._complete(messages, max_tokens, temperature, grammar, None)

    def generate_many(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        order: OrderSpec | None = None,
    ) -> list[Generation | GenerationError]:
        """Greedy replies to several chats, up to ``concurrency`` requests at a time.

        As with the in-process backend, each reply ends at the end of its turn or a new
        line; with ``order`` it is an ``{"order": [...]}`` answer (its GBNF sent as the
        ``grammar`` field). Each request has the whole timeout; a failure is returned in
        its conversation's place.
        """
        grammar = None if order is None else order.gbnf()
        stop = None if order is not None else ["\n"]

        def one(messages: Sequence[Message]) -> Generation | GenerationError:
            try:
                return self._complete(messages, max_tokens, 0.0, grammar, stop)
            except GenerationError as e:
                return e

        if len(conversations) <= 1 or self.concurrency == 1:
            return [one(m) for m in conversations]
        workers = min(self.concurrency, len(conversations))
        with ThreadPoolExecutor(workers, thread_name_prefix="lmrec-openai") as pool:
            return list(pool.map(one, conversations))

    def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        grammar: str | None,
        stop: list[str] | None,
    ) -> Generation:
        check_request(messages, max_tokens)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": as_chat(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }
        if grammar:
            body["grammar"] = grammar
        if stop:
            body["stop"] = stop
        start = time.monotonic()
        deadline = start + self.timeout_s
        attempt = 0
        while True:
            error = self._attempt(body, deadline)
            if isinstance(error, dict):
                return self._parse(error, bool(grammar), max_tokens, time.monotonic() - start)
            wait = self.backoff_s * 2**attempt
            if attempt >= self.retries or time.monotonic() + wait >= deadline:
                raise GenerationError(f"{self.name}: {error}")
            log.warning("%s: %s; retrying in %.2f s", self.name, error, wait)
            time.sleep(wait)
            attempt += 1

    def _attempt(self, body: dict[str, Any], deadline: float) -> dict[str, Any] | str:
        """One request: the JSON reply, or why a retry may help (raises when it cannot)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GenerationError(f"{self.name}: timed out after {self.timeout_s:g} s")
        try:
            with self._client.stream("POST", self.url, json=body, timeout=remaining) as resp:
                raw = bytearray()
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > _MAX_RESPONSE:
                        raise GenerationError(f"{self.name}: response larger than 8 MiB")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("deadline passed while reading")
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            return f"cannot reach {self.url}: {e}"
        except httpx.TimeoutException:
            raise GenerationError(
                f"{self.name}: no complete answer from {self.url} within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as e:
            raise GenerationError(f"{self.name}: request to {self.url} failed: {e}") from e
        status = resp.status_code
        if status == 429 or status >= 500:
            return f"HTTP {status} from {self.url}: {_server_message(bytes(raw))}"
        if status != 200:
            raise GenerationError(
                f"{self.name}: HTTP {status} from {self.url}: {_server_message(bytes(raw))}"
            )
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GenerationError(f"{self.name}: response is not valid JSON: {e}") from None
        if not isinstance(reply, dict):
            raise GenerationError(f"{self.name}: response is not a JSON object")
        return reply

    def _parse(
        self, reply: dict[str, Any], grammar: bool, max_tokens: int, seconds: float
    ) -> Generation:
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise GenerationError(f"{self.name}: response has no 'choices' list")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise GenerationError(f"{self.name}: response has no choices[0].message.content")
        if grammar and choices[0].get("finish_reason") == "length":
            raise GenerationError(
                f"{self.name}: output cut off at max_tokens={max_tokens} before the "
                "grammar completed"
            )
        usage = reply.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return Generation(
            text=content,
            backend=self.name,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            seconds=seconds,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _server_message(raw: bytes) -> str:
    """The error message in a server's reply, shortened."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            text = err if isinstance(err, str) else json.dumps(err)
    return (text[:300] + "...") if len(text) > 300 else (text or "(empty body)")


__all__ = ["OpenAIBackend", "as_chat", "check_request"]
