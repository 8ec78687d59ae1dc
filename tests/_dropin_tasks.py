"""Tasks for test_dropin.py, importable by worker processes (they get the parent's sys.path).

Processes are coordinated with files, not multiprocessing objects: a task says it started by
creating a file and waits for the test to create another one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

INIT_VALUE = "uninitialized"


class Blob:
    """A result big enough to measure (10 kB) and weak-referenceable."""

    def __init__(self, size: int = 10_000) -> None:
        self.payload = bytes(size)


class Unpicklable:
    def __reduce__(self) -> Any:
        import pickle

        raise pickle.PicklingError("refused on purpose")


def blob(_: Any = None) -> Blob:
    return Blob()


def square(x: int) -> int:
    return x * x


def pid(_: Any = None) -> int:
    return os.getpid()


def divide(a: int, b: int) -> float:
    return a / b


def set_init(value: str) -> None:
    global INIT_VALUE
    INIT_VALUE = value


def get_init() -> str:
    return INIT_VALUE


def fail_init() -> None:
    raise ValueError("initializer failed on purpose")


def exit_with(code: int) -> None:
    sys.exit(code)


def die(code: int = 3) -> None:
    os._exit(code)


def return_unpicklable() -> Unpicklable:
    return Unpicklable()


def block(started: str, release: str, value: Any = None, limit_s: float = 30.0) -> Any:
    """Say it started (create ``started``), then wait until ``release`` exists."""
    Path(started).touch()
    deadline = time.monotonic() + limit_s
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.005)
    return value


async def ablock(started: str, release: str, value: Any = None, limit_s: float = 30.0) -> Any:
    """``block`` for the asyncio backend: waits without blocking the loop."""
    Path(started).touch()
    deadline = time.monotonic() + limit_s
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        await asyncio.sleep(0.005)
    return value


class Gate:
    """Files that let a test start tasks that block, see them start, and release them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.release_file = folder / "release"
        self._ids = itertools.count()

    def task(self) -> tuple[str, str]:
        return str(self.folder / f"started-{next(self._ids)}"), str(self.release_file)

    def wait_started(self, started: str, limit_s: float = 30.0) -> None:
        deadline = time.monotonic() + limit_s
        while not os.path.exists(started):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.005)

    def release(self) -> None:
        self.release_file.touch()


def append_line(path: str, text: str, delay_s: float = 0.0) -> None:
    time.sleep(delay_s)
    with open(path, "a") as handle:
        handle.write(text + "\n")


def write_file(path: str, delay_s: float) -> None:
    time.sleep(delay_s)
    Path(path).write_text("done")


def set_event(event: Any) -> bool:
    event.set()
    return True
