"""Nothing a task raises escapes plait: SystemExit, StopIteration, KeyboardInterrupt and
CancelledError come back as that task's outcome, and plait keeps working afterwards.

Out-of-range options are refused when the call is made, before any work starts."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from concurrent.futures import BrokenExecutor
from typing import Any

import pytest

import plait

# In-process backends: the process backend's escapes are tested with its round trips.
IN_PROCESS = ["inline", "thread", "asyncio"]


def exit_on_two(x: int) -> int:
    if x == 2:
        sys.exit(3)
    return x


async def aexit_on_two(x: int) -> int:
    if x == 2:
        sys.exit(3)
    return x


def stop_on_two(x: int) -> int:
    if x == 2:
        raise StopIteration("from the task")
    return x


def interrupt_on_two(x: int) -> int:
    if x == 2:
        raise KeyboardInterrupt
    return x


async def cancelled_on_two(x: int) -> int:
    """A coroutine that raises CancelledError of its own: it was not cancelled itself."""
    if x == 2:
        raise asyncio.CancelledError("someone else's future")
    return x


def _fn(backend: str, sync: Any, coro: Any) -> Any:
    return coro if backend == "asyncio" else sync


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", IN_PROCESS)
def test_sys_exit_in_a_task_is_its_outcome_and_plait_keeps_working(backend: str) -> None:
    fn = _fn(backend, exit_on_two, aexit_on_two)
    outcomes = plait.map(fn, range(5), backend=backend, errors="collect")
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert type(outcomes[2].error) is SystemExit
    assert outcomes[2].error.code == 3
    with pytest.raises(SystemExit):
        plait.map(fn, range(5), backend=backend)
    # the loop that ran it survived: the next calls run (a dead loop thread would hang here)
    for _ in range(3):
        assert plait.map(abs, range(-3, 0), backend="thread") == [3, 2, 1]
        assert plait.map(fn, [0, 1], backend=backend) == [0, 1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", IN_PROCESS)
def test_stop_iteration_from_a_task_is_not_the_end_of_the_results(backend: str) -> None:
    outcomes = plait.map(stop_on_two, range(4), backend=backend, errors="collect")
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert type(outcomes[2].error) is StopIteration
    with pytest.raises(StopIteration, match="from the task"):  # map is a function: it stays one
        plait.map(stop_on_two, range(4), backend=backend)
    # imap is an iterator: a StopIteration would silently end the caller's loop, so as in any
    # generator (PEP 479) it comes as a RuntimeError whose cause is the task's StopIteration
    seen: list[int] = []
    with pytest.raises(RuntimeError) as caught:
        for value in plait.imap(stop_on_two, range(4), backend=backend):
            seen.append(value)
    assert seen == [0, 1]
    assert type(caught.value.__cause__) is StopIteration


@pytest.mark.timeout(30)
def test_keyboard_interrupt_raised_by_a_task_in_a_worker_thread_is_its_outcome() -> None:
    outcomes = plait.map(interrupt_on_two, range(4), backend="thread", errors="collect")
    assert [type(o.error) for o in outcomes] == [type(None), type(None), KeyboardInterrupt,
                                                 type(None)]


@pytest.mark.timeout(30)
def test_a_coroutines_own_cancelled_error_is_its_outcome_not_a_stop() -> None:
    outcomes = plait.map(cancelled_on_two, range(5), backend="asyncio", errors="collect")
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert type(outcomes[2].error) is asyncio.CancelledError
    assert [o.value for o in outcomes if o.ok] == [0, 1, 3, 4]


_INIT_CALLS: list[str] = []


def failing_initializer() -> None:
    _INIT_CALLS.append(threading.current_thread().name)
    raise OSError("no database")


@pytest.mark.timeout(30)
def test_a_failing_thread_initializer_breaks_the_run_clearly_instead_of_hanging() -> None:
    _INIT_CALLS.clear()
    with pytest.raises(BrokenExecutor, match="OSError: no database") as caught:
        plait.map(abs, range(10), backend="thread", workers=2, initializer=failing_initializer)
    assert type(caught.value.__cause__) is OSError  # as the stdlib's BrokenThreadPool
    outcomes = plait.map(
        abs, range(6), backend="thread", workers=2, initializer=failing_initializer,
        errors="collect", chunksize=1,
    )
    assert len(outcomes) == 6  # one outcome per input, none lost
    assert all(isinstance(o.error, BrokenExecutor) for o in outcomes)
    assert _INIT_CALLS and all(name.startswith("plait-thread") for name in _INIT_CALLS)


@pytest.mark.parametrize("name", ["timeout", "deadline"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1, 0, "1"])
def test_out_of_range_seconds_are_refused_up_front(name: str, value: Any) -> None:
    pulled: list[int] = []

    def items() -> Any:
        pulled.append(1)
        yield 1

    with pytest.raises(ValueError, match=f"{name} must be a positive, finite number"):
        plait.imap(abs, items(), backend="thread", **{name: value})
    assert pulled == []  # refused when called, not at the first next()


@pytest.mark.parametrize("rate", [math.inf, math.nan, 0, "fast", "0/s"])
def test_bad_rates_are_refused_when_called(rate: Any) -> None:
    with pytest.raises(ValueError, match="rate"):
        plait.imap(abs, [1], backend="thread", rate=rate)


def test_a_clock_without_now_and_sleep_is_refused_when_called() -> None:
    with pytest.raises(TypeError, match="clock must have now"):
        plait.imap(abs, [1], backend="thread", rate=5, clock="x")


def exit_key(item: int) -> int:
    raise SystemExit(4)


@pytest.mark.timeout(30)
def test_sys_exit_from_a_policy_callback_reaches_the_caller_and_plait_keeps_working() -> None:
    with pytest.raises(SystemExit):
        plait.map(abs, range(3), backend="thread", concurrency=1, limit_key=exit_key)
    for backend in ("thread", "asyncio"):
        fn = abs if backend == "thread" else _anegate
        assert [abs(v) for v in plait.map(fn, range(-3, 0), backend=backend)] == [3, 2, 1]


async def _anegate(x: int) -> int:
    return -x


def raise_stop() -> None:
    raise StopIteration("from a submitted task")


def exit_task() -> None:
    sys.exit(5)


SUBMITTERS = {
    "Pool(inline)": lambda: plait.Pool(backend="inline"),
    "Pool(thread)": lambda: plait.Pool(backend="thread", workers=2),
    "Pool(process)": lambda: plait.Pool(backend="process", workers=1),
    "Pool(asyncio)": lambda: plait.Pool(backend="asyncio", workers=2),
    "ThreadPoolExecutor": lambda: plait.ThreadPoolExecutor(2),
    "ProcessPoolExecutor": lambda: plait.ProcessPoolExecutor(1),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", SUBMITTERS)
def test_a_submitted_tasks_stop_iteration_and_exit_keep_their_type(name: str) -> None:
    with SUBMITTERS[name]() as pool:
        stopped = pool.submit(raise_stop).exception(timeout=30)
        exited = pool.submit(exit_task).exception(timeout=30)
        assert pool.submit(abs, -4).result(timeout=30) == 4  # the pool goes on
    assert type(stopped) is StopIteration and "from a submitted task" in str(stopped)
    assert type(exited) is SystemExit and exited.code == 5


def test_a_pool_tells_clients_its_max_workers() -> None:
    with plait.Pool(backend="thread", workers=3) as pool:
        assert pool._max_workers == 3  # Dask's local scheduler reads it


@pytest.mark.timeout(30)
def test_sys_exit_in_autos_sample_is_that_tasks_outcome() -> None:
    # auto times the first calls in the calling thread: a SystemExit there ended the program
    outcomes = plait.map(exit_on_two, range(5), errors="collect")
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert type(outcomes[2].error) is SystemExit and outcomes[2].error.code == 3
    with pytest.raises(SystemExit):
        plait.map(exit_on_two, range(5))
    assert plait.map(exit_on_two, [0, 1]) == [0, 1]
