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
    requests: Iterable[str | Request], /, **options: Any
) -> Generator[Response, None, None]:
    """``plait.http.fetch_all`` on this machine: the stream runs on a leased loop thread (the
    public function, in ``_fetch``, documents the options and may shard over a cluster)."""
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

    lease = lease_loop(fast=True)
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
