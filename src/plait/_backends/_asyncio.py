"""Asyncio backend: coroutine calls awaited on the scheduler's event loop.

Concurrency is the number of scheduler workers (each a coroutine), so no task per item is made.
A plain function is called directly on the loop; if it returns an awaitable, that is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._base import ChunkResult, reraise_stop, timed_out


async def run_async_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> ChunkResult:
    values: list[Any] = []
    errors: dict[int, BaseException] | None = None
    start = time.perf_counter()
    for item in items:
        try:
            value = fn(item)
            if inspect.isawaitable(value):
                value = await value
            values.append(value)
        except BaseException as exc:
            reraise_stop(exc)
            if errors is None:
                errors = {}
            errors[len(values)] = exc
            values.append(None)
    return ChunkResult(values, errors, time.perf_counter() - start)


class AsyncioBackend:
    name = "asyncio"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def prepare(self, fn: Callable[..., Any]) -> Any:
        return fn

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        if timeout_s is None:
            return await run_async_chunk(handle, items)
        try:
            return await asyncio.wait_for(run_async_chunk(handle, items), timeout_s)
        except TimeoutError:
            return timed_out(len(items), timeout_s, "it was cancelled")

    def close(self, *, cancel: bool = False, wait: bool | float = True) -> None:
        pass
