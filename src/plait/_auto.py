"""backend="auto": a placeholder rule until the measured chooser lands (issue 3).

Contract with ``_run.make_plan``: ``decide`` may run a sample of the real calls; their results
come back in ``head`` (items 0..k-1, kept, never recomputed) and ``items`` is what remains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._backends._base import ChunkResult, is_async_callable
from ._options import Options


@dataclass(slots=True)
class AutoPlan:
    backend: str
    workers: int | None
    chunksize: int | None
    items: Any
    head: ChunkResult | None = None


def decide(fn: Callable[..., Any], items: Any, options: Options, length: int) -> AutoPlan:
    backend = "asyncio" if is_async_callable(fn) else ("process" if options.kind == "cpu" else "thread")
    return AutoPlan(backend, options.workers, options.chunksize, items)
