"""plait.http promises pinned down by mutation testing (``./dev mutants http``, issue 9): the
exact errors and messages a failed request gets, the host gate's adaptive limit, against the
real aiohttp test server on 127.0.0.1 (tests/http_server.py) where the case can be made there.

A few of aiohttp's errors cannot be produced on 127.0.0.1 at will (an error whose message is
empty, an error of no known kind): for those, ``translate`` itself is called with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
from conftest import wait_until
from http_server import Server

from plait.http import (
    ConnectionFailed,
    FetchError,
    InvalidRequest,
    Request,
    RequestTimeout,
    Response,
    afetch_all,
    fetch_all,
)
from plait.http._config import make_config
from plait.http._wire import translate

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full: a new connection's SYN is dropped, so connecting
    times out (the way a firewalled or overloaded host behaves), on Linux at once."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with contextlib.suppress(BlockingIOError):  # it completes in the queue
                    filler.connect(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_a_connect_timeout_names_the_connect_limit(full_backlog: int) -> None:
    (r,) = fetch_all(
        [f"http://127.0.0.1:{full_backlog}/"], connect_timeout=0.2, timeout=20, retries=0
    )
    assert isinstance(r.error, RequestTimeout)
    assert str(r.error) == "no connect within 0.2 s"
    assert isinstance(r.error.__cause__, aiohttp.ConnectionTimeoutError)


def test_a_dropped_connection_says_what_dropped_it(server: Server) -> None:
    (r,) = fetch_all([server.url("/reset")], retries=0)
    cause = r.error.__cause__ if r.error is not None else None
    assert isinstance(r.error, ConnectionFailed) and isinstance(cause, Exception)
    assert str(cause)  # aiohttp says "Server disconnected" or the like
    assert str(r.error) == f"{type(cause).__name__}: {cause}"


def test_a_request_that_cannot_be_sent_says_why(server: Server) -> None:
    (r,) = fetch_all([Request(server.url("/echo"), json={1, 2})], retries=0)
    assert isinstance(r.error, InvalidRequest) and isinstance(r.error.__cause__, TypeError)
    assert str(r.error) == f"cannot send the request: TypeError: {r.error.__cause__}"


def test_errors_without_a_message_or_of_no_known_kind_keep_their_name() -> None:
    config = make_config()
    reset = translate(ConnectionResetError(), "example.com", config)
    assert isinstance(reset, ConnectionFailed) and str(reset) == "ConnectionResetError"
    assert isinstance(reset.__cause__, ConnectionResetError)
    odd = RuntimeError("boom")
    other = translate(odd, "example.com", config)
    assert type(other) is FetchError and str(other) == "RuntimeError: boom"
    assert other.__cause__ is odd


# --- adaptive concurrency: the exact limits ------------------------------------------------


def _in_flight_while_held(server: Server, urls: list[str], **options: object) -> int:
    """Run ``urls`` (ending in /hold/ requests the server keeps unanswered) in the background;
    how many requests are in flight once the run has settled against the held ones."""
    server.hold(0)
    results: list[Response] = []
    consumer = threading.Thread(
        target=lambda: results.extend(fetch_all(urls, retries=0, **options))  # type: ignore[arg-type]
    )
    consumer.start()
    try:
        assert wait_until(lambda: any(h.path.startswith("/hold/") for h in list(server.hits)), 10)
        time.sleep(0.3)  # time for more to arrive, if the cap did not hold them
        in_flight = server.in_flight
    finally:
        server.release()
        consumer.join(10)
    assert len(results) == len(urls) and all(r.ok for r in results if "/hold/" in r.url)
    return in_flight


def test_adaptive_concurrency_halves_down_to_one(server: Server) -> None:
    """per_host=2: two requests answered 429 at once halve it once, to 1 (never 0)."""
    urls = [server.url("/status/429")] * 2 + [server.url(f"/hold/{i}") for i in range(4)]
    assert _in_flight_while_held(server, urls, concurrency=8, per_host=2, adaptive=True) == 1


def test_adaptive_concurrency_counts_successes_from_the_cut(server: Server) -> None:
    """Cut to 4, it takes 4 successes to grow by one: after 3 it still holds at 4."""
    urls = (
        [server.url("/status/429")] * 8
        + [server.url(f"/ok/{i}") for i in range(3)]
        + [server.url(f"/hold/{i}") for i in range(8)]
    )
    assert _in_flight_while_held(server, urls, concurrency=8, adaptive=True) == 4


# --- afetch_all's progress bar ---------------------------------------------------------------


def test_afetch_all_progress_bar_counts_failures(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    async def main() -> list[Response]:
        urls = [server.url("/ok/1"), server.url("/status/404")]
        return [r async for r in afetch_all(urls, progress=True, retries=0)]

    results = asyncio.run(asyncio.wait_for(main(), 10))
    assert [r.status for r in results] == [200, 404]
    assert "ok=1 failed=1 retrying=0" in capsys.readouterr().err
