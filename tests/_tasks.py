"""Task functions for the tests, at module level so worker processes can import them.

``tests/`` is put on ``sys.path`` by ``conftest.py``; process workers receive the parent's
``sys.path``, so they import this module by name (functions travel by reference).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any


class TaskError(Exception):
    """The error our tasks raise on purpose (picklable: one positional argument)."""


def square(x: int) -> int:
    return x * x


async def asquare(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


def identity(x: Any) -> Any:
    return x


def typename(x: Any) -> str:
    return type(x).__name__


def fail_on_five(x: int) -> int:
    """Raises TaskError for 5, squares the rest."""
    if x == 5:
        raise TaskError(x)
    return x * x


async def afail_on_five(x: int) -> int:
    await asyncio.sleep(0)
    if x == 5:
        raise TaskError(x)
    return x * x


def fail_on_multiple_of_three(x: int) -> int:
    if x % 3 == 0:
        raise TaskError(x)
    return x * 10


async def afail_on_multiple_of_three(x: int) -> int:
    await asyncio.sleep(0)
    if x % 3 == 0:
        raise TaskError(x)
    return x * 10


def maybe_fail(item: tuple[int, bool]) -> int:
    """item = (value, fail): raise TaskError(value) when fail, else return 2 * value."""
    value, fail = item
    if fail:
        raise TaskError(value)
    return 2 * value


async def amaybe_fail(item: tuple[int, bool]) -> int:
    await asyncio.sleep(0)
    return maybe_fail(item)


def sleep_then_square(x: int, seconds: float = 0.005) -> int:
    time.sleep(seconds)
    return x * x


async def asleep_then_square(x: int, seconds: float = 0.005) -> int:
    await asyncio.sleep(seconds)
    return x * x


def reverse_sleep(x: int) -> int:
    """Later items finish first (items 0..19): completion order differs from input order."""
    time.sleep(max(0, 20 - x) * 0.002)
    return x * x


async def areverse_sleep(x: int) -> int:
    await asyncio.sleep(max(0, 20 - x) * 0.002)
    return x * x


def first_is_slow(x: int) -> int:
    time.sleep(0.4 if x == 0 else 0.01)
    return x


async def afirst_is_slow(x: int) -> int:
    await asyncio.sleep(0.4 if x == 0 else 0.01)
    return x


def worker_identity(x: int) -> tuple[int, int, int]:
    """(item, pid, thread id) after a sleep long enough that two chunks overlap in time, even
    when one worker process starts well before the other."""
    time.sleep(0.05)
    return x, os.getpid(), threading.get_ident()


async def aworker_identity(x: int) -> tuple[int, int, int]:
    """(item, pid, id of the asyncio task that awaits this call)."""
    await asyncio.sleep(0.02)
    return x, os.getpid(), id(asyncio.current_task())


def getpid(_: Any = None) -> int:
    time.sleep(0.01)
    return os.getpid()


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


# --- process faults -----------------------------------------------------------------------


def exit_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)
    time.sleep(0.01)
    return x * x


def sigkill_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
    return x * x


def lock_on_two(x: int) -> Any:
    """Returns an unpicklable result for 2."""
    if x == 2:
        return threading.Lock()
    return x * x


class UnpicklableError(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable_on_two(x: int) -> int:
    if x == 2:
        raise UnpicklableError(f"bad {x}")
    return x * x


class TwoArgumentError(Exception):
    """Pickles fine but cannot be unpickled: its __init__ needs two arguments, args holds one."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def raise_unrebuildable_on_two(x: int) -> int:
    if x == 2:
        raise TwoArgumentError(x, "detail")
    return x * x


def _explode(*args: Any) -> Any:
    raise RuntimeError("this object cannot be unpickled")


class Unloadable:
    """Pickles fine in the worker, but unpickling it in the parent raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _explode, ()


def unloadable_on_two(x: int) -> Any:
    if x == 2:
        return Unloadable()
    return x * x


def record_and_sleep(item: tuple[str, float]) -> None:
    """Write a file named after this worker (pid-thread) into a folder, then sleep."""
    folder, seconds = item
    name = f"{os.getpid()}-{threading.get_ident()}"
    with open(os.path.join(folder, name), "w") as handle:
        handle.write(name)
    time.sleep(seconds)


def loaded_then_file(names: tuple[str, ...]) -> tuple[list[bool], str | None]:
    """Whether this process had already imported each of ``names`` but the last, and the
    file the last one imports from (for the template's preloading)."""
    import importlib
    import sys

    loaded = [name in sys.modules for name in names[:-1]]
    return loaded, getattr(importlib.import_module(names[-1]), "__file__", None)
