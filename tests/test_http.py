"""plait.http against a real aiohttp server on 127.0.0.1 (tests/http_server.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
    HostNotFound,
    HTTPStatusError,
    InvalidJSON,
    InvalidRequest,
    Request,
    RequestTimeout,
    Response,
    TooManyOpenFiles,
    afetch_all,
    fetch_all,
)

FAST = Backoff(initial_s=0.01, max_s=0.05)  # quick retries for the tests
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def fresh_log(server: Server) -> None:
    server.clear()


def run_python(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env=env, check=False,
    )


# --- the stream ---------------------------------------------------------------------------


def test_results_come_in_input_order_with_every_field(server: Server) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(60)]
    results = list(fetch_all(urls, concurrency=8))
    assert [r.url for r in results] == urls
    assert [r.index for r in results] == list(range(60))
    for i, r in enumerate(results):
        assert (r.status, r.body, r.attempts, r.error) == (200, f"ok {i}".encode(), 1, None)
        assert r.nbytes == len(r.body) and r.elapsed > 0
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.request == Request(urls[i])
    assert server.count("/ok/0") == 1 and len(server.hits) == 60


def test_as_completed_yields_every_result_once(server: Server) -> None:
    urls = [server.url("/slow?s=0.6"), *(server.url(f"/ok/{i}") for i in range(10))]
    results = list(fetch_all(urls, concurrency=4, ordered=False))
    assert sorted(r.index for r in results) == list(range(11))
    assert results[-1].url == urls[0]  # the slow one finished last


def test_connections_are_capped_by_concurrency(server: Server) -> None:
    urls = [server.url("/slow?s=0.05")] * 24
    assert all(r.ok for r in fetch_all(urls, concurrency=3))
    assert server.max_in_flight == 3


def test_per_host_cap(server: Server) -> None:
    urls = [server.url("/slow?s=0.05")] * 12
    assert all(r.ok for r in fetch_all(urls, concurrency=10, per_host=2))
    assert server.max_in_flight == 2


def test_per_host_rate_spaces_starts(server: Server) -> None:
    clock = FakeClock()
    urls = [server.url(f"/ok/{i}") for i in range(6)]
    assert all(r.ok for r in fetch_all(urls, rate="20/s", clock=clock))
    assert clock.now() == pytest.approx(0.25)  # 6 starts need 5 intervals of 50 ms, exactly
    assert len(server.hits) == 6


def test_rate_applies_to_each_host_on_its_own(server: Server) -> None:
    clock = FakeClock()
    other = server.url("/ok/x").replace("127.0.0.1", "localhost")  # a second host, same server
    urls = [u.replace("/ok/x", f"/ok/{i}") for i in range(3) for u in (server.url("/ok/x"), other)]
    results = list(fetch_all(urls, rate="1/s", retries=0, clock=clock))
    assert all(r.ok for r in results), [r.error for r in results]
    assert clock.now() == pytest.approx(2.0)  # 3 starts per host at 1/s: 0, 1, 2 (not 0..5)
    assert len(server.hits) == 6


# --- what to read -------------------------------------------------------------------------


def test_read_json_parses_and_bad_json_is_that_items_error(server: Server) -> None:
    urls = [server.url("/json/a"), server.url("/notjson"), server.url("/json/b")]
    a, bad, b = fetch_all(urls, read="json")
    assert (a.body, b.body) == ({"name": "a"}, {"name": "b"})
    assert isinstance(bad.error, InvalidJSON) and isinstance(bad.error, ValueError)
    assert bad.body == b"{not json" and bad.status == 200 and bad.attempts == 1
    assert bad.error.url == urls[1]


def test_read_text_and_none(server: Server) -> None:
    (text,) = fetch_all([server.url("/ok/t")], read="text")
    assert text.body == "ok t"
    (counted,) = fetch_all([server.url("/huge?mb=3")], read="none")
    assert counted.body is None and counted.nbytes == 3 * 2**20 and counted.ok


def test_a_huge_body_is_refused_past_max_body(server: Server) -> None:
    urls = [server.url("/huge?mb=20"), server.url("/huge?mb=20&length=1"), server.url("/ok/1")]
    chunked, announced, small = fetch_all(urls, max_body=2**20, retries=0)
    for r in (chunked, announced):
        assert isinstance(r.error, BodyTooLarge) and "max_body=1048576" in str(r.error)
        assert r.body is None and r.status == 200
    assert small.ok


def test_a_body_of_exactly_max_body_is_kept(server: Server) -> None:
    (r,) = fetch_all([server.url("/huge?mb=1")], max_body=2**20, retries=0)
    assert r.ok and r.nbytes == 2**20 and r.body == b"x" * 2**20
    (r,) = fetch_all([server.url("/huge?mb=1")], max_body=2**20 - 1, retries=0)
    assert isinstance(r.error, BodyTooLarge) and r.error.status == 200
    assert str(r.error) == (
        f"the body is longer, more than max_body={2**20 - 1} bytes; "
        "raise max_body (None: no limit) or use read='none'"
    )


def test_error_messages_say_what_happened(server: Server) -> None:
    urls = [server.url("/status/500"), server.url("/notjson")]
    failed, bad_json = fetch_all(urls, retries=0, read="json")
    assert str(failed.error) == "HTTP 500 Internal Server Error" and failed.error.status == 500
    assert isinstance(bad_json.error, InvalidJSON) and bad_json.error.status == 200
    assert str(bad_json.error).startswith("the body is not valid JSON: ")
    assert isinstance(bad_json.error.__cause__, ValueError)
    (hung,) = fetch_all([server.url("/hang")], timeout=0.2, retries=0)
    assert str(hung.error) == "no response within 0.2 s"
    (reset,) = fetch_all([server.url("/reset")], retries=0)
    assert str(reset.error).startswith(type(reset.error.__cause__).__name__)


# --- bad input never stops the run --------------------------------------------------------


def test_bad_inputs_become_errors_and_the_run_goes_on(server: Server) -> None:
    inputs: list[object] = [
        server.url("/ok/1"), "not a url", "ftp://example.com/file", "http://", 42,
        "http://nothing-here.invalid/", Request(server.url("/echo"), json={1, 2}),
        server.url("/ok/2"),
    ]
    results = list(fetch_all(inputs, retries=2, backoff=FAST))  # type: ignore[arg-type]
    kinds = [type(r.error).__name__ if r.error else "ok" for r in results]
    assert kinds == [
        "ok", "InvalidRequest", "InvalidRequest", "InvalidRequest", "InvalidRequest",
        "HostNotFound", "InvalidRequest", "ok",
    ]
    assert "unsupported scheme 'ftp'" in str(results[2].error)
    assert "nothing-here.invalid" in str(results[5].error)
    assert results[5].attempts == 1  # a name that does not resolve is not retried
    assert results[4].url == "42" and isinstance(results[4].error, ValueError)
    assert all(isinstance(r.error, FetchError) for r in results[1:7])


# --- retries ------------------------------------------------------------------------------


def test_5xx_is_retried_until_it_works(server: Server) -> None:
    (r,) = fetch_all([server.url("/flaky/a?fail=2&code=503")], backoff=FAST)
    assert (r.status, r.attempts, r.ok) == (200, 3, True)
    assert server.count("/flaky/a") == 3


def test_retries_run_out_and_the_status_is_the_error(server: Server) -> None:
    urls = [server.url("/status/500"), server.url("/status/404"), server.url("/status/501")]
    failed, missing, unimplemented = fetch_all(urls, retries=2, backoff=FAST)
    assert isinstance(failed.error, HTTPStatusError) and failed.error.status == 500
    assert failed.attempts == 3 and server.count("/status/500") == 3
    assert missing.attempts == 1 and missing.error is not None and missing.error.status == 404
    assert unimplemented.attempts == 1


def test_error_for_status_off_keeps_the_status_without_an_error(server: Server) -> None:
    (r,) = fetch_all([server.url("/status/404")], error_for_status=False)
    assert (r.status, r.error, r.body) == (404, None, b"status")


def test_post_is_not_retried_unless_asked(server: Server) -> None:
    once = Request(server.url("/flaky/p1?fail=1"), method="POST", json={"x": 1})
    asked = Request(server.url("/flaky/p2?fail=1"), method="POST", retry=True)
    everyone = Request(server.url("/flaky/p3?fail=1"), method="PATCH")
    r1, r2 = fetch_all([once, asked], backoff=FAST)
    assert (r1.attempts, r1.status) == (1, 500) and isinstance(r1.error, HTTPStatusError)
    assert (r2.attempts, r2.status) == (2, 200)
    (r3,) = fetch_all([everyone], backoff=FAST, retry_unsafe=True)
    assert (r3.attempts, r3.status) == (2, 200)


def test_connection_reset_is_retried(server: Server) -> None:
    """aiohttp itself sends an idempotent request again, at once, when its connection drops
    before the response (RFC 9112 9.3.1); plait's attempts come on top of that."""
    once, twice, always = fetch_all(
        [server.url("/reset/r1?n=1"), server.url("/reset/r2?n=2"), server.url("/reset")],
        retries=2, backoff=FAST,
    )
    assert once.ok and once.attempts == 1 and server.count("/reset/r1") == 2
    assert twice.ok and twice.attempts == 2 and server.count("/reset/r2") == 3
    assert isinstance(always.error, ConnectionFailed) and always.attempts == 3
    assert server.count("/reset") == 6
    assert isinstance(always.error.__cause__, Exception)  # aiohttp's own error, kept


def test_a_server_that_never_answers_times_out(server: Server) -> None:
    started = time.perf_counter()
    (r,) = fetch_all([server.url("/hang")], timeout=0.2, retries=1, backoff=FAST)
    assert isinstance(r.error, RequestTimeout) and isinstance(r.error, plait.TaskTimeout)
    assert r.attempts == 2 and "0.2 s" in str(r.error)
    assert time.perf_counter() - started < 3


def test_connection_refused(server: Server) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (r,) = fetch_all([f"http://127.0.0.1:{port}/"], retries=1, backoff=FAST)
    assert isinstance(r.error, ConnectionFailed) and not isinstance(r.error, HostNotFound)
    assert r.attempts == 2


# --- politeness: the shared Retry-After pause ---------------------------------------------


def test_retry_after_pauses_every_request_to_the_host_together(server: Server) -> None:
    """The server answers 429 + Retry-After: 1 for a second from the first request. Only the
    four requests sent at the start (one per worker) may reach it in that second; every other
    request waits for the pause, together, then goes."""
    urls = [server.url("/limited/shared")] * 16
    results = list(fetch_all(urls, concurrency=4, retries=3, backoff=FAST))
    assert all(r.ok for r in results)
    limited = server.count("/limited/shared") - 16  # the requests that were answered 429
    assert 1 <= limited <= 4, f"{limited} requests did not wait for the pause"
    # one 429 each at most, and only for the requests of the first wave: a single shared pause
    assert max(r.attempts for r in results) == 2
    assert sum(r.attempts == 2 for r in results) == limited
    times = sorted(server.times("/limited/shared"))
    assert times[-1] - times[0] < 5  # all go as soon as the pause ends, not one by one


def test_retry_after_also_holds_requests_waiting_for_a_slot(server: Server) -> None:
    """With one request per host in flight, the others wait for the slot; when the first is
    answered 429 + Retry-After, the next one gets the slot during the pause and must still
    wait for the pause: exactly one request meets the 429."""
    urls = [server.url("/limited/slots")] * 8
    results = list(fetch_all(urls, concurrency=4, per_host=1, retries=3, backoff=FAST))
    assert all(r.ok for r in results)
    assert server.count("/limited/slots") == 9
    assert [r.attempts for r in results] == [2] + [1] * 7


def test_a_retry_after_pause_replaces_the_backoff(server: Server) -> None:
    clock = FakeClock()
    slow = Backoff(initial_s=5, multiplier=1, max_s=5)
    (r,) = fetch_all([server.url("/flaky/ra?fail=1&code=429&after=1")], backoff=slow, clock=clock)
    assert (r.status, r.attempts) == (200, 2)
    assert clock.now() == pytest.approx(1.0)  # the pause alone, no backoff on top of it
    (r,) = fetch_all([server.url("/flaky/bo?fail=1&code=500")], backoff=slow, clock=clock)
    assert (r.status, r.attempts) == (200, 2)
    assert 1.0 < clock.now() <= 6.0  # without a pause: a full-jitter backoff of at most 5 s


def test_retry_after_with_a_rate_limit(server: Server) -> None:
    clock = FakeClock()
    urls = [server.url(f"/flaky/rr{i}?fail=1&code=503&after=2") for i in range(3)]
    results = list(fetch_all(urls, rate="10/s", clock=clock, backoff=FAST))
    assert [(r.status, r.attempts) for r in results] == [(200, 2)] * 3
    assert clock.now() >= 2.0  # the host's rate limiter waited for the pause too


def test_retry_after_is_capped(server: Server) -> None:
    started = time.perf_counter()
    (r,) = fetch_all(
        [server.url("/limited/capped?after=30")], retries=1, backoff=FAST, max_retry_after=0.2
    )
    assert isinstance(r.error, HTTPStatusError) and r.error.status == 429 and r.attempts == 2
    assert time.perf_counter() - started < 3


@pytest.mark.timeout(30)
def test_adaptive_concurrency_halves_on_429(server: Server) -> None:
    """8 requests at once are all answered 429: the host's concurrency halves once (8 -> 4),
    so of the 8 requests that follow (held unanswered by the server) only 4 are sent."""
    urls = [server.url("/status/429")] * 8 + [server.url(f"/hold/{i}") for i in range(8)]
    server.hold(0)
    stream = fetch_all(urls, concurrency=8, adaptive=True, retries=0)
    try:
        limited = list(itertools.islice(stream, 8))
        assert [r.status for r in limited] == [429] * 8
        assert wait_until(lambda: server.in_flight >= 4, 10)
        time.sleep(0.3)  # time for more to arrive, if the cap did not hold them
        assert server.in_flight == 4
    finally:
        server.release()
    rest = list(stream)
    assert all(r.ok for r in rest) and len(rest) == 8
    assert server.peak("/hold/") == 4  # also while the cap grew back after the successes


@pytest.mark.timeout(30)
def test_adaptive_concurrency_grows_back_after_successes(server: Server) -> None:
    """After the cut to 4, each full round of successes adds one: the 4 held requests and 4
    more successes later, 5 and then 6 are in flight."""
    urls = (
        [server.url("/status/429")] * 8
        + [server.url(f"/ok/{i}") for i in range(4 + 5)]
        + [server.url(f"/hold/{i}") for i in range(8)]
    )
    server.hold(0)
    results: list[Response] = []
    consumer = threading.Thread(target=lambda: results.extend(fetch_all(
        urls, concurrency=8, adaptive=True, retries=0
    )))
    consumer.start()
    try:
        assert wait_until(lambda: server.in_flight >= 6, 10), server.in_flight
        time.sleep(0.3)
        assert server.in_flight == 6  # 4, +1 after 4 successes, +1 after 5 more
    finally:
        server.release()
        consumer.join(10)
    assert [r.status for r in results] == [429] * 8 + [200] * 17


@pytest.mark.timeout(30)
def test_adaptive_concurrency_never_grows_past_its_start(server: Server) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(8)] + [server.url(f"/hold/{i}") for i in range(4)]
    server.hold(0)
    results: list[Response] = []
    consumer = threading.Thread(target=lambda: results.extend(fetch_all(
        urls, concurrency=8, per_host=2, adaptive=True, retries=0
    )))
    consumer.start()
    try:
        assert wait_until(lambda: server.in_flight >= 2, 10), server.in_flight
        time.sleep(0.3)
        assert server.in_flight == 2  # 8 successes do not lift the cap above per_host
    finally:
        server.release()
        consumer.join(10)
    assert len(results) == 12 and all(r.ok for r in results)


def test_adaptive_run_finishes(server: Server) -> None:
    urls = [server.url("/limited/adaptive?after=0.5")] * 12
    results = list(fetch_all(urls, concurrency=6, adaptive=True, retries=4, backoff=FAST))
    assert all(r.ok for r in results)


# --- lazy input, early exit, failing input ------------------------------------------------


def test_a_huge_generator_is_read_only_a_window_ahead(server: Server) -> None:
    pulled = 0

    def urls() -> Iterator[str]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield server.url(f"/ok/{i}")

    stream = fetch_all(urls(), concurrency=10)
    first = list(itertools.islice(stream, 3))
    time.sleep(0.2)  # the workers run on while we hold these
    assert [r.index for r in first] == [0, 1, 2]
    assert pulled <= 2 * 10 + 3 + 1  # the window (2 x concurrency) past what we took
    stream.close()  # stops everything in flight
    assert len(server.hits) <= pulled


def test_breaking_out_stops_the_run_promptly(server: Server) -> None:
    urls = [server.url("/hang")] * 5 + [server.url("/ok/1")]
    started = time.perf_counter()
    for r in fetch_all(urls, concurrency=10, ordered=False, timeout=60):
        assert r.ok
        break
    assert time.perf_counter() - started < 5
    deadline = time.monotonic() + 5
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.in_flight == 0  # the hanging requests were cancelled, not left open


def test_an_input_that_fails_midway_raises_after_the_results_before_it(server: Server) -> None:
    def urls() -> Iterator[str]:
        yield server.url("/ok/1")
        yield server.url("/ok/2")
        raise OSError("the URL file went away")

    seen: list[Response] = []
    with pytest.raises(OSError, match="went away"):
        for r in fetch_all(urls(), concurrency=2):
            seen.append(r)
    assert [r.index for r in seen] == [0, 1]


# --- the async twin -----------------------------------------------------------------------


def test_afetch_all_with_an_async_generator(server: Server) -> None:
    async def urls() -> AsyncIterator[str | Request]:
        for i in range(20):
            await asyncio.sleep(0)
            yield server.url(f"/ok/{i}")
        yield Request(server.url("/echo"), method="PUT", headers={"X-Test": "1"}, data="hi")

    async def main() -> list[Response]:
        return [r async for r in afetch_all(urls(), concurrency=4)]

    results = asyncio.run(main())
    assert [r.index for r in results] == list(range(21)) and all(r.ok for r in results)
    import json

    echo = json.loads(results[-1].body)
    assert (echo["method"], echo["headers"]["X-Test"], echo["body"]) == ("PUT", "1", "hi")


def test_afetch_all_early_exit_and_sync_input(server: Server) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        stream = afetch_all([server.url("/ok/1"), server.url("/hang")], timeout=60)
        async for r in stream:
            assert r.ok
            break
        await stream.aclose()  # type: ignore[attr-defined]
        assert asyncio.all_tasks() == before  # the engine and its workers are gone

    asyncio.run(asyncio.wait_for(main(), 10))


def test_afetch_all_with_a_progress_bar_and_a_full_window(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    async def main() -> list[Response]:
        stream = afetch_all([server.url(f"/ok/{i}") for i in range(30)], concurrency=2,
                            progress=True)
        taken = []
        async for r in stream:
            taken.append(r)
            await asyncio.sleep(0.01)  # a slow consumer: the window (4) fills and waits
        return taken

    results = asyncio.run(main())
    assert [r.index for r in results] == list(range(30)) and all(r.ok for r in results)
    assert "ok=30 failed=0 retrying=0" in capsys.readouterr().err


def test_sync_fetch_all_works_inside_a_running_loop(server: Server) -> None:
    async def main() -> list[int | None]:
        return [r.status for r in fetch_all([server.url("/ok/1"), server.url("/ok/2")])]

    assert asyncio.run(main()) == [200, 200]


def test_request_spec_with_params_and_session_headers(server: Server) -> None:
    request = Request(server.url("/echo"), params={"q": "x y"}, headers={"X-One": "1"})
    (r,) = fetch_all([request], headers={"X-All": "a"}, read="json")
    assert r.body["query"] == {"q": "x y"}
    assert r.body["headers"]["X-One"] == "1" and r.body["headers"]["X-All"] == "a"


def test_progress_bar_shows_counts(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    urls = [server.url("/ok/1"), server.url("/status/404")]
    list(fetch_all(urls, progress=True, retries=0))
    err = capsys.readouterr().err
    assert "ok=1 failed=1 retrying=0" in err and "2req" in err.replace(" ", "")


def test_progress_bar_counts_after_retries(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [server.url("/flaky/bar?fail=2"), server.url("/ok/1"), server.url("/status/404")]
    list(fetch_all(urls, progress=True, backoff=FAST))
    err = capsys.readouterr().err
    assert err.rstrip().endswith("ok=2 failed=1 retrying=0]"), err  # none left retrying
    assert "fetch: " in err and "3req" in err.replace(" ", "")


# --- options, limits, the optional dependency ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive integer"),
        ({"per_host": -1}, "per_host"),
        ({"rate": "lots"}, "cannot read the rate"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"read": "xml"}, "read must be one of"),
        ({"max_body": -5}, "max_body"),
    ],
)
def test_bad_options_fail_at_the_call(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fetch_all([], **options)


def test_unknown_option_and_wrong_input_fail_at_the_call() -> None:
    async def no_urls() -> AsyncIterator[str]:
        return
        yield ""

    with pytest.raises(TypeError, match="concurency"):
        fetch_all([], concurency=5)
    with pytest.raises(TypeError, match="afetch_all"):
        fetch_all(no_urls())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not iterable"):
        fetch_all(42)  # type: ignore[arg-type]


def test_open_files_limit_is_checked_before_the_run() -> None:
    result = run_python("""
        import resource
        from plait.http import fetch_all, TooManyOpenFiles
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
        fetch_all([], concurrency=1000)                        # fits under the hard limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert soft >= 1000, soft
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        try:
            fetch_all([], concurrency=1000)
        except TooManyOpenFiles as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "concurrency=1000 needs about" in result.stdout
    assert "ulimit -n" in result.stdout and "use concurrency=" in result.stdout
    assert issubclass(TooManyOpenFiles, plait.PlaitError)


def test_aiohttp_is_imported_only_when_a_fetch_starts() -> None:
    result = run_python("""
        import sys
        import plait, plait.http
        assert "aiohttp" not in sys.modules, "import plait.http pulled in aiohttp"
        plait.http.fetch_all([])
        assert "aiohttp" in sys.modules
    """)
    assert result.returncode == 0, result.stderr


def test_missing_aiohttp_says_how_to_install_it() -> None:
    result = run_python("""
        import sys
        sys.modules["aiohttp"] = None  # as if it were not installed
        import plait
        from plait.http import fetch_all
        try:
            fetch_all(["http://127.0.0.1:9/"])
        except plait.BackendUnavailable as exc:
            assert isinstance(exc, ImportError)
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "Install it with: pip install 'plait[http]'" in result.stdout


def test_errors_pickle_with_their_details() -> None:
    import pickle

    bare = FetchError("no details")
    assert (bare.url, bare.status) == ("", None)

    error = HTTPStatusError("HTTP 503", url="http://x/", status=503)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is HTTPStatusError and str(copy) == "HTTP 503"
    assert (copy.url, copy.status) == ("http://x/", 503)
    assert issubclass(InvalidRequest, ValueError) and issubclass(ConnectionFailed, ConnectionError)


def test_public_names_of_plait_http_are_exported_and_documented() -> None:
    import inspect

    import plait.http as module

    public = {
        name for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "plait.http"
    }
    assert public - {"FetchConfig", "FetchStats", "make_config", "check_open_files"} <= set(
        module.__all__
    )
    assert list(module.__all__) == sorted(module.__all__)
    for name in module.__all__:
        assert inspect.getdoc(getattr(module, name)), f"plait.http.{name} has no docstring"
