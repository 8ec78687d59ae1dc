"""plait.http promises pinned down by mutation testing (``./dev mutants http``, issue 9): the
exact errors and messages a failed request gets, the host gate's adaptive limit, against the
real aiohttp test server on 127.0.0.1 (tests/http_server.py) where the case can be made there.

A few of aiohttp's errors cannot be produced on 127.0.0.1 at will (an error whose message is
empty, an error of no known kind): for those, ``translate`` itself is called with the error.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from http_server import Server

from plait.http import (
    ConnectionFailed,
    FetchError,
    InvalidRequest,
    Request,
    RequestTimeout,
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
