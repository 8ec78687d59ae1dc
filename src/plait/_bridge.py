"""Where results go: to a caller's thread (sync API) or to a coroutine on the same loop (amap).

The sync API drives the scheduler on one private event-loop thread, so it works the same from
scripts, from threads and from inside a running loop (a notebook).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator

from ._scheduler import Entry, Window

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()
LOOP_THREAD_NAME = "plait-loop"


def background_loop() -> asyncio.AbstractEventLoop:
    """The private loop that drives the sync API, started on first use."""
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=LOOP_THREAD_NAME, daemon=True)
            thread.start()
            _loop, _loop_thread = loop, thread
        return _loop


def on_background_loop() -> bool:
    return _loop_thread is not None and threading.current_thread() is _loop_thread


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ThreadSink:
    """Entries batched once per loop iteration into a queue that a thread reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, window: Window) -> None:
        self._loop = loop
        self._window = window
        self._queue: queue.SimpleQueue[list[Entry] | _End] = queue.SimpleQueue()
        self._batch: list[Entry] = []

    def put(self, entry: Entry) -> None:
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(entry)

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._queue.put(batch)

    def close(self, error: BaseException | None) -> None:
        self._flush()
        self._queue.put(_End(error))

    def __iter__(self) -> Iterator[Entry]:
        while True:
            batch = self._queue.get()
            if isinstance(batch, _End):
                if batch.error is not None:
                    raise batch.error
                return
            for entry in batch:
                yield entry
                self._window.release()


class LoopSink:
    """Entries handed to a consumer coroutine on the same loop."""

    def __init__(self, window: Window) -> None:
        self._window = window
        self._entries: deque[Entry | _End] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, entry: Entry | _End) -> None:
        self._entries.append(entry)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self, error: BaseException | None) -> None:
        self.put(_End(error))

    async def __aiter__(self) -> AsyncIterator[Entry]:
        while True:
            while not self._entries:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            entry = self._entries.popleft()
            if isinstance(entry, _End):
                if entry.error is not None:
                    raise entry.error
                return
            yield entry
            self._window.release()
