"""Pulling input lazily, one chunk at a time, with a chunk size fixed or learned as we go."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._backends import REGISTRY

# An automatic chunk aims to keep a worker busy this long: long enough to hide the round trip,
# short enough to balance load and keep the read-ahead small. Each backend declares its own.
TARGET_CHUNK_S = {
    name: info.chunk_target_s for name, info in REGISTRY.items() if info.chunk_target_s is not None
}
MAX_GROWTH = 64  # an automatic chunk grows at most this much per measurement
UNKNOWN_LENGTH_CAP = 4096  # with no length hint, chunks stay at most this long


class Chunker:
    """Decides the next chunk size: fixed, or learned from the measured time per item."""

    def __init__(self, backend: str, workers: int, chunksize: int | None, length: int) -> None:
        self.fixed = chunksize
        self.target_s = TARGET_CHUNK_S.get(backend)
        self.size = chunksize or 1
        cap = math.ceil(length / (4 * workers)) if length > 0 else UNKNOWN_LENGTH_CAP
        self.cap = max(1, cap)
        self.length = length
        self.workers = workers
        self.floor = 1  # the least a chunk shrinks to near the end

    def size_at(self, index: int) -> int:
        """The size of the chunk that starts at item ``index``. Near the end of an input of known
        length, at most a share of what is left (a guided schedule): the last chunks get shorter
        so the workers finish together, while the ones before stay large (fewer round trips).
        A chunk shrinks no further than a quarter of the target time: shorter ones would cost
        more round trips than the finish gains."""
        left = self.length - index
        if self.fixed is not None or left <= 0:  # no length, or a length hint that fell short
            return self.size
        return max(self.floor, min(self.size, math.ceil(left / (2 * self.workers))))

    def learn(self, items: int, elapsed_s: float) -> None:
        if self.fixed is not None or self.target_s is None or items == 0:
            return
        per_item = max(elapsed_s / items, 1e-8)
        wanted = int(self.target_s / per_item)
        self.size = max(1, min(wanted, self.size * MAX_GROWTH, self.cap))
        self.floor = max(1, min(self.size, wanted // 4))


def _iterator_types(*examples: Any) -> tuple[type, ...]:
    return tuple({type(example) for example in examples} | {type(iter(e)) for e in examples})


# In-memory containers and endless counters: pulling from them never blocks, so it happens on
# the loop itself. Any other iterable (a generator, a file, another imap) may block: a reader
# thread pulls it, so results keep streaming while the input waits.
_NEVER_BLOCKS = (
    *_iterator_types(
        [], (), range(0), range(1 << 70), {}, {}.keys(), {}.values(), {}.items(), set(),
        frozenset(), "", b"", bytearray(), deque(),
    ),
    itertools.count,
    itertools.repeat,
)


def never_blocks(items: Any) -> bool:
    return type(items) in _NEVER_BLOCKS


class Source:
    """Numbered chunks from a sync or async iterable; pulls only when asked."""

    def __init__(self, items: Any, chunker: Chunker) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        self._reader: _Reader | None = None
        if hasattr(items, "__aiter__"):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
            if not never_blocks(items):
                self._reader = _Reader(self._sync)
        self.is_async = self._async is not None
        self.awaits = self.is_async or self._reader is not None  # pulls must be awaited
        self.chunker = chunker
        self.next_index = 0
        self.exhausted = False

    def close(self) -> None:
        """Let the reader thread go (after the pull it may be blocked in, if any)."""
        if self._reader is not None:
            self._reader.close()

    async def take(self, size: int | None = None) -> tuple[int, list[Any]] | None:
        """The next chunk as (index of its first item, items), or None at the end."""
        if self.exhausted:
            return None
        size = size or self.chunker.size_at(self.next_index)
        try:
            if self._reader is not None:
                items = await self._reader.take(size)
            elif self._sync is not None:
                items = list(itertools.islice(self._sync, size)) if size > 1 else self._one()
            else:
                items = await self._take_async(size)
        except BaseException:
            self.exhausted = True  # an input that failed is never read again
            raise
        if len(items) < size:
            self.exhausted = True
        if not items:
            return None
        start = self.next_index
        self.next_index += len(items)
        return start, items

    def take_one(self) -> tuple[int, list[Any]] | None:
        """The next single item from a sync iterable, as a one-item chunk."""
        if self.exhausted:
            return None
        assert self._sync is not None
        for item in self._sync:
            index = self.next_index
            self.next_index = index + 1
            return index, [item]
        self.exhausted = True
        return None

    def _one(self) -> list[Any]:
        assert self._sync is not None
        for item in self._sync:
            return [item]
        return []

    async def _take_async(self, size: int) -> list[Any]:
        assert self._async is not None
        items: list[Any] = []
        async for item in self._async:
            items.append(item)
            if len(items) >= size:
                break
        return items


class _Reader:
    """Pulls a sync iterator on a thread of its own, one request at a time."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def take(self, size: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Any]] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="plait-input", daemon=True)
            self._thread.start()
        self._requests.put((size, loop, waiter))
        return await waiter

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            size, loop, waiter = request
            try:
                items: list[Any] = list(itertools.islice(self._iterator, size))
            except BaseException as exc:
                _settle(loop, waiter, None, exc)
            else:
                _settle(loop, waiter, items, None)

    def close(self) -> None:
        self._requests.put(None)


_Request = tuple[int, asyncio.AbstractEventLoop, "asyncio.Future[list[Any]]"]


def _settle(
    loop: asyncio.AbstractEventLoop,
    waiter: asyncio.Future[list[Any]],
    items: list[Any] | None,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(items or [])

    with contextlib.suppress(RuntimeError):  # the run's loop is closed: nobody waits
        loop.call_soon_threadsafe(settle)
