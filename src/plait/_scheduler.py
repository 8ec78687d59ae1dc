"""The one engine: worker coroutines pull chunks lazily through a bounded window, run them on a
backend, and deliver them (in input order or as completed) to a sink.

Memory stays bounded: a chunk holds a window slot from the moment it is pulled from the input
until the consumer has taken its results, so at most ``window`` chunks are ever read ahead.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from ._backends import REGISTRY
from ._backends._base import Backend, ChunkResult, is_async_callable, reraise_stop
from ._chunks import Source
from ._exceptions import TaskTimeout
from ._policies import Policies
from ._sinks import Sink

Entry = tuple[int, ChunkResult]  # (index of the chunk's first item, its results)


class Window:
    """Counts free slots; acquired on the loop, released from any thread."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._free = size
        self._loop = loop
        self._loop_thread: int | None = None  # known at the first acquire, which runs there
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    def acquire_nowait(self) -> None:
        """Take a slot even if none is free (to balance a release that had no acquire)."""
        with self._lock:
            self._free -= 1

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    async def acquire(self) -> None:
        self._loop_thread = threading.get_ident()
        while True:
            with self._lock:
                if self._free > 0:
                    self._free -= 1
                    return
                if self._waiter is None:
                    self._waiter = self._loop.create_future()
                waiter = self._waiter
            await waiter

    def release(self, n: int = 1) -> None:
        with self._lock:
            self._free += n
            waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        if threading.get_ident() == self._loop_thread:
            _wake(waiter)
        else:
            self._loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Scheduler:
    def __init__(
        self,
        backend: Backend,
        handle: Any,
        source: Source,
        sink: Sink[Entry],
        window: Window,
        *,
        ordered: bool,
        stop_on_error: bool,
        policies: Policies | None = None,
    ) -> None:
        self._policies = policies if policies is not None and policies.active else None
        self._backend = backend
        self._handle = handle
        self._source = source
        self._sink = sink
        self._window = window
        self._ordered = ordered
        self._stop_on_error = stop_on_error
        self._stopping = False
        self._held: dict[int, Entry] = {}
        self._next_start = source.next_index  # after the items that auto sampled
        self._take_lock = asyncio.Lock() if source.awaits else None
        self._input_error: BaseException | None = None

    async def run(self) -> None:
        error: BaseException | None = None
        deadline_s = self._policies.deadline_s if self._policies else None
        try:
            async with asyncio.timeout(deadline_s):
                await self._run_workers()
            error = self._input_error
        except TimeoutError:
            error = TaskTimeout(
                f"the run passed its deadline of {deadline_s:g} s; "
                "the tasks still running were stopped"
            )
        except BaseExceptionGroup as failure:
            error = _unwrap(failure.exceptions[0])
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._source.close()
            self._sink.close(error)

    async def _run_workers(self) -> None:
        described = REGISTRY.get(self._backend.name)
        fast = described is not None and described.calls_on_loop and self._policies is None
        work = self._work_items if fast else self._work
        async with asyncio.TaskGroup() as group:
            for _ in range(self._backend.workers):
                group.create_task(_guarded(work))

    async def _work(self) -> None:
        while not self._stopping:
            await self._window.acquire()
            chunk = await self._take()
            if chunk is None:
                self._window.release()
                return
            start, items = chunk
            if self._policies is None:
                result = await self._backend.run(self._handle, items)
            else:
                result = await self._policies.run(self._backend, self._handle, items)
            self._source.chunker.learn(len(items), result.elapsed_s)
            if result.errors and self._stop_on_error:
                self._stopping = True
            self._deliver((start, result))

    async def _work_items(self) -> None:
        """For a backend that calls on the loop (asyncio): one awaited call at a time, no chunk
        round trip."""
        fn, window, deliver = self._handle, self._window, self._deliver
        always_await = is_async_callable(fn)
        while not self._stopping:
            if not window.try_acquire():
                await window.acquire()
            chunk = self._pull_one() if self._take_lock is None else await self._take(1)
            if chunk is None:
                window.release()
                return
            index, items = chunk
            try:
                value = fn(items[0])
                if always_await or inspect.isawaitable(value):
                    value = await value
            except BaseException as exc:
                reraise_stop(exc)
                if self._stop_on_error:
                    self._stopping = True
                deliver((index, ChunkResult([None], {0: exc}, 0.0)))
            else:
                deliver((index, ChunkResult([value], None, 0.0)))

    def _pull_one(self) -> tuple[int, list[Any]] | None:
        if self._stopping:
            return None
        try:
            return self._source.take_one()
        except BaseException as exc:
            reraise_stop(exc)
            self._fail_input(exc)
            return None

    def _fail_input(self, exc: BaseException) -> None:
        """The input itself failed: finish what runs, then report it."""
        self._input_error = exc
        self._stopping = True

    async def _take(self, size: int | None = None) -> tuple[int, list[Any]] | None:
        if self._stopping:
            return None
        try:
            if self._take_lock is None:
                return await self._source.take(size)
            async with self._take_lock:  # one puller at a time: input may be pulled in a thread
                return await self._source.take(size)
        except BaseException as exc:
            reraise_stop(exc)
            self._fail_input(exc)
            return None

    def _deliver(self, entry: Entry) -> None:
        if not self._ordered:
            self._sink.put(entry)
            return
        self._held[entry[0]] = entry
        while (ready := self._held.pop(self._next_start, None)) is not None:
            self._next_start += len(ready[1].values)
            self._sink.put(ready)


class _Escaped(Exception):
    """Carries a SystemExit (say) that a user callback (``limit_key``, ``retry_on``) raised
    outside any task: asyncio would let it out of the loop; it ends the run instead."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


async def _guarded(work: Any) -> None:
    try:
        await work()
    except Exception:
        raise
    except BaseException as exc:
        reraise_stop(exc)
        raise _Escaped(exc) from None


def _unwrap(error: BaseException) -> BaseException:
    return error.error if isinstance(error, _Escaped) else error
