"""No run can slow or block another: nothing that may block runs on a loop that other work
shares (docs/design.md, "What runs where").

Each test makes one run block on an Event that only the other work can set: had the two shared
a loop, the test would hang (and fail by its timeout) instead of passing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import subprocess_env

import plait

WAIT_S = 20  # how long an Event may take to be set before the test calls it a hang


def _in_thread(target: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(target())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.timeout(60)
@pytest.mark.parametrize("inner", ["thread", "process", "asyncio"])
def test_imap_over_imap_does_not_deadlock(inner: str) -> None:
    fn = abs if inner != "asyncio" else _anegate
    inner_stream = plait.imap(fn, range(-30, 0), backend=inner, workers=2)
    outer = plait.imap(str, inner_stream, backend="thread", workers=2)
    expected = [str(abs(x)) for x in range(-30, 0)]
    assert list(outer) == expected


async def _anegate(x: int) -> int:
    return -x


@pytest.mark.timeout(60)
def test_an_input_that_blocks_does_not_slow_an_unrelated_map() -> None:
    release = threading.Event()

    def slow_input() -> Iterator[int]:
        yield 1
        release.wait(WAIT_S)
        yield 2

    blocked, box = _in_thread(lambda: list(plait.imap(abs, slow_input(), backend="thread")))
    # while that run waits for its input, other runs go through, on every backend
    for backend in ("thread", "asyncio", "process", "inline"):
        fn = _anegate if backend == "asyncio" else abs
        assert [abs(v) for v in plait.map(fn, range(10), backend=backend)] == list(range(10))
    assert not release.is_set() and blocked.is_alive()
    release.set()
    blocked.join(WAIT_S)
    assert box == [[1, 2]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["thread", "process", "asyncio"])
def test_results_stream_while_the_input_waits(backend: str) -> None:
    """The first result reaches the caller before the input yields its second item."""
    release = threading.Event()

    def tail() -> Iterator[int]:
        yield -5
        release.wait(WAIT_S)  # like a log file that has no new line yet
        yield -6

    fn = _anegate if backend == "asyncio" else abs
    stream = plait.imap(fn, tail(), backend=backend, workers=2)
    consumer, box = _in_thread(lambda: next(stream))
    consumer.join(WAIT_S)
    got_first_before_release = not release.is_set() and box == [5]
    release.set()
    assert got_first_before_release, box
    assert list(stream) == [6]


def _fail_fast_or_wait(item: tuple[int, threading.Event, threading.Event]) -> int:
    """Item 1 starts and waits for ``release``; item 0 fails once item 1 is running."""
    index, running, release = item
    if index == 0:
        running.wait(WAIT_S)
        raise ValueError("first fails")
    running.set()
    release.wait(WAIT_S)
    return index


@pytest.mark.timeout(60)
def test_a_failed_map_waiting_for_its_running_task_does_not_delay_another_map() -> None:
    running, release = threading.Event(), threading.Event()
    items = [(0, running, release), (1, running, release)]
    failing, box = _in_thread(
        lambda: plait.map(_fail_fast_or_wait, items, backend="thread", workers=2, chunksize=1)
    )
    assert running.wait(WAIT_S)
    time.sleep(0.05)  # let item 0 fail and the run start closing (joins its running thread)
    assert plait.map(abs, range(-10, 0), backend="thread") == list(range(10, 0, -1))
    assert failing.is_alive()  # still waiting for its task: the other map did not wait for it
    release.set()
    failing.join(WAIT_S)
    assert len(box) == 1 and isinstance(box[0], ValueError)


def _wait_for(events: tuple[threading.Event, threading.Event]) -> str:
    started, event = events
    started.set()
    event.wait(WAIT_S)
    return "done"


@pytest.mark.timeout(60)
def test_leaving_amap_early_keeps_the_callers_loop_running() -> None:
    """Closing the thread pool waits for the running task; the caller's loop must go on
    meanwhile: only a coroutine on that loop releases the task."""

    async def main() -> tuple[list[str], bool]:
        release = threading.Event()
        ticks = 0
        closed = released_while_closing = False

        async def ticker() -> None:
            nonlocal ticks, released_while_closing
            while not release.is_set():
                await asyncio.sleep(0.01)
                ticks += 1
                if ticks == 5:
                    released_while_closing = not closed
                    release.set()  # only possible if the loop runs while amap closes

        seen: list[str] = []
        items = [(threading.Event(), threading.Event()), (threading.Event(), release)]
        items[0][1].set()
        stream = plait.amap(_wait_for, items, backend="thread", workers=2, chunksize=1)
        async for value in stream:
            seen.append(value)
            break
        # the second task runs (on a loaded machine it may still be queued: closing then
        # cancels it without waiting, which this test is not about)
        assert await asyncio.to_thread(items[1][0].wait, WAIT_S)
        ticking = asyncio.ensure_future(ticker())
        await stream.aclose()  # type: ignore[attr-defined]
        closed = True
        await ticking
        return seen, released_while_closing

    seen, released_while_closing = asyncio.run(main())
    assert seen == ["done"]
    assert released_while_closing


@pytest.mark.timeout(60)
def test_plait_works_in_a_child_made_by_os_fork() -> None:
    script = textwrap.dedent(
        """
        import os, sys, time, plait

        def square(x):
            return x * x

        for _ in range(3):  # loops shelved for reuse, whose threads the child will not have
            assert plait.map(square, range(5), backend="thread") == [0, 1, 4, 9, 16]
        time.sleep(0.2)
        stream = plait.imap(square, iter(range(100)), backend="thread")
        next(stream)  # a run in flight, its loop leased, when the program forks
        pid = os.fork()
        if pid == 0:
            ok = plait.map(square, range(5), backend="thread") == [0, 1, 4, 9, 16]
            ok = ok and plait.map(square, range(5), backend="asyncio") == [0, 1, 4, 9, 16]
            ok = ok and plait.map(square, range(5), backend="process") == [0, 1, 4, 9, 16]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        stream.close()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True, text=True, timeout=50, env=subprocess_env(), cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0"], result.stderr


def _block_the_loop(event: threading.Event) -> str:
    event.wait(WAIT_S)  # a plain function on the asyncio backend runs on the run's loop
    return "released"


@pytest.mark.timeout(60)
def test_a_task_that_blocks_its_loop_does_not_block_other_runs() -> None:
    release = threading.Event()
    blocked, box = _in_thread(lambda: plait.map(_block_the_loop, [release], backend="asyncio"))
    time.sleep(0.05)
    for backend in ("thread", "asyncio"):
        fn = _anegate if backend == "asyncio" else abs
        assert [abs(v) for v in plait.map(fn, range(10), backend=backend)] == list(range(10))
    assert blocked.is_alive()
    release.set()
    blocked.join(WAIT_S)
    assert box == [["released"]]
