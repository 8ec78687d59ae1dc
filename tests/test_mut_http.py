"""plait.http promises pinned down by mutation testing (``./dev mutants http``, issue 9): the
exact errors and messages a failed request gets, the host gate's adaptive limit, against the
real aiohttp test server on 127.0.0.1 (tests/http_server.py) where the case can be made there.

A few of aiohttp's errors cannot be produced on 127.0.0.1 at will (an error whose message is
empty, an error of no known kind): for those, ``translate`` itself is called with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from conftest import wait_until
from http_server import Server

import plait
from plait._clock import FakeClock
from plait.http import (
    Backoff,
    BodyTooLarge,
    ConnectionFailed,
    FetchError,
    HTTPStatusError,
    InvalidRequest,
    Request,
    RequestTimeout,
    Response,
    TooManyOpenFiles,
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



def test_adaptive_concurrency_grows_by_one_per_round(server: Server) -> None:
    """Cut to 4: 4 successes grow it to 5, and the count starts again from 0, so 4 more
    successes (one short of a round of 5) leave it at 5."""
    urls = (
        [server.url("/status/429")] * 8
        + [server.url(f"/ok/{i}") for i in range(8)]
        + [server.url(f"/hold/{i}") for i in range(8)]
    )
    assert _in_flight_while_held(server, urls, concurrency=8, adaptive=True) == 5

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



# --- statuses, bodies, Retry-After ------------------------------------------------------------


def test_a_status_without_a_reason_phrase_is_named_by_its_code(server: Server) -> None:
    (r,) = fetch_all([server.url("/status/599")], retries=0)
    assert isinstance(r.error, HTTPStatusError) and r.error.status == 599
    assert str(r.error) == "HTTP 599"


def test_raise_for_error_raises_the_error_or_returns_the_response(server: Server) -> None:
    ok, missing = fetch_all([server.url("/ok/1"), server.url("/status/404")], retries=0)
    assert ok.raise_for_error() is ok
    with pytest.raises(HTTPStatusError) as caught:
        missing.raise_for_error()
    assert caught.value is missing.error


def test_a_body_announced_too_long_is_refused_with_its_length(server: Server) -> None:
    (r,) = fetch_all([server.url("/ok/abc")], max_body=2, retries=0)  # "ok abc", 6 bytes
    assert isinstance(r.error, BodyTooLarge) and r.body is None
    assert str(r.error) == (
        "the body is 6 bytes, more than max_body=2 bytes; "
        "raise max_body (None: no limit) or use read='none'"
    )


FAST = Backoff(initial_s=0.01, max_s=0.05)
SLOW = Backoff(initial_s=5, multiplier=1, max_s=5)  # a full-jitter backoff of up to 5 s


def test_a_retry_in_a_zero_pause_waits_neither_pause_nor_backoff(server: Server) -> None:
    clock = FakeClock()
    url = server.url("/flaky/zero?fail=1&code=429&after=0")
    (r,) = fetch_all([url], backoff=SLOW, clock=clock)
    assert (r.status, r.attempts) == (200, 2)
    assert clock.now() == 0.0


def test_a_pause_that_ended_no_longer_replaces_the_backoff(server: Server) -> None:
    """One run, one host: a 429 + Retry-After: 1 pauses it; a 500 after the pause ended backs
    off again (virtual time passes beyond the pause)."""
    clock = FakeClock()
    urls = [server.url("/flaky/p?fail=1&code=429&after=1"), server.url("/flaky/q?fail=1")]
    first, second = fetch_all(urls, concurrency=1, backoff=SLOW, clock=clock)
    assert (first.attempts, second.attempts) == (2, 2) and first.ok and second.ok
    assert clock.now() > 1.0


def test_the_bar_counts_requests_retrying_at_once(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two requests fail at once and back off together (real time: each for up to 1 s, far
    longer than between their failures); when both are done, none is retrying."""
    urls = [server.url("/flaky/r1?fail=1"), server.url("/flaky/r2?fail=1")]
    wait = Backoff(initial_s=1, multiplier=1, max_s=1)
    results = list(fetch_all(urls, concurrency=2, backoff=wait, progress=True))
    assert [r.attempts for r in results] == [2, 2]
    assert capsys.readouterr().err.rstrip().endswith("ok=2 failed=0 retrying=0]")



def test_text_is_decoded_with_the_charset_the_server_names(server: Server) -> None:
    named, unnamed = fetch_all(
        [server.url("/bytes?charset=latin-1"), server.url("/bytes")], read="text", retries=0
    )
    assert named.body == "caf\xe9"  # "café"
    assert unnamed.body == "caf\ufffd" and unnamed.error is None  # UTF-8, bad bytes replaced
    assert (named.nbytes, unnamed.nbytes) == (4, 4)


def test_a_body_of_exactly_max_body_with_its_length_announced_is_kept(server: Server) -> None:
    (r,) = fetch_all([server.url("/ok/abc")], max_body=6, retries=0)  # "ok abc": 6 bytes
    assert (r.error, r.body) == (None, b"ok abc")


def test_a_body_too_long_keeps_its_status(server: Server) -> None:
    (r,) = fetch_all([server.url("/status/404")], max_body=1, retries=0)  # "status": 6 bytes
    assert isinstance(r.error, BodyTooLarge) and r.error.status == 404


def test_no_max_body_reads_a_body_of_unknown_length_whole(server: Server) -> None:
    (r,) = fetch_all([server.url("/huge?mb=1")], max_body=None, retries=0)  # chunked
    assert r.error is None and r.nbytes == 2**20 and r.body == b"x" * 2**20


# --- fetch_all's arguments -----------------------------------------------------------------


def test_fetch_all_says_what_is_wrong_with_its_arguments() -> None:
    async def urls() -> AsyncIterator[str]:
        yield "http://127.0.0.1:1/"

    for backend in ("asyncio", "dask"):
        with pytest.raises(TypeError) as caught:
            fetch_all(urls(), backend=backend)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "fetch_all takes an iterable; for an async iterable use afetch_all"
        )
    for cluster in ({"address": "tcp://127.0.0.1:1"}, {"client": object()}):
        with pytest.raises(TypeError) as caught:
            fetch_all(["http://127.0.0.1:1/"], **cluster)
        assert str(caught.value) == (
            "address= and client= pick a Dask cluster: pass backend='dask' too"
        )
    with pytest.raises(ValueError) as bad:
        fetch_all(["http://127.0.0.1:1/"], backend="thread")
    assert str(bad.value) == "fetch_all runs on backend='asyncio' or 'dask', not 'thread'"
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        fetch_all(["http://127.0.0.1:1/"], backend="dask", concurrency=0)  # before any cluster
    # checked, the sharded stream is made at once; it reaches for a cluster only when read
    fetch_all(["http://127.0.0.1:1/"], backend="dask", address="tcp://127.0.0.1:1").close()


# --- the optional dependency and the open-files limit, in this process --------------------------
#
# (test_http.py checks both in a child interpreter; mutmut only runs the tests that reach the
# mutated function in the test process itself)


@pytest.mark.parametrize("missing", ["aiohttp", "yarl"])
def test_a_missing_http_dependency_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delitem(sys.modules, "plait.http._engine", raising=False)
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed
    with pytest.raises(plait.BackendUnavailable) as caught:
        fetch_all(["http://127.0.0.1:9/"])
    assert str(caught.value) == (
        "plait.http needs aiohttp, which is not installed. "
        "Install it with: pip install 'plait[http]'"
    )
    assert isinstance(caught.value.__cause__, ImportError)


def test_a_missing_module_of_plait_itself_is_not_taken_for_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "plait.http._engine", raising=False)
    monkeypatch.setitem(sys.modules, "plait.http._hosts", None)
    with pytest.raises(ImportError) as caught:
        fetch_all(["http://127.0.0.1:9/"])
    assert type(caught.value) is ModuleNotFoundError and caught.value.name == "plait.http._hosts"


def test_the_open_files_limit_is_raised_to_what_concurrency_needs() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        fetch_all([], concurrency=low).close()  # checked at the call
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    open_now = len(os.listdir("/proc/self/fd"))
    # the sockets, the files open now, and 64 to spare: no more
    assert low + 64 < raised <= low + 64 + open_now + 8, (raised, open_now)


def test_more_sockets_than_the_hard_limit_allows_are_refused_with_a_fit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard != resource.RLIM_INFINITY and hard > 200, "this test needs a finite hard limit"
    with pytest.raises(TooManyOpenFiles) as caught:
        fetch_all([], concurrency=hard)
    found = re.fullmatch(
        rf"concurrency={hard} needs about (\d+) open files but this process may open "
        rf"at most {hard} \(hard limit\); use concurrency=(\d+) or less, or raise the limit "
        r"\(e\.g\. `ulimit -n (\d+)` in the shell, or LimitNOFILE= in a systemd unit\)",
        str(caught.value),
    )
    assert found is not None, str(caught.value)
    needed, fits, ulimit = map(int, found.groups())
    assert needed == ulimit and needed - hard == hard - fits > 64  # both: the open files + 64


def test_retries_wait_the_backoff_asked_for(server: Server) -> None:
    """Four failures under a backoff of up to 100 s each: virtual time goes far past what the
    default backoff could wait in all (0.1 + 0.2 + 0.4 + 0.8 s)."""
    clock = FakeClock()
    long = Backoff(initial_s=100, multiplier=1, max_s=100)
    (r,) = fetch_all([server.url("/flaky/long?fail=4")], retries=4, backoff=long, clock=clock)
    assert (r.status, r.attempts) == (200, 5)
    assert 1.5 < clock.now() <= 400



# --- one request: its errors, its fields, each attempt on its own -----------------------------


def test_an_attempt_keeps_nothing_of_the_one_before(server: Server) -> None:
    """A 503 with a body, then no answer: the response shows the timeout, not the 503."""
    url = server.url("/flaky/then-hang?fail=1&code=503&then=hang")
    (r,) = fetch_all([url], retries=1, timeout=0.3, backoff=FAST)
    assert r.attempts == 2 and isinstance(r.error, RequestTimeout)
    assert (r.status, r.headers, r.body, r.nbytes) == (None, {}, None, 0)


def test_status_400_is_an_error(server: Server) -> None:
    (r,) = fetch_all([server.url("/status/400")], retries=0)
    assert isinstance(r.error, HTTPStatusError) and r.error.status == 400 and r.attempts == 1


def test_a_request_shows_its_url_and_needs_strings(server: Server) -> None:
    url = server.url("/ok/r")
    good, bad = fetch_all([Request(url), Request(42)], retries=0)  # type: ignore[arg-type]
    assert (good.url, good.ok) == (url, True)
    assert isinstance(bad.error, InvalidRequest) and bad.url == "42"
    assert str(bad.error) == "a Request needs a url and a method that are strings"


def test_an_invalid_input_gets_its_url_and_elapsed_time() -> None:
    started = time.perf_counter()
    (r,) = fetch_all(["not a url"])
    took = time.perf_counter() - started
    assert isinstance(r.error, InvalidRequest) and r.error.url == "not a url"
    assert 0 <= r.elapsed <= took


def test_elapsed_is_the_time_the_request_took(server: Server) -> None:
    started = time.perf_counter()
    (r,) = fetch_all([server.url("/ok/t")])
    assert 0 < r.elapsed <= time.perf_counter() - started


def test_an_input_is_not_read_again_after_it_ended(server: Server) -> None:
    class Counted:
        def __init__(self, urls: list[str]) -> None:
            self.urls, self.calls = iter(urls), 0

        def __iter__(self) -> Counted:
            return self

        def __next__(self) -> str:
            self.calls += 1
            return next(self.urls)

    source = Counted([server.url(f"/ok/{i}") for i in range(3)])
    assert len(list(fetch_all(source, concurrency=4))) == 3
    assert source.calls == 4  # 3 items, then the one StopIteration


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_bug_in_a_worker_reaches_the_caller_as_it_is() -> None:
    """An input whose repr() raises breaks the worker that took it (not a FetchError of
    that item): the run ends with that very error, not an exception group or nothing."""
    with pytest.raises(RuntimeError, match="no repr"):
        list(fetch_all([_NoRepr()]))  # type: ignore[list-item]


def test_bad_urls_say_what_is_wrong_with_them() -> None:
    inputs: list[object] = ["not a url", "http://", "http://[::1/x", 42]
    errors = [r.error for r in fetch_all(inputs, retries=0)]  # type: ignore[arg-type]
    assert all(isinstance(e, InvalidRequest) for e in errors)
    assert [str(e) for e in errors[:2]] == [
        "cannot fetch 'not a url': no scheme; only http:// and https:// URLs work",
        "invalid URL 'http://': no host",
    ]
    assert str(errors[3]) == "expected a URL string or a plait.http.Request, got int"
    assert str(errors[2]).startswith("invalid URL 'http://[::1/x': ")
    assert errors[2] is not None and isinstance(errors[2].__cause__, ValueError)


def test_a_burst_starts_at_once_before_the_rate_spaces_the_rest(server: Server) -> None:
    clock = FakeClock()
    urls = [server.url(f"/ok/{i}") for i in range(3)]
    assert all(r.ok for r in fetch_all(urls, rate="10/s", burst=3, clock=clock))
    assert clock.now() == 0.0  # three starts allowed at once: no wait
    assert all(r.ok for r in fetch_all(urls, rate="10/s", burst=1, clock=clock))
    assert clock.now() == pytest.approx(0.2)  # one at a time: 0.1 s apart


def test_option_errors_name_the_option_and_what_it_accepts() -> None:
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"speed": 1, "color": 2}, TypeError,
         "unknown option(s) color, speed; see help(plait.http.fetch_all)"),
        ({"per_host": 0}, ValueError, "per_host must be a positive integer, got 0"),
        ({"burst": 0}, ValueError, "burst must be a positive integer, got 0"),
        ({"read": "xml"}, ValueError,
         "read must be one of 'bytes', 'text', 'json', 'none', got 'xml'"),
    ]
    for options, kind, message in cases:
        with pytest.raises(kind) as caught:
            fetch_all(["http://127.0.0.1:1/"], **options)  # type: ignore[arg-type]
        assert str(caught.value) == message
    fetch_all([], max_body=0).close()  # an empty body only: allowed


def test_the_open_files_limit_is_left_alone_when_it_is_enough() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    fetch_all([], concurrency=1).close()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before
