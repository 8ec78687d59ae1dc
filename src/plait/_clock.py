"""Time, injected: policies (rate limits, backoff, pauses) take a clock so tests never sleep.

    Clock          the protocol: ``now()`` in seconds and ``await sleep(seconds)``
    RealClock      monotonic time and ``asyncio.sleep``; what plait uses by default
    FakeClock      virtual time for tests: sleeping advances it, nothing really waits

With ``FakeClock(autojump=True)`` (the default), virtual time jumps to the next sleeper's deadline
as soon as the event loop has nothing else ready to run, so a schedule such as "5 starts at 2/s"
is checked exactly (0, 0.5, 1.0, 1.5, 2.0) in microseconds of real time. ``advance(seconds)``
moves time by hand instead (``autojump=False``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

_SETTLE_ROUNDS = 1000  # loop turns a FakeClock waits for other tasks to go idle before a jump


class Clock(Protocol):
    """What the policies need from time."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Monotonic wall time (the same clock as asyncio's loop) and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = RealClock()


class FakeClock:
    """Virtual time for tests: pass ``clock=FakeClock()`` and rate limits and retry backoff
    run on it, exactly and without waiting (``timeout`` and ``deadline`` stay in real time).

    ``sleep`` waits until the clock is moved past its deadline. With ``autojump=True`` (the
    default) time jumps to the next deadline as soon as the event loop is idle; with
    ``autojump=False`` only ``advance(seconds)`` moves it. ``now()`` starts at ``start``.

    >>> import plait
    >>> from plait.testing import FakeClock
    >>> clock = FakeClock()
    >>> async def started(i):
    ...     return clock.now()
    >>> plait.map(started, range(5), rate="2/s", clock=clock)  # 2 s of virtual time, instant
    [0.0, 0.5, 1.0, 1.5, 2.0]

    Read ``now()`` on the event loop (an ``async def`` task, as here): a thread that reads it
    may see a time the clock has already jumped to.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = float(start)
        self._autojump = autojump
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jumper: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter))
        if self._autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = loop.create_task(self._jump_when_idle())
        await waiter

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come, earliest first."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._wake_until(self._now + seconds)

    def _wake_until(self, deadline: float) -> None:
        while self._sleepers and self._sleepers[0][0] <= deadline:
            when, _, waiter = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not waiter.done():
                waiter.set_result(None)
        self._now = max(self._now, deadline)

    async def _jump_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sleepers:
            for _ in range(_SETTLE_ROUNDS):  # let every ready task run until it blocks again
                await asyncio.sleep(0)
                if _has_ready_work(loop) is False:
                    break
            self._drop_cancelled()
            if self._sleepers:
                self._wake_until(self._sleepers[0][0])

    def _drop_cancelled(self) -> None:
        live = [entry for entry in self._sleepers if not entry[2].done()]
        if len(live) != len(self._sleepers):
            heapq.heapify(live)
            self._sleepers = live


def _has_ready_work(loop: asyncio.AbstractEventLoop) -> bool | None:
    """Whether callbacks other than ours wait to run (asyncio's loops keep them in ``_ready``);
    None on loops that do not say, where the jumper then waits its full number of rounds."""
    ready = getattr(loop, "_ready", None)
    return None if ready is None else bool(ready)
