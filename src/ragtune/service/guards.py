"""What keeps one client from holding or flooding the server: body limits and timeouts, the
header-read bound, and the refusal to listen publicly without keys.

    >>> app.add_middleware(BodyLimit, limit_for=lambda path: 1_000_000, timeout=30.0)
    >>> uvicorn.run(app, http=header_timeout_protocol(10.0))
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

from ragtune.errors import ConfigError
from ragtune.service.errors import error_response
from ragtune.service.keys import KeyStore


class BodyLimit:
    """ASGI middleware: reads every request body whole before the app sees it, and refuses
    one over `limit_for(path)` bytes with 413 (an announced length before reading, chunks as
    they come) and one that takes over `timeout` seconds to arrive with 408, so a client that
    sends slowly holds no worker (the header read is bounded by `HeaderTimeoutH11`)."""

    def __init__(self, app: Any, limit_for: Callable[[str], int], timeout: float = 30.0
                 ) -> None:
        self.app, self.limit_for, self.timeout = app, limit_for, timeout

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = error_response(413, "too_large", f"request body over {limit} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await too_large(scope, receive, send)
            return
        parts, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                await error_response(408, "timeout", f"request body not received within "
                                     f"{self.timeout:g} s")(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            more = message.get("more_body", False)
            if size > limit:
                await too_large(scope, receive, send)
                return
        body = b"".join(parts)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol with a bound on the header read: a connection that has not
    sent a whole request head within `seconds` of opening (or of its last response) is
    closed, so slow clients cannot hold connections open (uvicorn bounds only idle keep-alive).

        >>> uvicorn.run(app, http=header_timeout_protocol(10.0))
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(seconds, self._head_late)

        def _head_late(self) -> None:
            # IDLE: no whole request head since the timer was armed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutH11


def check_bind(host: str, keys: KeyStore) -> None:
    """Without any active key the server only listens on a loopback address."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not keys.any_active():
        raise ConfigError(f"refusing to listen on {host}: no API key exists; create one with "
                          "`ragtune keys create --scope read` first (or bind 127.0.0.1)")
