"""Task functions for the process backend's round-trip and process-group tests, importable by
worker processes (``tests/`` is on their ``sys.path``, see ``_tasks``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SLEEP_S = 30


class InitError(Exception):
    """What a failing initializer raises."""


def spawn_sleeper(folder: str) -> None:
    """Start ``sleep 30``, record "WORKERPID-CHILDPID" in ``folder``, then wait for it."""
    child = subprocess.Popen(["sleep", str(SLEEP_S)])
    Path(folder, f"{os.getpid()}-{child.pid}").touch()
    child.wait()


def spawn_sleeper_then_exit(folder: str) -> None:
    """Start ``sleep 30``, record it, and kill this worker (os._exit): a crash mid-task."""
    child = subprocess.Popen(["sleep", str(SLEEP_S)])
    Path(folder, f"{os.getpid()}-{child.pid}").touch()
    os._exit(1)


def quick_or_sleeper(item: tuple[int, str]) -> int:
    """Item 0 returns at once; the others run ``spawn_sleeper``."""
    index, folder = item
    if index > 0:
        spawn_sleeper(folder)
    return index


def raise_base(name: str) -> None:
    """Raise a BaseException that is not an Exception, or StopIteration, by name."""
    if name == "exit":
        sys.exit(3)
    if name == "interrupt":
        raise KeyboardInterrupt("from the task")
    if name == "stop":
        raise StopIteration("from the task")
    if name == "generator-exit":
        raise GeneratorExit("from the task")
    raise ValueError(name)


def getpid(_: Any = None) -> int:
    return os.getpid()


def failing_init(folder: str) -> None:
    """An initializer that records that it ran, then raises."""
    Path(folder, f"init-{os.getpid()}").touch()
    raise InitError("cannot set up")


def exiting_init(folder: str) -> None:
    Path(folder, f"init-{os.getpid()}").touch()
    sys.exit(4)


def dying_init(folder: str) -> None:
    Path(folder, f"init-{os.getpid()}").touch()
    os._exit(5)


def slow(x: int) -> int:
    time.sleep(0.05)
    return x


def plait_as_the_worker_starts(_: Any = None) -> tuple[bool, bool]:
    """Whether plait's public API and its backends' registry are loaded in this worker."""
    import sys

    backends = vars(sys.modules["plait._backends"])
    return "plait._api" in sys.modules, "REGISTRY" in backends


def uses_plait(x: int) -> tuple[list[int], bool, str]:
    """A task that runs plait itself and reads the backends' registry."""
    import plait
    from plait._backends import cpu_count, info

    return plait.map(abs, [-x, x], backend="thread"), cpu_count() > 0, info("thread").name
