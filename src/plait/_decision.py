"""Decision: which backend ``backend="auto"`` picked, with how many workers, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """The backend plait chose, and the reason in plain words with the numbers it rests on.

    ``workers`` is the number of calls that run at once; ``chunksize`` is ``None`` when the
    scheduler learns it from the measured call time.
    """

    backend: str
    workers: int
    chunksize: int | None
    reason: str

    def __str__(self) -> str:
        chunks = "" if self.chunksize is None else f", chunksize={self.chunksize}"
        return f"backend={self.backend!r}, workers={self.workers}{chunks}: {self.reason}"
