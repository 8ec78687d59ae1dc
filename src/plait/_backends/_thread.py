"""Thread backend: threads of this process. A running thread cannot be killed: on cancel,
queued chunks are dropped and running ones finish on their own (``wait=False`` skips waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._base import ChunkResult, blocking_callable, run_chunk
from ._pool import QueuePool


class ThreadBackend(QueuePool[None]):
    name = "thread"

    def prepare(self, fn: Callable[..., Any]) -> Any:
        return blocking_callable(fn)

    def _open_worker(self) -> None:
        return None

    def _execute(self, worker: None, handle: Any, items: Sequence[Any]) -> tuple[None, ChunkResult]:
        return None, run_chunk(handle, items)
