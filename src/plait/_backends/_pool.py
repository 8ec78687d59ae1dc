"""A pool of threads fed from one queue; each thread owns one worker (itself, or a process).

Subclasses say what a worker is (``_open_worker``), how it runs a chunk (``_execute``) and how
it stops (``_close_worker``). Threads start lazily, one per chunk waiting, up to ``workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from ._base import ChunkResult, close_thread_runner

W = TypeVar("W")
_pool_ids = itertools.count(1)


class _Inbox:
    """Results handed back to one event loop: one wake-up per batch, not one per chunk."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: list[tuple[asyncio.Future[ChunkResult], ChunkResult]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, waiter: asyncio.Future[ChunkResult], result: ChunkResult) -> None:
        with self._lock:
            self._ready.append((waiter, result))
            if self._scheduled:
                return
            self._scheduled = True
        self.call(self._drain)

    def call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(callback, *args)

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for waiter, result in ready:
            if not waiter.done():
                waiter.set_result(result)


_Task = tuple[asyncio.Future[ChunkResult], _Inbox, Any, Sequence[Any], float | None]


class QueuePool(Generic[W]):
    name = "pool"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a task, less tasks queued
        self._lock = threading.Lock()
        self._closed = False
        self._cancelled = False
        self._prefix = f"plait-{self.name}-{next(_pool_ids)}"
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
            weakref.WeakKeyDictionary()
        )

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[ChunkResult] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this plait pool is shut down; create a new one")
            inbox = self._inboxes.get(loop)
            if inbox is None:
                inbox = self._inboxes[loop] = _Inbox(loop)
            self._tasks.put((waiter, inbox, handle, items, timeout_s))
            if self._idle <= 0 and len(self._threads) < self.workers:
                self._start_thread()
            else:
                self._idle -= 1
        return await waiter

    def _start_thread(self) -> None:
        name = f"{self._prefix}-{len(self._threads)}"
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        worker = self._open_worker()
        try:
            while (task := self._tasks.get()) is not None:
                waiter, inbox, handle, items, timeout_s = task
                if not waiter.cancelled():  # a late cancel only makes the result unused
                    worker, result = self._execute(worker, handle, items, timeout_s)
                    inbox.put(waiter, result)
                with self._lock:
                    self._idle += 1
        finally:
            close_thread_runner()
            self._close_worker(worker)

    def close(self, *, cancel: bool = False, wait: bool | float = True) -> None:
        """``wait``: True joins the threads, False does not, a number waits at most that long."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancelled = cancel
        if cancel:
            self._drop_queued()
            self._stop_running()
        for _ in self._threads:
            self._tasks.put(None)
        if wait is False:
            return
        deadline = None if wait is True else time.monotonic() + float(wait)
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _drop_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task[1].call(task[0].cancel)

    # Hooks for subclasses.
    def _open_worker(self) -> W:
        raise NotImplementedError

    def _execute(
        self, worker: W, handle: Any, items: Sequence[Any], timeout_s: float | None
    ) -> tuple[W, ChunkResult]:
        raise NotImplementedError

    def _close_worker(self, worker: W) -> None:
        pass

    def _stop_running(self) -> None:
        """On cancel: stop what is running, where that is possible."""
