"""plait.TaskGroup: a scope for background tasks, with asyncio.TaskGroup's (and trio's) rules.

Leaving the block waits for every task; the first failure cancels the others; the failures are
raised together as an ExceptionGroup. Works with ``with`` and ``async with``; the tasks run on
their own driver threads either way, so an async block never blocks its loop while it waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._tasks import TaskHandle, spawn

_POLL_S = 0.005


class TaskGroup:
    """``with plait.TaskGroup() as group: group.spawn(fn, *args, backend=...)``."""

    def __init__(self) -> None:
        self._tasks: list[TaskHandle] = []
        self._lock = threading.Lock()
        self._aborting = False
        self._closed = False

    def spawn(self, fn: Callable[..., Any], /, *args: Any, **options: Any) -> TaskHandle:
        """``plait.spawn`` inside the group: same arguments, the handle is the group's too."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this TaskGroup has finished: spawn in a new one")
            handle = spawn(fn, *args, **options)
            self._tasks.append(handle)
            aborting = self._aborting
        if aborting:  # a task already failed: the group is winding down
            handle.cancel()
        handle.add_done_callback(self._on_done)
        return handle

    def _on_done(self, handle: Any) -> None:
        if handle.cancelled() or handle.exception() is None:
            return
        self._abort()

    def _abort(self) -> None:
        with self._lock:
            self._aborting = True
            tasks = list(self._tasks)
        for task in tasks:
            task.cancel()

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._abort()
        try:
            self._wait()
        except BaseException:  # Ctrl-C while waiting: stop everything, let it through
            self._abort()
            self._wait(timeout=2.0)
            raise
        self._raise_failures(exc)

    async def __aenter__(self) -> TaskGroup:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._abort()
        try:
            await self._wait_async()
        except BaseException:  # cancelled while waiting: stop the tasks, then let it through
            self._abort()
            await asyncio.shield(self._wait_async())
            raise
        self._raise_failures(exc)

    def _wait(self, timeout: float | None = None) -> None:
        while True:  # tasks may spawn more tasks into the group meanwhile
            with self._lock:
                pending = [t for t in self._tasks if not t.finished.is_set()]
                if not pending:
                    self._closed = True
                    return
            for task in pending:
                if not task.finished.wait(timeout):
                    return

    async def _wait_async(self) -> None:
        while True:
            with self._lock:
                pending = [t for t in self._tasks if not t.finished.is_set()]
                if not pending:
                    self._closed = True
                    return
            while not pending[0].finished.is_set():  # polled: no thread to leave behind
                await asyncio.sleep(_POLL_S)

    def _raise_failures(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            return  # KeyboardInterrupt, SystemExit, cancellation: they go through as they are
        errors = [e for t in self._tasks if not t.cancelled() and (e := t.exception())]
        if exc is not None:
            errors.insert(0, exc)
        if errors:
            raise BaseExceptionGroup("unhandled errors in a plait.TaskGroup", errors)
