"""Process workers shared by the ``plait.map`` calls of a program, as loky's reusable executor.

A run of ``plait.map(..., backend="process")`` (without ``initializer`` or
``max_tasks_per_worker``: those keep private workers) borrows idle workers from here and gives
them back when it ends well. Only a worker that finished its last task cleanly comes back: one
that crashed or timed out was already replaced, and a run that was cancelled or stopped early
kills its workers instead of giving them back.

An idle worker exits after ``PLAIT_IDLE_TIMEOUT`` seconds (default ``DEFAULT_IDLE_TIMEOUT_S``;
0 turns sharing off), at interpreter exit, at once when the parent dies (its lifeline), and on
``plait.shutdown()``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Protocol

# Measured on a 2-core machine (docs/api.md): a map of 2 tiny tasks on 2 workers takes ~1 ms
# with shared workers, ~4-15 ms when each call forks its workers from the template, ~80-130 ms
# when each spawns interpreters; an idle worker holds ~13 MB RSS (~9 MB of it its own). Missing
# the timeout costs only a fork, so it can be short: 5 s covers the gaps between the calls of a
# loop or a script's steps, and a program that stops calling frees its workers soon after.
DEFAULT_IDLE_TIMEOUT_S = 5.0
_ENV = "PLAIT_IDLE_TIMEOUT"


class Reusable(Protocol):
    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


_lock = threading.Condition()
_idle: list[tuple[Reusable, float]] = []  # (worker, when it expires), the freshest last
_reaper: threading.Thread | None = None


def idle_timeout_s() -> float:
    """From ``PLAIT_IDLE_TIMEOUT`` (seconds), read at each hand-back so that it can change."""
    text = os.environ.get(_ENV)
    if text is None:
        return DEFAULT_IDLE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_IDLE_TIMEOUT_S
    return value if value == value and value >= 0 else DEFAULT_IDLE_TIMEOUT_S  # NaN: default


def _limit() -> int:
    from . import cpu_count

    return 4 * cpu_count()  # more idle workers than this are more memory than they save


def take() -> Reusable | None:
    """The most recently used idle worker that is still alive, or None."""
    while True:
        with _lock:
            if not _idle:
                return None
            worker, _ = _idle.pop()
        if worker.alive():
            return worker
        worker.stop()  # killed while idle: reap it


def give(worker: Reusable) -> bool:
    """Keep an idle worker for a later run; False if it is not wanted (the caller stops it)."""
    global _reaper
    timeout = idle_timeout_s()
    if timeout <= 0 or _exiting:
        return False
    with _lock:
        if len(_idle) >= _limit():
            return False
        _idle.append((worker, time.monotonic() + timeout))
        _lock.notify_all()
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="plait-idle-workers", daemon=True)
            _reaper.start()
    return True


def _reap() -> None:
    """Stop idle workers as they expire; end when none is left."""
    global _reaper
    while True:
        with _lock:
            while _idle:
                left = min(deadline for _, deadline in _idle) - time.monotonic()
                if left <= 0:
                    break
                _lock.wait(left)
            if not _idle:
                _reaper = None
                return
            now = time.monotonic()
            expired = [worker for worker, deadline in _idle if deadline <= now]
            _idle[:] = [(worker, deadline) for worker, deadline in _idle if deadline > now]
        _stop_all(expired)


def idle_pids() -> set[int]:
    with _lock:
        return {worker.pid for worker, _ in _idle}


def release() -> None:
    """Stop every idle worker now and wait until they have exited."""
    global _reaper
    with _lock:
        workers = [worker for worker, _ in _idle]
        _idle.clear()
        reaper = _reaper
        _lock.notify_all()
    _stop_all(workers)
    if reaper is not None and reaper is not threading.current_thread():
        reaper.join()


def _stop_all(workers: list[Reusable]) -> None:
    for worker in workers:
        worker.stop()


_exiting = False


def _at_exit() -> None:
    """Idle workers leave first (they flush what their tasks printed), then the template."""
    global _exiting
    _exiting = True
    release()
    template = sys.modules.get("plait._backends._template")
    if template is not None:
        template.stop()


atexit.register(_at_exit)


def _forget_after_fork() -> None:
    """A forked child of the user's process owns none of its parent's workers."""
    global _lock, _idle, _reaper
    _lock, _idle, _reaper = threading.Condition(), [], None


os.register_at_fork(after_in_child=_forget_after_fork)
