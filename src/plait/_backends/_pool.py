"""A pool of threads fed from one queue; each thread owns one worker (itself, or a process).

Subclasses say what a worker is (``_open_worker``), how it runs a chunk (``_execute``) and how
it stops (``_close_worker``). Threads start lazily, one per chunk waiting, up to ``workers``.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from ._base import ChunkResult, close_thread_runner

W = TypeVar("W")
_Task = tuple[Future[ChunkResult], Any, Sequence[Any], float | None]
_pool_ids = itertools.count(1)


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

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        return await asyncio.wrap_future(self.submit(handle, items, timeout_s))

    def submit(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this plait pool is shut down; create a new one")
            self._tasks.put((future, handle, items, timeout_s))
            if self._idle <= 0 and len(self._threads) < self.workers:
                self._start_thread()
            else:
                self._idle -= 1
        return future

    def _start_thread(self) -> None:
        name = f"{self._prefix}-{len(self._threads)}"
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        worker = self._open_worker()
        try:
            while (task := self._tasks.get()) is not None:
                future, handle, items, timeout_s = task
                if future.set_running_or_notify_cancel():
                    worker, result = self._execute(worker, handle, items, timeout_s)
                    future.set_result(result)
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
                task[0].cancel()

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
