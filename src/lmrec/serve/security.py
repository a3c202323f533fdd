"""API keys with two roles, loopback-only access without keys, and a request-size cap."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from lmrec.serve.settings import ServeSettings, is_loopback

Role = Literal["client", "admin"]
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="A client key (events, lists) or an admin key (everything).",
)


def _matches(key: str, keys: list[str]) -> bool:
    # compare against every key so the time taken says nothing about which one matched
    hit = False
    for k in keys:
        hit |= hmac.compare_digest(key.encode("utf-8"), k.encode("utf-8"))
    return hit


def role_of(settings: ServeSettings, request: Request, key: str | None) -> Role | None:
    """The caller's role, or None when they may not call at all."""
    if settings.open_access:
        client = request.client.host if request.client else None
        return "admin" if is_loopback(client) else None
    if not key:
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else None
    if not key:
        return None
    if _matches(key, settings.admin_keys):
        return "admin"
    if _matches(key, settings.client_keys):
        return "client"
    return None


def require(role: Role) -> Callable[..., Awaitable[Role]]:
    """A dependency that lets through callers holding ``role`` (admin holds both)."""

    async def check(request: Request, key: str | None = Security(api_key_header)) -> Role:
        settings: ServeSettings = request.app.state.settings
        have = role_of(settings, request, key)
        if have is None:
            if settings.open_access:
                raise HTTPException(403, "no API key is configured: only loopback clients")
            raise HTTPException(401, "missing or wrong API key (send X-API-Key)")
        if role == "admin" and have != "admin":
            raise HTTPException(403, "this needs an admin key")
        return have

    return check


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _reject(send, 400, "bad Content-Length header")
                return
            if too_big:
                await _reject(send, 413, f"request body over {self.max_bytes} bytes")
                return
        seen = 0
        rejected = False

        async def capped() -> MutableMapping[str, Any]:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, capped, send)
        except _TooLarge:
            if rejected:
                await _reject(send, 413, f"request body over {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
