"""Inline backend: runs each chunk in the calling thread (or the event loop), one at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._base import ChunkResult, blocking_callable, is_async_callable, run_chunk


class InlineBackend:
    name = "inline"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1

    def prepare(self, fn: Callable[..., Any]) -> Any:
        return fn

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        if is_async_callable(handle):
            from ._asyncio import run_async_chunk

            return await run_async_chunk(handle, items)
        return run_chunk(blocking_callable(handle), items)

    def close(self, *, cancel: bool = False, wait: bool | float = True) -> None:
        pass
