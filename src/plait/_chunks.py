"""Pulling input lazily, one chunk at a time, with a chunk size fixed or learned as we go."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

# An automatic chunk aims to keep a worker busy this long: long enough to hide the round trip,
# short enough to balance load and keep the read-ahead small.
TARGET_CHUNK_S = {"process": 0.02, "thread": 0.002}
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

    def learn(self, items: int, elapsed_s: float) -> None:
        if self.fixed is not None or self.target_s is None or items == 0:
            return
        per_item = max(elapsed_s / items, 1e-8)
        wanted = int(self.target_s / per_item)
        self.size = max(1, min(wanted, self.size * MAX_GROWTH, self.cap))


class Source:
    """Numbered chunks from a sync or async iterable; pulls only when asked."""

    def __init__(self, items: Any, chunker: Chunker) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if hasattr(items, "__aiter__"):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
        self.is_async = self._async is not None
        self.chunker = chunker
        self.next_index = 0
        self.exhausted = False

    async def take(self) -> tuple[int, list[Any]] | None:
        """The next chunk as (index of its first item, items), or None at the end."""
        if self.exhausted:
            return None
        size = self.chunker.size
        if self._sync is not None:
            items = list(itertools.islice(self._sync, size)) if size > 1 else self._one()
        else:
            items = await self._take_async(size)
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
