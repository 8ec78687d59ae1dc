"""Backend promises that the mutation run of the stable backends (``./dev mutants
backends-core``) found untested: default worker counts, the timeout messages, abandoned timed-out
threads, and what a pool does with chunks still queued when it breaks or is shut down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import BrokenExecutor, CancelledError
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env, wait_until

import plait
from plait import _backends
from plait._backends import REGISTRY

pytestmark = pytest.mark.timeout(30)

WAIT_S = 20  # how long an event may take before the test calls it a hang


# --- defaults ---------------------------------------------------------------------------------


def test_default_workers_are_the_documented_ones() -> None:
    assert REGISTRY["process"].default_workers() == len(os.sched_getaffinity(0))  # one per core
    assert REGISTRY["thread"].default_workers() == 32
    assert REGISTRY["asyncio"].default_workers() == 100
    assert REGISTRY["inline"].default_workers() == 1
    with plait.Pool(backend="thread") as pool:
        assert pool.workers == 32


def test_usable_cores_fall_back_to_the_os_count_where_affinity_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not Linux: no sched_getaffinity. os.cpu_count() may also say None (unknown): then one.
    monkeypatch.delattr(os, "sched_getaffinity")
    assert _backends.cpu_count() == os.cpu_count()
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _backends.cpu_count() == 1


def test_advise_tries_the_inline_backend_once_with_its_one_worker() -> None:
    assert {REGISTRY["inline"].grid(cores) for cores in (1, 2, 64)} == {(1,)}


def test_plait_imports_in_a_working_directory_that_was_deleted(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (
        "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
        "import plait, plait._backends as b; print(b.START_DIR)"
    )  # (no run: Python 3.13.0's own socket module fails to import in a deleted directory)
    done = subprocess.run(
        [sys.executable, "-c", code, str(gone)], env=subprocess_env(), capture_output=True,
        text=True, timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == os.path.abspath(os.sep)


# --- timeouts ---------------------------------------------------------------------------------


def test_asyncio_timeout_message_says_the_task_was_cancelled() -> None:
    async def hang(x: int) -> int:
        await asyncio.sleep(60)
        return x

    [outcome] = plait.map(hang, [0], backend="asyncio", timeout=0.2, errors="collect")
    assert isinstance(outcome.error, plait.TaskTimeout)
    assert str(outcome.error) == (
        "the task ran longer than its timeout of 0.2 s; it was cancelled"
    )


_ABANDON = """
import threading, plait

def task(x):
    if x == 1:
        threading.Event().wait()  # never returns: the thread must not hold up the exit
    return threading.current_thread().name

first, second = plait.map(task, [0, 1], backend="thread", workers=2, timeout=1, errors="collect")
print(first.value)
print(second.error)
"""


@pytest.mark.timeout(60)
def test_a_timed_out_thread_task_is_abandoned_and_does_not_hold_up_the_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_ABANDON)], env=subprocess_env(),
        capture_output=True, text=True, timeout=20,  # the exit would wait forever for it
    )
    assert done.returncode == 0, done.stderr
    name, error = done.stdout.strip().split("\n")
    assert name.startswith("plait-")  # a task under a timeout runs on a plait thread
    assert error == (
        "the task ran longer than its timeout of 1 s; "
        "a thread cannot be killed, so it was abandoned and may still be running"
    )


# --- chunks still queued when a pool breaks or shuts down --------------------------------------
# Every wait below is bounded and every helper thread is a daemon: a pool that loses a queued
# chunk must fail the test, not hang it.


class InitBroke(Exception):
    pass


def _queued(pool: plait.Pool, count: int) -> bool:
    """Synchronisation only: ``count`` chunks wait in the pool's queue (no thread free)."""
    return bool(pool._backend._tasks.qsize() == count)  # type: ignore[attr-defined]


def _record_queued(pool: plait.Pool) -> list[list[Any]]:
    """Synchronisation only: from now on, the items of each chunk the pool queues."""
    queued: list[list[Any]] = []
    backend: Any = pool._backend
    enqueue = backend._enqueue

    def recording(task: Any, loop: Any = None) -> None:
        enqueue(task, loop)
        queued.append(list(task[3]))

    backend._enqueue = recording
    return queued


def _threads(pool: plait.Pool) -> int:
    prefix = pool._backend.thread_prefix  # type: ignore[attr-defined]
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def _in_thread(call: Any, got: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            got[name] = call()
        except BaseException as exc:  # what the caller gets is what the test checks
            got[name] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _ended(*threads: threading.Thread) -> bool:
    for thread in threads:
        thread.join(WAIT_S)
    return not any(thread.is_alive() for thread in threads)


def test_a_map_queued_when_the_pool_breaks_fails_with_that_pools_error() -> None:
    gate = threading.Event()

    def init() -> None:
        gate.wait(WAIT_S)
        raise InitBroke("no database")

    got: dict[str, Any] = {}
    pool = plait.Pool(backend="thread", workers=1, initializer=init)
    first = _in_thread(lambda: pool.map(abs, [1]), got, "first")  # opens the worker: blocks
    assert wait_until(lambda: _threads(pool) == 1 and _queued(pool, 0), WAIT_S)
    second = _in_thread(lambda: pool.map(abs, [2]), got, "second")
    assert wait_until(lambda: _queued(pool, 1), WAIT_S)
    gate.set()
    assert _ended(first, second, _in_thread(pool.shutdown, got, "shutdown"))
    for name in ("first", "second"):
        error = got[name]
        assert type(error) is BrokenExecutor, (name, error)
        assert str(error) == (
            "a worker of this pool failed to start (InitBroke: no database); "
            "the pool cannot run tasks"
        )
        assert isinstance(error.__cause__, InitBroke)


def test_submits_queued_when_the_pool_breaks_fail_with_that_pools_error() -> None:
    gate = threading.Event()

    def init() -> None:
        gate.wait(WAIT_S)
        raise InitBroke("no database")

    pool = plait.Pool(backend="thread", workers=1, initializer=init)
    futures = [pool.submit(abs, -i) for i in range(3)]  # one opens the worker, two wait
    gate.set()
    errors = [f.exception(timeout=WAIT_S) for f in futures]
    assert _ended(_in_thread(pool.shutdown, {}, "shutdown"))
    assert all(type(e) is BrokenExecutor for e in errors), errors
    assert all(isinstance(e.__cause__, InitBroke) for e in errors if e is not None)


def test_shutdown_cancel_futures_cancels_a_map_queued_behind_a_running_one() -> None:
    gate = threading.Event()

    def block(x: int) -> int:
        gate.wait(WAIT_S)
        return x

    got: dict[str, Any] = {}
    pool = plait.Pool(backend="thread", workers=1)
    first = _in_thread(lambda: pool.map(block, [1, 2], chunksize=1), got, "first")
    assert wait_until(lambda: _threads(pool) == 1 and _queued(pool, 0), WAIT_S)
    queued = _record_queued(pool)
    second = _in_thread(lambda: pool.map(abs, [-7]), got, "second")
    # the second map's own chunk (on a loaded machine the first map's next chunk may be
    # queued too, and a check of the queue's length alone took that one for it)
    assert wait_until(lambda: [-7] in queued, WAIT_S)
    closer = _in_thread(lambda: pool.shutdown(cancel_futures=True), got, "shutdown")
    assert _ended(second)  # before the running chunk ends
    assert type(got["second"]) is CancelledError  # the stdlib's, an Exception
    gate.set()
    assert _ended(first, closer)
    # the running chunk finished; the map's next chunk was refused (the pool is shut down),
    # or cancelled if it was queued already
    if type(got["first"]) is RuntimeError:
        assert str(got["first"]) == "this plait pool is shut down; create a new one"
    else:
        assert type(got["first"]) is CancelledError


def test_a_second_shutdown_that_cancels_still_lets_every_thread_end() -> None:
    # shutdown(wait=False) queues one stop signal per thread; a later shutdown that cancels
    # the queued work must leave those signals in the queue, or the threads never end.
    gate = threading.Event()

    def block(x: int) -> int:
        gate.wait(WAIT_S)
        return x

    pool = plait.Pool(backend="thread", workers=2)
    running = [pool.submit(block, i) for i in range(2)]
    queued = pool.submit(block, 2)
    assert wait_until(lambda: _queued(pool, 1), WAIT_S)
    pool.shutdown(wait=False)
    closer = _in_thread(lambda: pool.shutdown(cancel_futures=True), {}, "shutdown")
    assert wait_until(queued.cancelled, WAIT_S)
    gate.set()
    assert _ended(closer)  # it joined both threads
    assert [f.result(timeout=WAIT_S) for f in running] == [0, 1]
    assert _threads(pool) == 0


def test_a_broken_pool_refuses_new_work_with_a_fresh_copy_of_its_error() -> None:
    def init() -> None:
        raise InitBroke("no database")

    pool = plait.Pool(backend="thread", workers=1, initializer=init)
    first = pool.submit(abs, -1).exception(timeout=WAIT_S)
    with pytest.raises(BrokenExecutor) as refused:
        pool.submit(abs, -2)
    assert refused.value is not first and refused.value.args == first.args  # type: ignore[union-attr]
    assert isinstance(refused.value.__cause__, InitBroke)
    with pytest.raises(BrokenExecutor, match="failed to start"):
        pool.map(abs, [1])
    assert _ended(_in_thread(pool.shutdown, {}, "shutdown"))


def test_work_one_task_at_a_time_runs_on_one_thread() -> None:
    # Threads start only when no thread is idle: a task submitted after the last one ended
    # reuses its thread.
    with plait.Pool(backend="thread", workers=4) as pool:
        names = {pool.submit(_thread_name).result(timeout=WAIT_S) for _ in range(6)}
        assert len(names) == 1 and _threads(pool) == 1


def test_a_burst_after_idle_time_runs_every_task_at_once() -> None:
    # After a first task the pool has one idle thread; a burst of `workers` tasks that wait for
    # each other must still get one thread each.
    workers = 3
    barrier = threading.Barrier(workers, timeout=WAIT_S)
    with plait.Pool(backend="thread", workers=workers) as pool:
        pool.submit(abs, -1).result(timeout=WAIT_S)
        futures = [pool.submit(barrier.wait) for _ in range(workers)]
        assert sorted(f.result(timeout=WAIT_S) for f in futures) == list(range(workers))


def _thread_name() -> str:
    return threading.current_thread().name


# --- coroutine functions on threads -----------------------------------------------------------


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_a_thread_runs_coroutine_functions_on_one_loop_of_its_own_closed_when_it_ends() -> None:
    pool = plait.Pool(backend="thread", workers=1)
    loops = [pool.submit(_running_loop).result(timeout=WAIT_S) for _ in range(3)]
    loops += pool.map(_running_loop_of, range(3), chunksize=1)
    assert len({id(loop) for loop in loops}) == 1  # one loop per thread, reused
    assert not loops[0].is_closed()
    pool.shutdown()
    assert loops[0].is_closed()  # closed with its thread, not left to the garbage collector


def test_a_timed_task_closes_the_loop_of_its_helper_thread() -> None:
    [loop] = plait.map(_running_loop_of, [0], backend="thread", timeout=WAIT_S)
    assert wait_until(loop.is_closed, WAIT_S)


async def _running_loop_of(_: int) -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_a_task_can_shut_down_its_own_pool_and_the_other_threads_are_joined() -> None:
    gate = threading.Event()
    pool = plait.Pool(backend="thread", workers=2)
    other = pool.submit(gate.wait, WAIT_S)

    def shut_down() -> str:
        gate.set()
        pool.shutdown(wait=True)  # joins the other thread, not its own (that would raise)
        return "shut down"

    assert pool.submit(shut_down).result(timeout=WAIT_S) == "shut down"
    assert other.result(timeout=WAIT_S) is True
    assert wait_until(lambda: _threads(pool) == 0, WAIT_S)


_INTERRUPTED = """
import threading, plait
pool = plait.Pool(backend="thread", workers=1)
started = threading.Event()
pool.submit(lambda: (started.set(), threading.Event().wait()))  # never returns
started.wait(20)
raise KeyboardInterrupt  # as a Ctrl-C would: the exit must not wait for the running task
"""


@pytest.mark.timeout(60)
def test_an_exit_by_ctrl_c_does_not_wait_for_a_running_pool_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED], env=subprocess_env(), capture_output=True,
        text=True, timeout=WAIT_S,
    )
    assert "KeyboardInterrupt" in done.stderr and done.returncode != 0


def test_a_pool_outlives_a_caller_whose_loop_closed_while_its_chunk_ran() -> None:
    # amap on a Pool, left while its chunk still runs on a pool thread; the caller's loop is
    # closed when the result comes back. The thread drops that result and serves on.
    gate = threading.Event()
    started = threading.Event()

    def block(x: int) -> int:
        started.set()
        gate.wait(WAIT_S)
        return x

    async def leave_early(pool: plait.Pool) -> None:
        stream = pool.amap(block, [1])
        waiting = asyncio.ensure_future(anext(stream))
        while not started.is_set():
            await asyncio.sleep(0.01)
        waiting.cancel()

    pool = plait.Pool(backend="thread", workers=1)
    try:
        asyncio.run(leave_early(pool))
        gate.set()  # the result now goes back to a closed loop
        assert pool.submit(abs, -3).result(timeout=WAIT_S) == 3
    finally:
        gate.set()
        assert _ended(_in_thread(pool.shutdown, {}, "shutdown"))


def test_idle_threads_are_counted_one_by_one() -> None:
    # Two threads that ended their tasks are both idle: a second burst of two starts none.
    workers = 4
    with plait.Pool(backend="thread", workers=workers) as pool:
        for _ in range(2):
            barrier = threading.Barrier(2, timeout=WAIT_S)
            futures = [pool.submit(barrier.wait) for _ in range(2)]
            assert sorted(f.result(timeout=WAIT_S) for f in futures) == [0, 1]
        assert _threads(pool) == 2


def test_cancelling_an_amap_does_not_wait_for_a_thread_that_cannot_be_stopped() -> None:
    # A running thread cannot be killed: a cancelled amap waits for it only a short grace
    # period, then gives the caller control back while it runs on.
    gate = threading.Event()
    started = threading.Event()

    def block(x: int) -> int:
        started.set()
        gate.wait(WAIT_S)
        return x

    async def main() -> bool:
        async def consume() -> None:
            async for _ in plait.amap(block, [1], backend="thread", workers=1):
                pass

        task = asyncio.create_task(consume())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=WAIT_S / 2)  # a bound, not a measurement
        return task in done

    try:
        assert asyncio.run(main())
    finally:
        gate.set()


def test_an_unreferenced_pool_still_runs_the_work_queued_to_it() -> None:
    import gc

    gate = threading.Event()
    pool = plait.Pool(backend="thread", workers=1)
    running = pool.submit(gate.wait, WAIT_S)
    queued = pool.submit(abs, -2)
    del pool
    gc.collect()  # the pool lets its workers go, as the stdlib's executors do: work goes on
    gate.set()
    assert running.result(timeout=WAIT_S) is True
    assert queued.result(timeout=WAIT_S) == 2


def test_shutdown_with_wait_waits_for_a_running_task_however_long() -> None:
    gate = threading.Event()
    pool = plait.Pool(backend="thread", workers=1)
    running = pool.submit(gate.wait, WAIT_S)
    closer = _in_thread(pool.shutdown, {}, "shutdown")
    closer.join(1.5)  # a lower bound: load can only make the wait longer
    assert closer.is_alive() and not running.done()
    gate.set()
    assert _ended(closer) and running.result(timeout=0) is True


def _interrupt_on_two(x: int) -> int:
    if x == 2:
        raise KeyboardInterrupt  # as a Ctrl-C landing in the task would
    return x


def test_a_ctrl_c_in_an_inline_task_stops_the_run_even_when_errors_are_collected() -> None:
    # The inline backend runs tasks in the main thread: a KeyboardInterrupt there is the
    # user's Ctrl-C, never one task's outcome.
    with pytest.raises(KeyboardInterrupt):
        plait.map(_interrupt_on_two, range(5), backend="inline", errors="collect")


async def _add(offset: int, x: int) -> int:
    await asyncio.sleep(0)
    return offset + x


class _AsyncCall:
    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return -x


def test_a_partial_or_an_async_call_object_runs_to_completion_on_threads() -> None:
    import functools

    assert plait.map(functools.partial(_add, 10), range(3), backend="thread") == [10, 11, 12]
    assert plait.map(_AsyncCall(), range(3), backend="thread") == [0, -1, -2]


class _RaisingAttributes:
    """A callable whose attribute lookups (other than calling it) raise."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")

    def __call__(self, x: int) -> int:
        return x + 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["inline", "thread", "process", "auto"])
def test_a_mock_or_an_odd_callable_is_called_as_it_is(backend: str) -> None:
    # A Mock has a `func` at every level: unwrapping it as a partial never ended (a hang)
    from unittest.mock import AsyncMock, Mock

    assert plait.map(Mock(return_value=3), range(2), backend=backend) == [3, 3]
    assert plait.map(_RaisingAttributes(), range(2), backend=backend) == [1, 2]
    if backend != "process":  # (an AsyncMock does not pickle)
        assert plait.map(AsyncMock(return_value=4), range(2), backend=backend) == [4, 4]
