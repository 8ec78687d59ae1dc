"""Thread backend: threads of this process. A running thread cannot be killed: on cancel,
queued chunks are dropped and running ones finish on their own (``wait=False`` skips waiting).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._base import ChunkResult, blocking_callable, close_thread_runner, run_chunk, timed_out
from ._pool import QueuePool


class ThreadBackend(QueuePool[None]):
    name = "thread"
    grows_by_cpu = True  # extra threads only help calls that leave a core idle (_growth)

    def __init__(self, workers: int, *, initializer: Callable[[], Any] | None = None) -> None:
        super().__init__(workers)
        self._initializer = initializer

    def prepare(self, fn: Callable[..., Any]) -> Any:
        return blocking_callable(fn)

    def _open_worker(self) -> None:
        if self._initializer is not None:
            self._initializer()  # once per worker thread; if it raises, the pool is broken

    def _execute(
        self, worker: None, handle: Any, items: Sequence[Any], timeout_s: float | None
    ) -> tuple[None, ChunkResult]:
        if timeout_s is None:
            return None, run_chunk(handle, items)
        return None, _run_with_timeout(handle, items, timeout_s)


def _run_with_timeout(handle: Any, items: Sequence[Any], timeout_s: float) -> ChunkResult:
    """Run in a helper thread; past the timeout report it and abandon the thread (no kill)."""
    results: list[ChunkResult] = []

    def run() -> None:
        try:
            results.append(run_chunk(handle, items))
        finally:
            close_thread_runner()

    thread = threading.Thread(target=run, name="plait-timed-task", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if results:
        return results[0]
    how = "a thread cannot be killed, so it was abandoned and may still be running"
    return timed_out(len(items), timeout_s, how)
