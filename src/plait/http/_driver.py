"""The run driver of plait.http: the sync stream on a leased loop thread, the async stream on
the caller's loop, with the core's sinks and progress bar."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._exceptions import BackendUnavailable
from .._progress import Bar, NoProgress, progress
from .._sinks import LoopSink, ThreadSink
from ._config import make_config
from ._messages import Request, Response

if TYPE_CHECKING:
    from ._engine import Engine

_CANCEL_WAIT_S = 5.0


def fetch_all(
    requests: Iterable[str | Request],
    /,
    *,
    backend: str = "asyncio",
    address: str | None = None,
    client: Any = None,
    **options: Any,
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
        backend="asyncio" or "dask": shard the URLs by host over a Dask cluster's workers, each
                          running this fetcher (``address=`` / ``client=`` pick the cluster, as
                          for ``plait.map``); ``concurrency`` is split between the shards, and
                          ``per_host`` and ``rate`` hold for the whole cluster (docs/dask.md)

    Workers take inputs in order and wait at their host's gate, so a long run of URLs to one
    capped host (``per_host``, ``rate``, a Retry-After pause) holds workers that could serve
    other hosts: interleave hosts in the input for crawls.

    The run happens on plait's private event-loop thread; leaving the loop early (``break``,
    ``close()``) cancels what is in flight. Inside a coroutine use ``afetch_all``.
    """
    if hasattr(requests, "__aiter__"):
        raise TypeError("fetch_all takes an iterable; for an async iterable use afetch_all")
    source = iter(requests)
    config = make_config(**options)  # every option checked before anything runs
    if backend == "dask":
        return _on_cluster(source, address, client, options)
    if backend != "asyncio":
        raise ValueError(f"fetch_all runs on backend='asyncio' or 'dask', not {backend!r}")
    if address is not None or client is not None:
        raise TypeError("address= and client= pick a Dask cluster: pass backend='dask' too")
    engine_type = _engine_type()
    return _stream(engine_type(config), source)


def _on_cluster(
    source: Iterator[str | Request], address: str | None, client: Any, options: dict[str, Any]
) -> Generator[Response, None, None]:
    from .._backends import info
    from .._dask_fetch import fetch_on_cluster

    info("dask").check_available()  # BackendUnavailable naming pip install 'plait[dask]'
    yield from fetch_on_cluster(source, address=address, client=client, **options)


def afetch_all(
    requests: Iterable[str | Request] | AsyncIterable[str | Request], /, **options: Any
) -> AsyncIterator[Response]:
    """``async for response in afetch_all(urls)``: ``fetch_all`` on the running event loop."""
    source = aiter(requests) if isinstance(requests, AsyncIterable) else iter(requests)
    config = make_config(**options)
    return _astream(_engine_type()(config), source)


def _engine_type() -> type[Engine]:
    try:
        from ._engine import Engine
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("aiohttp", "yarl", "multidict"):
            raise
        raise BackendUnavailable(
            "plait.http needs aiohttp, which is not installed. "
            "Install it with: pip install 'plait[http]'"
        ) from exc
    return Engine


def _stream(engine: Engine, source: Iterator[str | Request]) -> Generator[Response, None, None]:
    from .._bridge import give_back, lease_loop

    lease = lease_loop()
    try:
        yield from _stream_on(lease.loop, engine, source)
    finally:
        give_back(lease)


def _stream_on(
    loop: asyncio.AbstractEventLoop, engine: Engine, source: Iterator[str | Request]
) -> Generator[Response, None, None]:
    sink: ThreadSink[Response] = ThreadSink(loop, engine.taken)
    engine.start(loop, sink)
    future = asyncio.run_coroutine_threadsafe(engine.run(source), loop)
    bar = _progress(engine)
    try:
        for response in sink:
            bar.update(1, failed=response.error is not None)
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
    sink: LoopSink[Response] = LoopSink(engine.taken)
    engine.start(loop, sink)
    task = loop.create_task(engine.run(source))
    bar = _progress(engine)
    try:
        async for response in sink:
            bar.update(1, failed=response.error is not None)
            yield response
    finally:
        bar.close()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _progress(engine: Engine) -> Bar | NoProgress:
    """The core's bar, counting requests, with what only the engine knows beside it."""

    def status(done: int, failed: int) -> str:
        return f"ok={done - failed} failed={failed} retrying={engine.retrying}"

    return progress(engine.config.progress, None, "fetch", unit="req", status=status)
