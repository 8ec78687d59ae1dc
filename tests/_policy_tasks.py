"""Module-level tasks for the policy tests (worker processes import them by name)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path


class Flaky(Exception):
    """Raised on purpose by the flaky tasks."""


def flaky(item: tuple[str, int]) -> str:
    """Fails until it has been called ``failures + 1`` times; counts calls in a file."""
    path, failures = item
    with open(path, "a") as log:
        log.write("x")
    calls = len(Path(path).read_text())
    if calls <= failures:
        raise Flaky(f"call {calls}")
    return f"ok after {calls}"


def always_fails(x: int) -> int:
    raise Flaky(x)


def value_error(x: int) -> int:
    raise ValueError(x)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def asleep_for(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def crash_on_three(x: int) -> int:
    if x == 3:
        os._exit(3)
    return x


HANG_S = 2.0  # a task that hangs, against a timeout of 0.5 s: a fresh worker's first call,
# which imports this module, stays well inside the timeout even on a loaded machine


def property_task(item: tuple[int, bool, bool]) -> int:
    """(value, fails, hangs): hangs past the test's timeout (HANG_S), fails always, or returns
    value*2."""
    value, fails, hangs = item
    if hangs:
        time.sleep(HANG_S)
    if fails:
        raise Flaky(value)
    return value * 2


async def aproperty_task(item: tuple[int, bool, bool]) -> int:
    value, fails, hangs = item
    if hangs:
        await asyncio.sleep(HANG_S)
    if fails:
        raise Flaky(value)
    return value * 2


def set_marker() -> None:
    os.environ["PLAIT_TEST_MARKER"] = f"ready in {os.getpid()}"


def read_marker(_: object) -> str | None:
    return os.environ.get("PLAIT_TEST_MARKER")


def pid_of(_: object) -> int:
    return os.getpid()


# --- initializer: how often it ran, and where ---------------------------------------------

INIT_CALLS: dict[str, int] = {}  # worker ("pid-thread id") -> initializer calls there


def worker_key() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def count_init() -> None:
    key = worker_key()
    INIT_CALLS[key] = INIT_CALLS.get(key, 0) + 1


def init_calls_here(folder: str) -> tuple[str, int]:
    """(this worker, initializer calls it saw), after meeting a second worker (see ``meet``)."""
    meet(folder, 2)
    return worker_key(), INIT_CALLS.get(worker_key(), 0)


def meet(folder: str, count: int, timeout_s: float = 10.0) -> None:
    """Wait (at most ``timeout_s``) until ``count`` distinct workers have called this with
    ``folder``: tasks that meet certainly ran at the same time, on different workers."""
    Path(folder, worker_key()).touch()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.005)


# --- concurrency caps: the peak of tasks running at once, seen from the tasks ---------------

Peaks = tuple[int, int]  # (most running at once with this task's key, most running at all)


def _enter(folder: str, key: str, name: str) -> list[Path]:
    markers = []
    for group in (key, "all"):
        Path(folder, group).mkdir(exist_ok=True)
        markers.append(Path(folder, group, name))
        markers[-1].touch()
    return markers


def _count(markers: list[Path]) -> Peaks:
    mine, everyone = (len(os.listdir(m.parent)) for m in markers)
    return mine, everyone


def _higher(a: Peaks, b: Peaks) -> Peaks:
    return max(a[0], b[0]), max(a[1], b[1])


def running_peak(item: tuple[str, str, float]) -> Peaks:
    """Mark this task running under ``folder/key`` and ``folder/all`` (marker files, so it
    works across processes), watch how many run at once for ``seconds``, return the peaks."""
    folder, key, seconds = item
    markers = _enter(folder, key, f"{worker_key()}-{time.monotonic_ns()}")
    peak = (0, 0)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            peak = _higher(peak, _count(markers))
            time.sleep(0.002)
    finally:
        for marker in markers:
            marker.unlink()
    return peak


async def arunning_peak(item: tuple[str, str, float]) -> Peaks:
    folder, key, seconds = item
    markers = _enter(folder, key, f"task-{id(asyncio.current_task())}-{time.monotonic_ns()}")
    peak = (0, 0)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            peak = _higher(peak, _count(markers))
            await asyncio.sleep(0.002)
    finally:
        for marker in markers:
            marker.unlink()
    return peak


LINGER_S = 0.2  # a task that saw its peak stays that long, so that the others see it too


def running_peak_of(item: tuple[str, int]) -> int:
    """Run until ``want`` tasks run at once in ``folder`` (at most 5 s), then linger a moment;
    return the most it saw."""
    folder, want = item
    marker = Path(folder, f"{worker_key()}-{time.monotonic_ns()}")
    marker.touch()
    peak = 0
    deadline = time.monotonic() + 5
    try:
        while peak < want and time.monotonic() < deadline:
            peak = max(peak, len(os.listdir(folder)))
            time.sleep(0.002)
        time.sleep(LINGER_S)
    finally:
        marker.unlink()
    return peak


async def arunning_peak_of(item: tuple[str, int]) -> int:
    folder, want = item
    marker = Path(folder, f"task-{id(asyncio.current_task())}-{time.monotonic_ns()}")
    marker.touch()
    peak = 0
    deadline = time.monotonic() + 5
    try:
        while peak < want and time.monotonic() < deadline:
            peak = max(peak, len(os.listdir(folder)))
            await asyncio.sleep(0.002)
        await asyncio.sleep(LINGER_S)
    finally:
        marker.unlink()
    return peak


def raise_serialization_error(x: int) -> int:
    from plait import SerializationError

    raise SerializationError(f"cannot send {x}")
