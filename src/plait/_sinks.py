"""Where a run's results go: from the event loop that runs it to whoever consumes them.

A run (the scheduler, or plait.http's engine) calls ``put(item)`` for each result and
``close(error)`` once at the end, both on its loop. Each consumer tells the producer what it has
taken through ``taken(n)`` (a ``Window.release``): that is what keeps the input read ahead
bounded.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from ._backends._base import ChunkResult

    Entry = tuple[int, ChunkResult]  # as the scheduler delivers them

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Sink(Protocol[T_contra]):
    def put(self, item: T_contra) -> None: ...
    def close(self, error: BaseException | None) -> None: ...


class Progress(Protocol):
    def update(self, n: int, failed: int = 0) -> None: ...


class _End:
    """The end of a run: ``error`` is raised in the consumer, None ends it cleanly."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ThreadSink(Generic[T]):
    """Results for a consumer thread (the sync API), batched once per loop turn: one queue
    hand-off (and one thread wake) per batch, not per result."""

    def __init__(self, loop: asyncio.AbstractEventLoop, taken: Callable[[int], None]) -> None:
        self._loop = loop
        self._taken = taken
        self._queue: queue.SimpleQueue[list[T] | _End] = queue.SimpleQueue()
        self._batch: list[T] = []

    def put(self, item: T) -> None:
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(item)

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._queue.put(batch)

    def close(self, error: BaseException | None) -> None:
        self._flush()
        self._queue.put(_End(error))

    def __iter__(self) -> Iterator[T]:
        while True:
            batch = self._queue.get()
            if isinstance(batch, _End):
                if batch.error is not None:
                    raise batch.error
                return
            for item in batch:
                yield item
                self._taken(1)  # each one at once: a slow consumer keeps the workers busy


class LoopSink(Generic[T]):
    """Results for a consumer coroutine on the run's own loop (``amap``, ``afetch_all``).

    The consumer drains everything that arrived since its last look in one ``batch()``: one
    wake per loop turn, not per result, and no generator layer per item (``amap``'s hot path).
    It calls ``taken(1)`` for each item as it is consumed, which frees its window slot."""

    def __init__(self, taken: Callable[[int], None]) -> None:
        self.taken = taken
        self._items: list[T] = []
        self._end: _End | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T) -> None:
        self._items.append(item)
        if self._waiter is not None:
            self._wake()

    def close(self, error: BaseException | None) -> None:
        self._end = _End(error)
        self._wake()

    def _wake(self) -> None:
        """Once per batch: the puts after it, until the consumer waits again, find no waiter."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def batch(self) -> list[T]:
        """The items that arrived since the last call, waiting for one if there are none;
        ``[]`` once the run has ended cleanly; the run's error once it has failed (after every
        item that came before it)."""
        while not self._items:
            if self._end is not None:
                if self._end.error is not None:
                    raise self._end.error
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        items, self._items = self._items, []
        return items

    async def __aiter__(self) -> AsyncIterator[T]:
        while items := await self.batch():
            for item in items:
                yield item
                self.taken(1)


class ListSink:
    """plait.map's sink: chunks' values straight into one list on the loop, with no consumer
    to hand them to. A chunk with no error whose values need no ``Outcome`` is the hot path,
    here; any other goes through ``step`` (the drivers' ``consume``), which may return the
    error that ends the run."""

    def __init__(
        self,
        taken: Callable[[int], None],
        progress: Progress,
        plain: bool,
        step: Callable[[Entry], tuple[list[Any], BaseException | None]],
    ) -> None:
        self._taken = taken
        self._progress = progress
        self._plain = plain  # errors="raise" or "skip": values as they are
        self._step = step
        self.values: list[Any] = []
        self.error: BaseException | None = None
        self.on_error: Callable[[], object] | None = None  # stops the run at the first error

    def put(self, entry: Entry, took_slot: bool = True) -> None:
        """``took_slot=False`` for the results auto sampled before the run (no window slot)."""
        if took_slot:
            self._taken(1)  # nothing streams: the window only paces the input
        if self.error is not None:
            return
        result = entry[1]
        if not result.errors and self._plain:  # plait.map's hot path
            self._progress.update(len(result.values))
            self.values.extend(result.values)
            return
        values, error = self._step(entry)
        self.values.extend(values)
        if error is not None:
            self.close(error)
            if self.on_error is not None:
                self.on_error()

    def close(self, error: BaseException | None) -> None:
        if self.error is None and error is not None:
            self.error = error
