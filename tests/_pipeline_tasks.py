"""Stage functions for tests/test_pipeline.py: importable, so process workers can run them."""

from __future__ import annotations

import asyncio
import os
import threading
import time


class StageError(Exception):
    """Raised by a stage on purpose: which stage, which item."""


class Stage:
    """Passes its item on unchanged, fails on the items in ``fails``, counts its calls
    (in-process backends only: a process worker counts in its own copy)."""

    def __init__(self, position: int, fails: frozenset[int] = frozenset()) -> None:
        self.position = position
        self.fails = fails
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        return {"position": self.position, "fails": self.fails}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["position"], state["fails"])  # type: ignore[misc, arg-type]

    def __call__(self, item: int) -> int:
        with self._lock:
            self.calls.append(item)
        if item in self.fails:
            raise StageError(self.position, item)
        return item


def slow_double(x: int) -> int:
    time.sleep(0.005)
    return 2 * x


def plus_one(x: int) -> int:
    return x + 1


async def aplus_one(x: int) -> int:
    await asyncio.sleep(0.001)
    return x + 1


def crash_on_three(x: int) -> int:
    if x == 3:
        os._exit(3)  # the worker process dies mid-stage
    return x


def pid_of(_x: int) -> int:
    return os.getpid()
