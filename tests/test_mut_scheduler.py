"""Scheduler promises that its mutation run (``./dev mutants scheduler``) found untested: errors
that escape a worker outside any task, input errors on the asyncio fast path, explicit chunk
sizes with an input read on a thread, and stopping a run whose coroutines are awaiting."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import _tasks as T
import pytest

import plait

pytestmark = pytest.mark.timeout(20)


class KeyBroke(Exception):
    """What ``limit_key`` raises for one item."""


def key_fails_on_three(item: int) -> int:
    if item == 3:
        raise KeyBroke("no key for 3")
    return item % 2


def key_exits_on_three(item: int) -> int:
    if item == 3:
        sys.exit(7)
    return item % 2


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_an_error_from_limit_key_for_one_item_reaches_the_caller_as_it_is(backend: Any) -> None:
    # One item's callback fails outside its task: that one error (not a wrapper, not another
    # worker's) ends the run.
    fn: Any = abs if backend == "thread" else T.asquare
    with pytest.raises(KeyBroke, match="no key for 3"):
        plait.map(
            fn, range(6), backend=backend, workers=2, concurrency=1, limit_key=key_fails_on_three
        )


def test_a_system_exit_from_limit_key_for_one_item_reaches_the_caller_with_its_code() -> None:
    with pytest.raises(SystemExit) as exited:
        plait.map(
            abs, range(6), backend="thread", workers=2, concurrency=1, limit_key=key_exits_on_three
        )
    assert exited.value.code == 7
    assert plait.map(abs, [-1, -2], backend="thread") == [1, 2]  # plait keeps working


def test_an_input_container_that_fails_is_reported_on_the_asyncio_fast_path() -> None:
    # A dict is read on the loop itself (it never blocks); a task that grows it makes the next
    # read fail. That error is the run's, not a silent end of the input.
    table = {i: i for i in range(4)}

    def grow(key: int) -> int:
        table[key + 100] = key
        return key

    with pytest.raises(RuntimeError, match="changed size during iteration"):
        plait.map(grow, table, backend="asyncio", workers=1)


def _numbers(n: int) -> Iterator[int]:
    yield from range(n)  # a generator: read on a thread of its own


@pytest.mark.parametrize("chunksize", [1, 3])
def test_asyncio_runs_every_item_of_a_generator_whatever_the_chunksize(chunksize: int) -> None:
    # The asyncio backend calls one item at a time; an explicit chunksize must not make it
    # pull several and run only the first.
    got = plait.map(T.asquare, _numbers(10), backend="asyncio", workers=2, chunksize=chunksize)
    assert got == [x * x for x in range(10)]


def test_stopping_an_amap_with_errors_collect_cancels_its_awaiting_coroutines() -> None:
    # The consumer is cancelled while both coroutines await: the run must stop there, not take
    # the cancellation for a task's error and start the next items.
    started: list[int] = []
    cancelled: list[int] = []

    async def wait_long(x: int) -> int:
        started.append(x)
        if x >= 2:  # only a run that went on after the cancel gets here
            return x
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async def main() -> bool:
        async def consume() -> None:
            async for _ in plait.amap(
                wait_long, itertools.count(), backend="asyncio", workers=2, errors="collect"
            ):
                pass

        task = asyncio.create_task(consume())
        while len(started) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)  # a bound, not a measurement
        return task in done and task.cancelled()

    assert asyncio.run(main())
    assert sorted(started) == [0, 1]
    assert sorted(cancelled) == [0, 1]


def test_a_ctrl_c_in_an_async_input_stops_amap_without_waiting_for_running_tasks() -> None:
    # A KeyboardInterrupt in the main thread (here raised by the async input, where a Ctrl-C
    # can land) stops the run at once: the running task, which would take a minute, is
    # cancelled rather than awaited, and the input error path does not swallow it.
    started = asyncio.Event()
    cancelled: list[int] = []

    async def wait_long(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async def items() -> AsyncIterator[int]:
        yield 0
        await started.wait()
        raise KeyboardInterrupt

    async def main() -> None:
        async with asyncio.timeout(10):  # a bound: a run that waits for the task ends here
            async for _ in plait.amap(wait_long, items(), backend="asyncio", workers=2):
                pass

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert cancelled == [0]
