"""A pool of threads fed from one queue; each thread owns one worker (itself, or a process).

Subclasses say what a worker is (``_open_worker``), how it runs a chunk (``_execute``) and how
it stops (``_close_worker``). Threads start lazily, one per chunk waiting, up to ``workers``.

A chunk's outcome goes back through a ``Reply``: to the event loop that awaits it (``run``, for
the scheduler), or straight into a ``concurrent.futures.Future`` from the pool thread (``send``,
for executors), as the stdlib's executors do: no event loop is involved, so a slow done-callback
delays only the pool thread that runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import queue
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from ._base import ChunkResult, all_failed, close_thread_runner, reraise_stop
from ._growth import CHECK_S, Growth

W = TypeVar("W")
_pool_ids = itertools.count(1)
_UNOPENED: Any = object()  # a pool thread's worker before its first task


class Reply(Protocol):
    """How a queued chunk reports back; ``ticket`` is what the submitter waits on."""

    # put() runs the submitter's code (a future's done-callbacks) on the pool thread, which is
    # busy until it returns: it counts as idle only after put()
    settles_on_thread: bool

    def start(self, ticket: Any) -> bool:
        """Called by the pool thread before running the chunk; False skips it (cancelled)."""
        ...

    def put(self, ticket: Any, result: ChunkResult) -> None:
        """The chunk ran: hand its outcome over."""
        ...

    def fail(self, ticket: Any, error: BaseException | None) -> None:
        """The chunk will not run: cancelled (``error`` None) or the pool cannot run it."""
        ...

    def abandoned(self, ticket: Any) -> bool:
        """True once nobody waits for the running chunk (its run was stopped): a backend that
        can stop a task may stop it."""
        ...


class _Inbox:
    """Results handed back to one event loop: one wake-up per batch, not one per chunk."""

    settles_on_thread = False  # the loop settles the waiters

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: list[tuple[asyncio.Future[ChunkResult], ChunkResult]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def start(self, waiter: asyncio.Future[ChunkResult]) -> bool:
        return not waiter.cancelled()  # a late cancel only makes the result unused

    def put(self, waiter: asyncio.Future[ChunkResult], result: ChunkResult) -> None:
        with self._lock:
            self._ready.append((waiter, result))
            if self._scheduled:
                return
            self._scheduled = True
        self.call(self._drain)

    def fail(self, waiter: asyncio.Future[ChunkResult], error: BaseException | None) -> None:
        self.call(_settle, waiter, error)

    def abandoned(self, waiter: asyncio.Future[ChunkResult]) -> bool:
        return waiter.cancelled()  # a read from the pool thread: a stale answer is harmless

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


def _settle(waiter: asyncio.Future[ChunkResult], error: BaseException | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.cancel()
    else:
        waiter.set_exception(error)


_Task = tuple[Any, Reply, Any, Sequence[Any], float | None]


class QueuePool(Generic[W]):
    name = "pool"
    grows_by_cpu = False  # past the core count, start threads only while a core is idle

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a task, less tasks queued
        self._lock = threading.Lock()
        self._closed = False
        self._cancelled = False
        self._broken: BaseException | None = None
        self._running = threading.local()  # per pool thread: is its chunk still wanted?
        self.thread_prefix = f"plait-{self.name}-{next(_pool_ids)}-"
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
            weakref.WeakKeyDictionary()
        )
        self._growth = Growth() if self.grows_by_cpu else None
        self._growth_check: asyncio.TimerHandle | None = None  # armed while threads are held

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[ChunkResult] = loop.create_future()
        with self._lock:
            if self._broken is not None:  # each task fails with it: one outcome per input
                return all_failed(len(items), self._broken)
            inbox = self._inboxes.get(loop)
            if inbox is None:
                inbox = self._inboxes[loop] = _Inbox(loop)
            self._enqueue((waiter, inbox, handle, items, timeout_s), loop)
        try:
            return await waiter
        except concurrent.futures.BrokenExecutor as broken:  # queued when the pool broke
            return all_failed(len(items), broken)
        except asyncio.CancelledError as exc:
            reraise_stop(exc)  # the run itself was cancelled
            # dropped by a shutdown that cancels queued work: each item's outcome, as the
            # stdlib's executors report it (not asyncio's BaseException, out of a sync call)
            return all_failed(len(items), concurrent.futures.CancelledError())

    def send(
        self,
        ticket: Any,
        reply: Reply,
        handle: Any,
        items: Sequence[Any],
        timeout_s: float | None = None,
    ) -> None:
        """Queue a chunk; ``reply`` gets its outcome on the pool thread (no event loop)."""
        with self._lock:
            self._enqueue((ticket, reply, handle, items, timeout_s))

    def _enqueue(self, task: _Task, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Under the lock: queue a task, starting a thread if none is idle. From an event loop
        (``run``), a pool that ``grows_by_cpu`` may hold the thread back and check again soon
        (executors' ``send`` has no loop to check from: it always starts one)."""
        if self._broken is not None:  # a fresh error each time: tracebacks do not pile up
            raise type(self._broken)(*self._broken.args) from self._broken.__cause__
        if self._closed:
            raise RuntimeError("this plait pool is shut down; create a new one")
        if self._idle <= 0 and len(self._threads) < self.workers and self._may_grow(loop):
            self._start_thread()
        else:
            self._idle -= 1
        self._tasks.put(task)

    def _may_grow(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Under the lock: start a thread now, or arm a check on ``loop`` to start it later."""
        if self._growth is None or loop is None or self._growth.allows(len(self._threads)) > 0:
            return True
        if self._growth_check is None:
            self._growth_check = loop.call_later(CHECK_S, self._grow, loop)
        return False

    def _grow(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: start threads for the tasks waiting for one, if the cores have room."""
        assert self._growth is not None
        with self._lock:
            self._growth_check = None
            waiting = min(-self._idle, self.workers - len(self._threads))
            if self._closed or waiting <= 0:
                return
            if allowed := self._growth.allows(len(self._threads)):
                for _ in range(min(waiting, allowed)):
                    self._idle += 1  # the new thread takes one of the queued tasks
                    self._start_thread()
            if waiting > allowed:
                self._growth_check = loop.call_later(CHECK_S, self._grow, loop)

    def _start_thread(self) -> None:
        name = f"{self.thread_prefix}{len(self._threads)}"
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads (the interpreter is exiting): use those there are
            if not self._threads:
                raise
            return
        self._threads.append(thread)

    def _serve(self) -> None:
        worker: Any = _UNOPENED  # opened with the first task, which counts as running meanwhile
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    break
                worker = self._run_task(worker, task)
                del task  # an idle thread must not keep the last task's arguments alive
        finally:
            close_thread_runner()
            if worker is not _UNOPENED:
                self._close_worker(worker)

    def _run_task(self, worker: Any, task: _Task) -> Any:
        ticket, reply, handle, items, timeout_s = task
        if self._broken is not None:
            reply.fail(ticket, self._broken)
            return worker
        if not reply.start(ticket):
            self._now_idle()
            return worker
        if self._growth is not None:
            self._growth.started += 1
        try:
            if worker is _UNOPENED:
                worker = self._open_worker()
            self._running.abandoned = functools.partial(reply.abandoned, ticket)
            try:
                worker, result = self._execute(worker, handle, items, timeout_s)
            finally:
                self._running.abandoned = None  # an idle thread holds no task's future
        except BaseException as exc:  # SystemExit and the like: the task's error, never ours
            error = self._break(exc) if worker is _UNOPENED else exc
            result = all_failed(len(items), error)
        if reply.settles_on_thread:  # a slow done-callback holds this thread: not idle yet
            reply.put(ticket, result)
            self._now_idle()
        else:
            self._now_idle()  # before the reply, so a caller woken by it finds this thread idle
            reply.put(ticket, result)
        return worker

    def _now_idle(self) -> None:
        with self._lock:
            self._idle += 1
            if self._growth is not None:
                self._growth.completed += 1

    def _break(self, exc: BaseException) -> BaseException:
        """A worker could not start (its initializer failed): fail what is queued and refuse new
        work, all with one error."""
        error = concurrent.futures.BrokenExecutor(
            f"a worker of this pool failed to start ({type(exc).__name__}: {exc}); "
            "the pool cannot run tasks"
        )
        error.__cause__ = exc
        with self._lock:
            if self._broken is None:
                self._broken = error
            broken = self._broken
        self._drop_queued(broken)
        return broken

    def close(
        self, *, cancel: bool = False, wait: bool | float = True, cancel_queued: bool = False
    ) -> None:
        """Stop taking work; queued work still runs unless ``cancel_queued``.

        ``cancel`` also drops queued work and stops running work where it can. ``wait``: True
        joins the threads, False does not, a number waits at most that long. Safe to call again
        (a later call may wait where an earlier one did not).
        """
        with self._lock:
            first, stop = not self._closed, cancel and not self._cancelled
            self._closed = True
            self._cancelled = self._cancelled or cancel
            threads = list(self._threads)
        if cancel or cancel_queued:
            self._drop_queued(None)
        if stop:
            self._stop_running()
        if first:
            for _ in threads:
                self._tasks.put(None)
        if wait is not False:
            self._join(threads, None if wait is True else float(wait))

    def _join(self, threads: list[threading.Thread], limit: float | None) -> None:
        deadline = None if limit is None else time.monotonic() + limit
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:  # closed from one of its own tasks: do not wait on itself
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _drop_queued(self, error: BaseException | None) -> None:
        """Fail the queued tasks (cancel them if ``error`` is None); the sentinels stay."""
        sentinels = 0
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is None:
                sentinels += 1
            else:
                task[1].fail(task[0], error)
        for _ in range(sentinels):
            self._tasks.put(None)

    def abandoned(self) -> bool:
        """In ``_execute``: True once nobody waits for the chunk this thread runs."""
        check = getattr(self._running, "abandoned", None)
        return check is not None and bool(check())

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
