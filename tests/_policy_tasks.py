"""Module-level tasks for the policy tests (worker processes import them by name)."""

from __future__ import annotations

import asyncio
import os
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


def property_task(item: tuple[int, bool, bool]) -> int:
    """(value, fails, hangs): hangs past any test timeout, fails always, or returns value*2."""
    value, fails, hangs = item
    if hangs:
        time.sleep(0.5)
    if fails:
        raise Flaky(value)
    return value * 2


async def aproperty_task(item: tuple[int, bool, bool]) -> int:
    value, fails, hangs = item
    if hangs:
        await asyncio.sleep(0.5)
    if fails:
        raise Flaky(value)
    return value * 2


def set_marker() -> None:
    os.environ["PLAIT_TEST_MARKER"] = f"ready in {os.getpid()}"


def read_marker(_: object) -> str | None:
    return os.environ.get("PLAIT_TEST_MARKER")


def pid_of(_: object) -> int:
    return os.getpid()
