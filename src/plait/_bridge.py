"""Where runs happen: the event-loop threads of the sync API.

Every run of the sync API (``plait.map``, ``imap``, ``fetch_all``) drives its scheduler on an
event loop of its own, on a ``plait-loop`` thread leased for the run and shelved for reuse when
the run ends (a run of coroutines gets a uvloop loop where plait[fast] installed it: _loops).
No two runs share a loop, so nothing one run does (a slow input, a task that
blocks the loop, a stuck close) can slow or deadlock another one, and ``imap`` over ``imap``
works. How results reach the caller is ``_sinks``'s concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ._loops import new_event_loop

LOOP_THREAD_NAME = "plait-loop"
MAX_IDLE_LOOPS = 2  # loops kept for the next runs; more concurrent runs start more
_log = logging.getLogger("plait")


class LoopThread:
    """An event loop on a daemon thread that survives anything a callback raises."""

    def __init__(self, fast: bool = False) -> None:
        self.fast = fast
        self.loop = new_event_loop(fast)
        self._stopping = False
        self.thread = threading.Thread(target=self._serve, name=LOOP_THREAD_NAME, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                self.loop.run_forever()
            except BaseException as exc:
                _log.error("plait's event loop survived %r raised by a task", exc)
        self.loop.close()

    def stop(self) -> None:
        """End the thread once the loop has run what it has (from any thread)."""
        self._stopping = True
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)


_idle: list[LoopThread] = []
_idle_lock = threading.Lock()


def lease_loop(fast: bool = False) -> LoopThread:
    """A loop thread for one run, nobody else's until ``give_back``; ``fast``: a run of
    coroutines, on uvloop where it is installed."""
    with _idle_lock:
        for index in range(len(_idle) - 1, -1, -1):
            if _idle[index].fast == fast:
                return _idle.pop(index)
    return LoopThread(fast)


def give_back(lease: LoopThread) -> None:
    """Shelve the loop for the next run once the tasks still on it have finished."""
    with contextlib.suppress(RuntimeError):  # its thread ended: nothing to shelve
        lease.loop.call_soon_threadsafe(_shelve_when_idle, lease)


def _shelve_when_idle(lease: LoopThread) -> None:
    pending = [task for task in asyncio.all_tasks(lease.loop) if not task.done()]
    if pending:  # a task that ignores cancellation: this loop is reused only after it ends
        waiter = asyncio.gather(*pending, return_exceptions=True)
        waiter.add_done_callback(lambda _: _shelve_when_idle(lease))
        return
    with _idle_lock:
        if len(_idle) < MAX_IDLE_LOOPS and lease not in _idle:
            _idle.append(lease)
            return
    lease.stop()


def in_thread(make: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """``make()`` on a short-lived thread, as a future of the running loop (planning a run may
    sample calls or connect to a cluster, which block)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(value)

    def run() -> None:
        try:
            value, error = make(), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return waiter


def _forget_loops_after_fork() -> None:
    """A forked child has none of its parent's threads: start afresh on first use."""
    global _idle_lock
    _idle.clear()
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_loops_after_fork)
