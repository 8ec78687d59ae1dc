"""Where a run's results go: from the event loop that runs it to whoever consumes them.

A run (the scheduler, or plait.http's engine) calls ``put(item)`` for each result and
``close(error)`` once at the end, both on its loop. Each consumer tells the producer what it has
taken through ``taken(n)`` (a ``Window.release``): that is what keeps the input read ahead
bounded.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Sink(Protocol[T_contra]):
    def put(self, item: T_contra) -> None: ...
    def close(self, error: BaseException | None) -> None: ...


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
    """Results for a consumer coroutine on the run's own loop (``amap``, ``afetch_all``)."""

    def __init__(self, taken: Callable[[int], None]) -> None:
        self._taken = taken
        self._items: deque[T | _End] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T | _End) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self, error: BaseException | None) -> None:
        self.put(_End(error))

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            while not self._items:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            item = self._items.popleft()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
            self._taken(1)


class ListSink(Generic[T]):
    """Results straight into one list on the loop, with no consumer to hand them to
    (``plait.map``): ``on_put`` turns each into values, or returns the error that ends the run."""

    def __init__(
        self,
        taken: Callable[[int], None],
        on_put: Callable[[T, list[object]], BaseException | None],
    ) -> None:
        self._taken = taken
        self._on_put = on_put
        self.values: list[object] = []
        self.error: BaseException | None = None
        self.on_error: Callable[[], object] | None = None  # stops the run at the first error

    def put(self, item: T) -> None:
        self._taken(1)  # nothing streams: the window only paces the input
        self.add(item)

    def add(self, item: T) -> None:
        """``put`` for a result that took no window slot."""
        if self.error is not None:
            return
        error = self._on_put(item, self.values)
        if error is not None:
            self.close(error)
            if self.on_error is not None:
                self.on_error()

    def close(self, error: BaseException | None) -> None:
        if self.error is None and error is not None:
            self.error = error
