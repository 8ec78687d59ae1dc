"""A real aiohttp server for the HTTP tests, on 127.0.0.1 and a free port.

In a test, ``with Server() as server:`` runs it on a background thread; ``python
tests/http_server.py`` runs it in its own process and prints ``PORT <n>`` (for benchmarks and
for CLI runs that must outlive a killed client). It records every request it receives (path,
method, monotonic time, requests in flight) and every response it completes, so tests check
behaviour from the server's side.

Endpoints:
    /ok/{name}                      200, a short text body
    /json/{name}                    200, {"name": name}
    /notjson                        200 with content-type JSON but a body that is not JSON
    /slow?s=0.2                     200 after ``s`` seconds
    /status/{code}                  that status, always
    /flaky/{key}?fail=N&code=500    ``code`` for the first N requests to {key}, then 200
                    &after=S        ... with a Retry-After: S header
    /limited/{key}?after=1          429 + Retry-After for ``after`` s from the first hit, then 200
    /reset                          resets the connection (TCP RST), always
    /reset/{key}?n=1                resets the first n requests to {key}, then 200
    /huge?mb=50&length=0            a body of ``mb`` MiB, chunked (length=1: with Content-Length)
    /hang                           never answers
    /echo                           200, JSON of the method, headers and body it got
    /hold/{i}                       waits while ``hold_from <= i`` (``hold()``, ``release()``)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    method: str
    at: float  # time.monotonic() when the request arrived
    in_flight: int = 1  # requests being handled at that moment, this one included


class Server:
    """The test server on a thread of its own (``with Server() as s: s.url("/ok/1")``)."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.answered: Counter[str] = Counter()  # path -> responses completed
        self.hold_from: float = float("inf")
        self.in_flight = 0  # requests being handled now
        self.max_in_flight = 0
        self._counts: Counter[str] = Counter()
        self._limited_until: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # its own, once entered
        self._runner: web.AppRunner | None = None
        self._held: asyncio.Event | None = None
        self.port = 0

    def __enter__(self) -> Server:
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="test-http-server", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def start(self, port: int = 0) -> None:
        app = web.Application(middlewares=[self._record])
        routes = [
            ("/ok/{name}", _ok), ("/json/{name}", _json), ("/notjson", _notjson),
            ("/slow", _slow), ("/status/{code}", _status), ("/flaky/{key}", self._flaky),
            ("/limited/{key}", self._limited), ("/reset", _reset), ("/reset/{key}", self._reset),
            ("/huge", _huge), ("/hang", _hang), ("/echo", _echo), ("/hold/{i}", self._hold),
            ("/bytes", _bytes),
        ]
        for path, handler in routes:
            app.router.add_route("*", path, handler)
        self._held = asyncio.Event()
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=1024).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def times(self, path: str) -> list[float]:
        """Arrival times of the requests to ``path``, in order."""
        return [hit.at for hit in list(self.hits) if hit.path == path]

    def count(self, path: str) -> int:
        return sum(1 for hit in list(self.hits) if hit.path == path)

    def peak(self, prefix: str) -> int:
        """The most requests in flight when a request to a path starting with ``prefix``
        arrived (that one included)."""
        return max((h.in_flight for h in list(self.hits) if h.path.startswith(prefix)), default=0)

    def clear(self) -> None:
        """Forget the requests seen so far (keeps the per-key state of the endpoints)."""
        self.hits.clear()
        self.answered.clear()
        self.max_in_flight = self.in_flight

    def hold(self, start: int = 0) -> None:
        """Hold every /hold/{i} request with ``i >= start`` unanswered until ``release()``."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._new_gate(), self._loop).result(10)
        self.hold_from = start

    async def _new_gate(self) -> None:
        self._held = asyncio.Event()  # a fresh one: the last release() left the old one set

    def release(self) -> None:
        """Let every held /hold/{i} request answer, and hold no more."""
        self.hold_from = float("inf")
        held, loop = self._held, self._loop
        if held is not None and loop is not None:
            loop.call_soon_threadsafe(held.set)

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        self.hits.append(Hit(request.path, request.method, time.monotonic(), self.in_flight))
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await handler(request)
        finally:
            self.in_flight -= 1
        self.answered[request.path] += 1
        return response

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        self._counts[key] += 1
        if self._counts[key] <= int(request.query.get("fail", "1")):
            after = request.query.get("after")  # a Retry-After header, if asked for
            headers = {"Retry-After": after} if after is not None else None
            code = int(request.query.get("code", "500"))
            return web.Response(status=code, text="failing", headers=headers)
        if request.query.get("then") == "hang":  # after the failures, no answer at all
            await asyncio.sleep(3600)
        return web.Response(text=f"ok after {self._counts[key]}")

    async def _limited(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        now = time.monotonic()
        until = self._limited_until.setdefault(key, now + float(request.query.get("after", "1")))
        if now < until:
            wait = max(1, round(until - now + 0.4999))
            return web.Response(status=429, text="slow down", headers={"Retry-After": str(wait)})
        return web.Response(text="ok")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        self._counts[key] += 1
        if self._counts[key] <= int(request.query.get("n", "1")):
            return await _reset(request)
        return web.Response(text="ok")

    async def _hold(self, request: web.Request) -> web.StreamResponse:
        index = int(request.match_info["i"])
        if index >= self.hold_from and self._held is not None:
            await self._held.wait()
        return web.Response(text=f"item {index}")


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"ok {request.match_info['name']}")


async def _json(request: web.Request) -> web.StreamResponse:
    return web.json_response({"name": request.match_info["name"]})


async def _notjson(request: web.Request) -> web.StreamResponse:
    return web.Response(text="{not json", content_type="application/json")


async def _slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("s", "0.2")))
    return web.Response(text="slow")


async def _status(request: web.Request) -> web.StreamResponse:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def _reset(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()  # with SO_LINGER 0: the peer sees a reset, not a clean close
    await asyncio.sleep(3600)  # cancelled as the connection is gone
    raise AssertionError("unreachable")


async def _huge(request: web.Request) -> web.StreamResponse:
    size = int(float(request.query.get("mb", "50")) * 2**20)
    response = web.StreamResponse()
    if request.query.get("length") == "1":
        response.content_length = size
    await response.prepare(request)
    chunk = b"x" * 2**16
    try:
        for _ in range(size // len(chunk)):
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        return response
    await response.write_eof()
    return response


async def _bytes(request: web.Request) -> web.StreamResponse:
    """Latin-1 text, "caf\\xe9" (not UTF-8), sent with ``?charset=`` or no charset at all."""
    charset = request.query.get("charset")
    content_type = "text/plain" + (f"; charset={charset}" if charset else "")
    return web.Response(body=b"caf\xe9", headers={"Content-Type": content_type})


async def _hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    payload: dict[str, Any] = {
        "method": request.method,
        "headers": dict(request.headers),
        "body": body.decode("utf-8", "replace"),
        "query": dict(request.query),
    }
    return web.json_response(payload)


async def _serve_forever(port: int) -> None:
    server = Server()
    await server.start(port)
    print(f"PORT {server.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _fast_app() -> web.Application:
    """The benchmark server: /ok/{name} only, no logging middleware."""
    app = web.Application()
    app.router.add_get("/ok/{name}", _ok)
    return app


async def _serve_fast(port: int) -> None:
    runner = web.AppRunner(_fast_app(), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock, backlog=4096).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    fast = "--fast" in sys.argv
    asyncio.run(_serve_fast(0) if fast else _serve_forever(0))
