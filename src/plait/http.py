"""Many HTTP requests at once: one shared aiohttp session, polite to servers, nothing lost.

    for r in plait.http.fetch_all(urls, concurrency=100):          # a stream, in input order
        print(r.url, r.status, len(r.body), r.attempts, r.error)

    async for r in plait.http.afetch_all(urls, per_host=8, rate="50/s"):   # inside a loop
        ...

Every input gives exactly one ``Response``, in input order (or as completed with
``ordered=False``). A failure never stops the run: a bad URL, an unsupported scheme, a host that
does not resolve, a timeout, a refused or reset connection, an HTTP error status or a body that
is not JSON when ``read="json"`` becomes that response's ``error``, one of::

    FetchError                      base (a plait.PlaitError); .url, .status
     ├── InvalidRequest             bad URL, unsupported scheme, malformed request spec (ValueError)
     ├── ConnectionFailed           refused, reset, dropped (ConnectionError); retried
     │    └── HostNotFound          the host name does not resolve; not retried
     ├── RequestTimeout             an attempt ran past ``timeout`` (plait.TaskTimeout); retried
     ├── HTTPStatusError            status >= 400 after the retries; 408/429/500/502/503/504 retried
     ├── InvalidJSON                ``read="json"`` and the body is not JSON (ValueError)
     └── BodyTooLarge               the body is longer than ``max_body`` bytes

Politeness: ``per_host`` caps the requests in flight per host, ``rate`` ("50/s", "1000/min")
spaces their starts per host, and a 429 or 503 with ``Retry-After`` pauses every pending request
to that host until then, together. ``adaptive=True`` halves a host's concurrency on 429/503 and
grows it back by one after each full round of successes.

``attempts`` counts plait's attempts. aiohttp itself also sends an idempotent request once
more, at once, when its connection drops before the response (RFC 9112, 9.3.1).

Input is read lazily: at most about ``2 * concurrency`` requests are taken ahead of what the
consumer has taken, so a generator of a million URLs is fine. aiohttp is imported only when a
fetch starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import queue
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._checks import is_count
from ._exceptions import BackendUnavailable, PlaitError, TaskTimeout
from ._retry import Backoff

if TYPE_CHECKING:
    from ._clock import Clock
    from ._http import Engine

__all__ = [
    "Backoff",
    "BodyTooLarge",
    "ConnectionFailed",
    "FetchError",
    "HTTPStatusError",
    "HostNotFound",
    "InvalidJSON",
    "InvalidRequest",
    "Request",
    "RequestTimeout",
    "Response",
    "TooManyOpenFiles",
    "afetch_all",
    "fetch_all",
]

READ_MODES = ("bytes", "text", "json", "none")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
DEFAULT_MAX_BODY = 100 * 2**20
_FD_MARGIN = 64  # files kept free beside the sockets: the interpreter, logs, the output file
_CANCEL_WAIT_S = 5.0


class FetchError(PlaitError):
    """Why one request failed; ``url`` is the request's URL, ``status`` the last HTTP status."""

    def __init__(self, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.url, self.status))


class InvalidRequest(FetchError, ValueError):
    """The URL or request spec cannot be sent (bad URL, unsupported scheme, bad body)."""


class ConnectionFailed(FetchError, ConnectionError):
    """The connection was refused, reset or dropped before a full response came."""


class HostNotFound(ConnectionFailed):
    """The host name does not resolve (not retried)."""


class RequestTimeout(FetchError, TaskTimeout):
    """An attempt took longer than ``timeout`` seconds."""


class HTTPStatusError(FetchError):
    """The server answered with a status of 400 or more (kept after the retries ran out)."""


class InvalidJSON(FetchError, ValueError):
    """``read="json"`` was asked for and the body is not valid JSON (``body`` holds the bytes)."""


class BodyTooLarge(FetchError):
    """The response body is longer than ``max_body`` bytes; it was not read."""


class TooManyOpenFiles(PlaitError, OSError):
    """The open-files limit is too low for the requested concurrency."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request: a URL plus method, headers, query ``params``, and a ``json`` or ``data`` body.

    ``retry`` overrides the default (retry only idempotent methods unless ``retry_unsafe``).
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    json: Any = None
    data: bytes | str | None = None
    retry: bool | None = None


@dataclass(slots=True)
class Response:
    """What happened to one input: a response, or the ``error`` that stopped it."""

    url: str
    index: int
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # bytes, str (read="text"), parsed JSON (read="json"), or None
    nbytes: int = 0  # bytes of body received (also with read="none")
    elapsed: float = 0.0  # seconds from the first attempt to the result, waits included
    attempts: int = 0
    error: FetchError | None = None
    request: Request | None = None

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return self.error is None

    def raise_for_error(self) -> Response:
        """Return self, or raise the error."""
        if self.error is not None:
            raise self.error
        return self


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """The checked options of one run (see ``fetch_all``)."""

    concurrency: int = 100
    per_host: int | None = None
    rate: str | float | None = None
    burst: int = 1
    retries: int = 3
    timeout: float | None = 30.0
    connect_timeout: float | None = 10.0
    ordered: bool = True
    read: str = "bytes"
    headers: Mapping[str, str] | None = None
    max_body: int | None = DEFAULT_MAX_BODY
    retry_unsafe: bool = False
    adaptive: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    max_retry_after: float = 120.0
    error_for_status: bool = True
    progress: bool = False
    clock: Clock | None = None

    @property
    def window(self) -> int:
        """Inputs taken ahead of the consumer: everything in flight plus as many finished."""
        return 2 * self.concurrency


@dataclass(slots=True)
class FetchStats:
    """Live counts of one run that only the engine knows, for the progress bar (the bar counts
    the responses itself)."""

    retrying: int = 0  # requests waiting to be retried now


def fetch_all(
    requests: Iterable[str | Request], /, **options: Any
) -> Generator[Response, None, None]:
    """Fetch every URL or ``Request`` at once; yield one ``Response`` per input as a stream.

    Options (keyword only):
        concurrency=100   requests in flight (also the size of the connection pool)
        per_host=None     requests in flight per host (None: no cap below ``concurrency``)
        rate=None         starts per second per host: "50/s", "1000/min", or a number
        burst=1           starts allowed at once before ``rate`` spaces them
        retries=3         extra attempts after connection errors, timeouts, 408/429/5xx
        timeout=30        seconds per attempt (connect_timeout=10 for the connection alone)
        ordered=True      results in input order; False: as they complete (better when a few
                          URLs are slow: in order, they hold the later results back)
        read="bytes"      body as bytes, "text", "json" (parsed), or "none" (count bytes only)
        headers=None      headers sent with every request
        max_body=100 MiB  longest body kept (None: no limit); longer ones give BodyTooLarge
        retry_unsafe=False  retry POST/PATCH too (a Request's ``retry`` overrides per request)
        adaptive=False    halve a host's concurrency on 429/503, grow it back on success
        backoff=Backoff() full-jitter exponential backoff between attempts
        max_retry_after=120  longest Retry-After pause honoured, in seconds
        error_for_status=True  a final status >= 400 sets ``error`` (HTTPStatusError)
        progress=False    a progress bar on stderr with done/failed/retrying counts
        clock=None        the time source of backoff, rate and pauses (tests pass a FakeClock)

    Workers take inputs in order and wait at their host's gate, so a long run of URLs to one
    capped host (``per_host``, ``rate``, a Retry-After pause) holds workers that could serve
    other hosts: interleave hosts in the input for crawls.

    The run happens on plait's private event-loop thread; leaving the loop early (``break``,
    ``close()``) cancels what is in flight. Inside a coroutine use ``afetch_all``.
    """
    if hasattr(requests, "__aiter__"):
        raise TypeError("fetch_all takes an iterable; for an async iterable use afetch_all")
    source = iter(requests)
    config = make_config(**options)
    engine_type = _engine_type()
    return _stream(engine_type(config), source)


def afetch_all(
    requests: Iterable[str | Request] | AsyncIterable[str | Request], /, **options: Any
) -> AsyncIterator[Response]:
    """``async for response in afetch_all(urls)``: ``fetch_all`` on the running event loop."""
    source = aiter(requests) if isinstance(requests, AsyncIterable) else iter(requests)
    config = make_config(**options)
    return _astream(_engine_type()(config), source)


def make_config(**options: Any) -> FetchConfig:
    """Check the options of ``fetch_all`` once, with messages that say what to do."""
    unknown = set(options) - set(FetchConfig.__dataclass_fields__)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(f"unknown option(s) {names}; see help(plait.http.fetch_all)")
    config = FetchConfig(**options)
    _check_positive("concurrency", config.concurrency)
    if config.per_host is not None:
        _check_positive("per_host", config.per_host)
    _check_positive("burst", config.burst)
    retries = config.retries
    if not is_count(retries, 0):
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    for name in ("timeout", "connect_timeout"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    if config.read not in READ_MODES:
        modes = ", ".join(map(repr, READ_MODES))
        raise ValueError(f"read must be one of {modes}, got {config.read!r}")
    limit = config.max_body
    if limit is not None and not is_count(limit, 0):
        raise ValueError(f"max_body must be a number of bytes or None, got {limit!r}")
    if config.rate is not None:
        from ._ratelimit import Rate

        Rate.parse(config.rate)
    check_open_files(config.concurrency)
    return config


def _check_positive(name: str, value: Any) -> None:
    if not is_count(value, 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_open_files(concurrency: int) -> None:
    """Make sure ``concurrency`` sockets fit under the open-files limit, raising it if allowed.

    The soft limit is raised up to the hard limit when needed (any process may do that); past
    the hard limit this raises ``TooManyOpenFiles`` with what to do, instead of failing with
    "Too many open files" halfway through a run.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit to check
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = concurrency + _open_files() + _FD_MARGIN
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard == resource.RLIM_INFINITY or needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    fits = max(1, hard - _open_files() - _FD_MARGIN)
    raise TooManyOpenFiles(
        f"concurrency={concurrency} needs about {needed} open files but this process may open "
        f"at most {hard} (hard limit); use concurrency={fits} or less, or raise the limit "
        f"(e.g. `ulimit -n {needed}` in the shell, or LimitNOFILE= in a systemd unit)"
    )


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def _engine_type() -> type[Engine]:
    try:
        from ._http import Engine
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("aiohttp", "yarl", "multidict"):
            raise
        raise BackendUnavailable(
            "plait.http needs aiohttp, which is not installed. "
            "Install it with: pip install 'plait[http]'"
        ) from exc
    return Engine


def _stream(engine: Engine, source: Iterator[str | Request]) -> Generator[Response, None, None]:
    from ._bridge import give_back, lease_loop

    lease = lease_loop()
    try:
        yield from _stream_on(lease.loop, engine, source)
    finally:
        give_back(lease)


def _stream_on(
    loop: asyncio.AbstractEventLoop, engine: Engine, source: Iterator[str | Request]
) -> Generator[Response, None, None]:
    channel = _ThreadChannel(loop, engine.taken)
    engine.start(loop, channel.put)
    future = asyncio.run_coroutine_threadsafe(engine.run(source), loop)
    future.add_done_callback(channel.close)
    bar = _progress(engine)
    try:
        for response in channel:
            bar.update(response)
            yield response
    finally:
        bar.close()
        if not future.done():
            loop.call_soon_threadsafe(future.cancel)
            with contextlib.suppress(BaseException):
                future.result(timeout=_CANCEL_WAIT_S)


async def _astream(
    engine: Engine, source: Iterator[str | Request] | AsyncIterator[str | Request]
) -> AsyncIterator[Response]:
    loop = asyncio.get_running_loop()
    channel = _LoopChannel(engine.taken)
    engine.start(loop, channel.put)
    task = loop.create_task(engine.run(source))
    task.add_done_callback(channel.close)
    bar = _progress(engine)
    try:
        async for response in channel:
            bar.update(response)
            yield response
    finally:
        bar.close()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _End:
    __slots__ = ()


_END = _End()


def _outcome(done: concurrent.futures.Future[None] | asyncio.Future[None]) -> BaseException | None:
    if done.cancelled():
        return None
    return done.exception()


class _ThreadChannel:
    """Responses from the loop to a consumer thread, batched once per loop turn.

    ``taken(n)`` is called once a batch of n has been consumed (one call per batch, not per
    response: each call may wake the loop from another thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, taken: Callable[[int], None]) -> None:
        self._loop = loop
        self._taken = taken
        self._queue: queue.SimpleQueue[list[Response] | BaseException | _End] = queue.SimpleQueue()
        self._batch: list[Response] = []

    def put(self, response: Response) -> None:
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(response)

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._queue.put(batch)

    def close(self, done: concurrent.futures.Future[None]) -> None:
        self._loop.call_soon_threadsafe(self._finish, _outcome(done))

    def _finish(self, error: BaseException | None) -> None:
        self._flush()
        self._queue.put(error if error is not None else _END)

    def __iter__(self) -> Iterator[Response]:
        while True:
            batch = self._queue.get()
            if isinstance(batch, _End):
                return
            if isinstance(batch, BaseException):
                raise batch
            yield from batch
            self._taken(len(batch))


class _LoopChannel:
    """Responses to a consumer coroutine on the same loop; ``taken(n)`` as in _ThreadChannel."""

    def __init__(self, taken: Callable[[int], None]) -> None:
        self._taken = taken
        self._items: list[Response] = []
        self._end: BaseException | _End | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, response: Response) -> None:
        self._items.append(response)
        self._wake()

    def close(self, done: asyncio.Future[None]) -> None:
        self._end = _outcome(done) or _END
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[Response]:
        while True:
            if self._items:
                items, self._items = self._items, []
                for item in items:
                    yield item
                self._taken(len(items))
                continue
            if self._end is not None:
                if isinstance(self._end, BaseException):
                    raise self._end
                return
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class _NoBar:
    def update(self, response: Response) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar:
    """tqdm on stderr: count and rate, with ok/failed/retrying refreshed a few times a second.

    ok and failed count the results the consumer took; retrying is the engine's live count."""

    _EVERY_S = 0.2

    def __init__(self, stats: FetchStats) -> None:
        tqdm = importlib.import_module("tqdm").tqdm
        self._stats = stats
        self._bar: Any = tqdm(desc="fetch", unit="req", mininterval=self._EVERY_S)
        self._pending = self._failed = self._done = 0
        self._last = 0.0

    def update(self, response: Response) -> None:
        self._pending += 1
        self._done += 1
        self._failed += response.error is not None
        now = time.monotonic()
        if now - self._last >= self._EVERY_S:
            self._last = now
            self._push()

    def _push(self) -> None:
        ok, failed = self._done - self._failed, self._failed
        postfix = f"ok={ok} failed={failed} retrying={self._stats.retrying}"
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(self._pending)
        self._pending = 0

    def close(self) -> None:
        self._push()
        self._bar.close()


def _progress(engine: Engine) -> _Bar | _NoBar:
    return _Bar(engine.stats) if engine.config.progress else _NoBar()
