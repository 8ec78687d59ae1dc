"""Task functions for the shared-worker tests, importable by worker processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def pid(_: object) -> int:
    return os.getpid()


def slow_pid(_: object) -> int:
    time.sleep(0.05)  # long enough that every worker of the run gets a task
    return os.getpid()


def parent_pid(_: object) -> int:
    return os.getppid()


def env_and_cwd(name: str) -> tuple[str | None, str]:
    return os.environ.get(name), os.getcwd()


def record_then_sleep(item: tuple[int, str]) -> int:
    """Item 0 records its worker's pid in ``folder`` and sleeps past any timeout."""
    index, folder = item
    if index == 0:
        Path(folder, str(os.getpid())).touch()
        time.sleep(30)
    return os.getpid()


def record_then_die(item: tuple[int, str]) -> int:
    """Item 0 records its worker's pid in ``folder`` and kills its worker."""
    index, folder = item
    if index == 0:
        Path(folder, str(os.getpid())).touch()
        os._exit(3)
    time.sleep(0.05)
    return os.getpid()


def record_then_fail(item: tuple[int, str]) -> int:
    """Item 0 records its pid and sleeps; item 1 waits for that, then raises: the run stops
    while item 0's worker is busy (a run that raises lets running tasks end: 1.5 s)."""
    index, folder = item
    if index == 0:
        Path(folder, str(os.getpid())).touch()
        time.sleep(1.5)
    if index == 1:
        deadline = time.monotonic() + 20
        while not any(Path(folder).iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ValueError("stop the run")
    return os.getpid()


def loaded(names: list[str]) -> list[str]:
    """Which of ``names`` the worker has imported (this module imports none of them)."""
    return [name for name in names if name in sys.modules]


def wait_for_file(path: str) -> int:
    """Block until ``path`` exists (the test's gate), then return the worker's pid."""
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid()


def kill_the_template(_: object) -> int:
    """Kill this worker's parent, the template that forked it, and wait until it is dead."""
    template = os.getppid()
    os.kill(template, 9)
    deadline = time.monotonic() + 10
    while os.getppid() == template and time.monotonic() < deadline:
        time.sleep(0.005)  # an orphan once the template is gone
    return template


class Odd:
    """A callable whose attribute ``fn`` raises something other than AttributeError."""

    def __getattr__(self, name: str) -> object:
        if name == "fn":
            raise RuntimeError(f"no {name} here")
        raise AttributeError(name)

    def __call__(self, x: int) -> int:
        return 2 * x


def started_then_wait_for_file(paths: tuple[str, str]) -> int:
    """Make ``paths[0]`` (the task has started), then wait for ``paths[1]``."""
    Path(paths[0]).touch()
    return wait_for_file(paths[1])


def start_once(folder: str) -> None:
    """An initializer that lets one worker start: the next ones fail to."""
    try:
        os.mkdir(os.path.join(folder, "started"))
    except FileExistsError:
        raise RuntimeError("only one worker may start") from None


def die_on_one(x: int) -> int:
    if x == 1:
        os._exit(3)
    return x
