"""When a thread pool starts another thread: at once up to the core count, beyond it only
while the threads it has leave a core idle.

Threads past the core count help calls that wait (network, sleep) and hurt calls that keep a
core busy with the GIL released (hashing large files, compression, numpy): 32 such threads on
2 cores run ~10% slower than 2, from GIL hand-offs and caches shared by more buffers. Whether
the threads keep the cores busy is read from this process's CPU time over a short interval.
A pool whose chunks stop completing grows anyway, so tasks that wait for one another (a
barrier of more tasks than cores) never stall for want of a thread.
"""

from __future__ import annotations

import time

from . import cpu_count

CHECK_S = 0.002  # how often to look: the ramp-up delay for calls that wait
_MEASURE_S = 0.005  # how long a measurement lasts, unless the threads plainly wait
_STALL_S = 0.05  # no chunk finished for this long: the threads wait for something; add more
_STALE_S = 0.1  # a measurement older than this says nothing about the threads running now
_IDLE = 0.5  # cores in use below which the threads mostly wait: start all that are wanted
_FREE = 0.5  # cores left idle past which one more thread per running one may help


class Growth:
    def __init__(self) -> None:
        self.cores = cpu_count()
        self._wall = 0.0
        self._cpu = 0.0
        self._used: float | None = None  # cores in use over the last measurement; None: stale
        self.started = 0  # chunks the pool's threads have begun (approximate: no lock)
        self.completed = 0  # chunks the pool's threads have finished
        self._completed = 0  # ... when last seen to change
        self._progress = 0.0  # when a chunk was last seen to finish (or measuring began)

    def allows(self, threads: int) -> int:
        """How many threads to start now beside the ``threads`` there are (under the pool's
        lock); 0 means: ask again in ``CHECK_S``. Up to the core count, one at a time at once;
        past it all that are wanted while the threads mostly wait or have stalled, as many as
        there are (a doubling) while they leave a core idle, none while they fill the cores."""
        if threads < self.cores:
            return 1
        now = self._measure()
        if self._used is None:
            return 0
        if self._used < _IDLE or now - self._progress >= _STALL_S:
            return 1 << 20  # no limit but the pool's own
        return threads if self._used < self.cores - _FREE else 0

    def _measure(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        if self.completed != self._completed:
            self._completed, self._progress = self.completed, wall
        elapsed = wall - self._wall
        if elapsed > _STALE_S or self.started < self.cores:
            # stale, or the first threads have not got going (the GIL may hold them back for
            # a switch interval): what the CPU did so far says nothing about them
            self._used = None
            self._progress = wall
        elif elapsed >= CHECK_S:
            used = (cpu - self._cpu) / elapsed
            if used >= _IDLE and elapsed < _MEASURE_S:
                return wall  # busy so far: judge how busy over the full interval
            self._used = used
        else:
            return wall  # too short to tell: keep the last verdict and its start
        self._wall, self._cpu = wall, cpu
        return wall
