"""The event loop that runs one Pool's submitted calls on the asyncio and inline backends.

Its own thread, not the loop shared by plait's sync API: a slow task or done-callback delays
only this pool. At most ``workers`` calls run at once; the others wait, PENDING, in order.
The thread starts with the first submit and ends at shutdown, or when the pool is collected
(it holds the backend, never the Pool).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections import deque
from typing import Any

from ._backends._base import Backend
from ._loops import new_event_loop

_loop_ids = itertools.count(1)
_Call = tuple[concurrent.futures.Future[Any], Any, Any]


class SubmitLoop:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._waiting: deque[_Call] = deque()  # under the lock: shutdown cancels them at once
        # Touched on the loop thread only:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def submit(self, future: concurrent.futures.Future[Any], handle: Any, item: Any) -> None:
        with self._lock:  # so that no call can arrive after the one that closes the loop
            if self._closed:
                raise RuntimeError("this plait.Pool is shut down; create a new one")
            self._waiting.append((future, handle, item))
            self._started().call_soon_threadsafe(self._admit)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = new_event_loop(fast=self._backend.name == "asyncio")
            name = f"plait-submit-{next(_loop_ids)}"
            thread = threading.Thread(target=_run_loop, args=(loop,), name=name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _admit(self) -> None:
        """On the loop: start waiting calls up to the limit; stop when closing and idle."""
        while len(self._tasks) < self._backend.workers:
            with self._lock:
                if not self._waiting:
                    break
                future, handle, item = self._waiting.popleft()
            if future.set_running_or_notify_cancel():
                task = asyncio.get_running_loop().create_task(self._one(future, handle, item))
                self._tasks.add(task)
        with self._lock:
            idle = not self._tasks and not self._waiting
        if self._closing and idle:
            asyncio.get_running_loop().stop()

    async def _one(self, future: concurrent.futures.Future[Any], handle: Any, item: Any) -> None:
        task = asyncio.current_task()
        try:
            result = await self._backend.run(handle, [item])
        except asyncio.CancelledError:  # stopped by a pool left through an exception
            future.set_exception(concurrent.futures.CancelledError())
        except BaseException as exc:  # SystemExit & co: the task's error; the loop lives on
            future.set_exception(exc)
        else:
            if result.errors:
                future.set_exception(result.errors[0])
            else:
                future.set_result(result.values[0])
        finally:
            self._tasks.discard(task)
            self._admit()

    def close(self, *, wait: bool | float, cancel_queued: bool, cancel: bool) -> None:
        """Run what was submitted (less what is cancelled), then end the thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            dropped = list(self._waiting) if cancel_queued or cancel else []
            if dropped:
                self._waiting.clear()
        for future, _, _ in dropped:
            future.cancel()
            future.set_running_or_notify_cancel()  # wakes concurrent.futures.wait()
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(self._close, cancel)
        if wait is not False and thread is not threading.current_thread():
            thread.join(None if wait is True else float(wait))

    def _close(self, stop_running: bool) -> None:
        self._closing = True
        if stop_running:
            for task in self._tasks:
                task.cancel()
        self._admit()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
