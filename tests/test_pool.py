"""plait.Pool: reusable workers across calls, and a real concurrent.futures.Executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from typing import Any

import _tasks as T
import pytest
from _tasks import TaskError
from conftest import (
    assert_no_leaks_now,
    children,
    finishes_meanwhile,
    non_daemon_threads,
    pid_alive,
    pool_threads,
)

import plait


def fn_for(backend: str, plain: Any, coroutine: Any) -> Any:
    return coroutine if backend == "asyncio" else plain


def test_pool_is_an_executor(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        assert isinstance(pool, concurrent.futures.Executor)
        assert pool.backend == backend
        assert pool.workers == (1 if backend == "inline" else 2)


def test_submit_futures_work_with_wait_and_as_completed(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        futures = [pool.submit(fn_for(backend, T.square, T.asquare), i) for i in range(10)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        done, not_done = concurrent.futures.wait(futures, timeout=30)
        assert not not_done and len(done) == 10
        assert sorted(
            f.result() for f in concurrent.futures.as_completed(futures, timeout=30)
        ) == sorted(i * i for i in range(10))
        assert [f.result() for f in futures] == [i * i for i in range(10)]


def test_submit_passes_positional_and_keyword_arguments(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        assert pool.submit(T.add, 2, 3).result(timeout=30) == 5
        assert pool.submit(T.add, 2, b=3, scale=10).result(timeout=30) == 50


def test_submit_returns_exceptions_with_their_type(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        future = pool.submit(fn_for(backend, T.fail_on_five, T.afail_on_five), 5)
        error = future.exception(timeout=30)
        assert type(error) is TaskError and error.args == (5,)
        with pytest.raises(TaskError):
            future.result()
        first_exception = concurrent.futures.wait(
            [future, pool.submit(T.square, 2)],
            timeout=30,
            return_when=concurrent.futures.FIRST_EXCEPTION,
        )
        assert future in first_exception.done


def test_submit_coroutine_function_gives_the_value(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        result = pool.submit(T.asquare, 9).result(timeout=30)
        assert result == 81 and not asyncio.iscoroutine(result)


def test_done_callback_runs(backend: str) -> None:
    seen: list[int] = []
    with plait.Pool(backend=backend, workers=2) as pool:
        future = pool.submit(T.square, 4)
        future.add_done_callback(lambda f: seen.append(f.result()))
        future.result(timeout=30)
    assert wait_for(lambda: seen == [16])


def wait_for(condition: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_pool_map_imap_and_options(backend: str) -> None:
    fn = fn_for(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    with plait.Pool(backend=backend, workers=2) as pool:
        assert pool.map(fn_for(backend, T.square, T.asquare), range(30)) == [
            x * x for x in range(30)
        ]
        assert list(pool.imap(fn_for(backend, T.square, T.asquare), range(30))) == [
            x * x for x in range(30)
        ]
        outcomes = pool.map(fn, range(9), errors="collect")
        assert [o.ok for o in outcomes] == [i % 3 != 0 for i in range(9)]
        assert pool.map(fn, range(9), errors="skip") == [i * 10 for i in range(9) if i % 3]
        with pytest.raises(TaskError):
            pool.map(fn, range(9))
        # still usable after an error
        assert sorted(pool.map(T.square, range(10), ordered=False)) == [x * x for x in range(10)]


def test_pool_map_zips_several_iterables_like_executor_map(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        assert list(pool.map(T.add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
        assert list(pool.map(pow, [2, 3], [5, 2])) == [32, 9]


def test_pool_amap(backend: str) -> None:
    async def main(pool: plait.Pool) -> list[int]:
        return [v async for v in pool.amap(fn_for(backend, T.square, T.asquare), range(20))]

    with plait.Pool(backend=backend, workers=2) as pool:
        assert asyncio.run(main(pool)) == [x * x for x in range(20)]
        assert asyncio.run(main(pool)) == [x * x for x in range(20)]


def test_pool_imap_closed_early_leaves_the_pool_usable(backend: str) -> None:
    with plait.Pool(backend=backend, workers=2) as pool:
        stream = pool.imap(fn_for(backend, T.square, T.asquare), itertools.count(), chunksize=1)
        assert [next(stream) for _ in range(3)] == [0, 1, 4]
        stream.close()  # type: ignore[attr-defined]
        assert pool.map(T.square, range(5)) == [0, 1, 4, 9, 16]


def test_process_pool_reuses_its_workers() -> None:
    before = children()
    with plait.Pool(backend="process", workers=2) as pool:
        first = set(pool.map(T.getpid, range(20), chunksize=1))
        workers = children() - before
        second = set(pool.map(T.getpid, range(20), chunksize=1))
        third = {pool.submit(T.getpid).result(timeout=10) for _ in range(5)}
        fourth = set(pool.imap(T.getpid, range(10), chunksize=1))
        assert len(workers) == 2, workers
        assert first | second | third | fourth <= workers
        assert children() - before == workers, "new worker processes were started between calls"
    assert not any(pid_alive(pid) for pid in workers)


def test_thread_pool_reuses_its_threads() -> None:
    before = pool_threads()
    with plait.Pool(backend="thread", workers=3) as pool:
        pool.map(T.sleep_then_square, range(12), chunksize=1)
        threads = pool_threads() - before
        pool.map(T.sleep_then_square, range(12), chunksize=1)
        [pool.submit(T.square, i).result(timeout=10) for i in range(5)]
        assert 1 <= len(threads) <= 3
        assert pool_threads() - before == threads, "new threads were started between calls"
    assert not (pool_threads() - before)


def test_shutdown_releases_workers_and_refuses_new_work(backend: str) -> None:
    before = pool_threads() | non_daemon_threads(), children()
    pool = plait.Pool(backend=backend, workers=2)
    assert pool.map(T.square, range(10)) == [x * x for x in range(10)]
    assert pool.submit(T.square, 3).result(timeout=30) == 9
    pool.shutdown()
    assert_no_leaks_now(*before)
    with pytest.raises(RuntimeError):
        pool.submit(T.square, 3)
    with pytest.raises(RuntimeError):
        pool.map(T.square, range(3))
    with pytest.raises(RuntimeError):
        pool.imap(T.square, range(3))
    pool.shutdown()  # a second shutdown is harmless


def test_with_block_shuts_down(backend: str) -> None:
    before = pool_threads() | non_daemon_threads(), children()
    with plait.Pool(backend=backend, workers=2) as pool:
        futures = [
            pool.submit(fn_for(backend, T.sleep_then_square, T.asleep_then_square), i)
            for i in range(6)
        ]
    # leaving normally waits for submitted work
    assert [f.result(timeout=0) for f in futures] == [i * i for i in range(6)]
    assert_no_leaks_now(*before)
    with pytest.raises(RuntimeError):
        pool.submit(T.square, 1)


def test_with_block_left_by_an_exception_cancels_pending_work() -> None:
    before = pool_threads() | non_daemon_threads(), children()
    with pytest.raises(TaskError), plait.Pool(backend="thread", workers=1) as pool:
        futures = [pool.submit(T.sleep_then_square, i, 0.2) for i in range(5)]
        time.sleep(0.05)
        raise TaskError("leave")
    concurrent.futures.wait(futures, timeout=5)
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures), "queued work should be cancelled"
    assert_no_leaks_now(*before)


def test_shutdown_cancel_futures_cancels_queued_work() -> None:
    pool = plait.Pool(backend="thread", workers=1)
    futures = [pool.submit(T.sleep_then_square, i, 0.2) for i in range(5)]
    time.sleep(0.05)
    pool.shutdown(wait=True, cancel_futures=True)
    concurrent.futures.wait(futures, timeout=5)
    assert all(f.done() for f in futures)
    assert sum(f.cancelled() for f in futures) >= 3


def test_many_submits_on_a_thread_pool() -> None:
    with plait.Pool(backend="thread", workers=8) as pool:
        futures = {pool.submit(T.square, i): i for i in range(300)}
        for future in concurrent.futures.as_completed(futures, timeout=30):
            assert future.result() == futures[future] ** 2


def test_pool_is_usable_from_asyncio_via_wrap_future(backend: str) -> None:
    async def main(pool: plait.Pool) -> list[int]:
        return list(
            await asyncio.gather(*(asyncio.wrap_future(pool.submit(T.square, i)) for i in range(5)))
        )

    with plait.Pool(backend=backend, workers=2) as pool:
        assert asyncio.run(main(pool)) == [0, 1, 4, 9, 16]


# --- Future semantics of submit, as the stdlib's executors --------------------------------


@pytest.fixture
def gate(tmp_path: Any) -> Any:
    import _dropin_tasks as D

    opened = D.Gate(tmp_path)
    yield opened
    opened.release()


def _blocker(backend: str) -> Any:
    import _dropin_tasks as D

    return D.ablock if backend == "asyncio" else D.block


@pytest.mark.timeout(60)
def test_submit_future_goes_running_and_then_cannot_be_cancelled(backend: str, gate: Any) -> None:
    with plait.Pool(backend=backend, workers=1) as pool:
        started, release = gate.task()
        running = pool.submit(_blocker(backend), started, release, "value")
        queued = pool.submit(T.square, 3)
        gate.wait_started(started)
        assert running.running() and running.cancel() is False
        assert not queued.running() and queued.cancel() is True
        gate.release()
        assert running.result(timeout=30) == "value"
        assert queued.cancelled()


@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_cancels_only_what_has_not_started(backend: str, gate: Any) -> None:
    pool = plait.Pool(backend=backend, workers=1)
    started, release = gate.task()
    running = pool.submit(_blocker(backend), started, release, "finished")
    gate.wait_started(started)
    pending = [pool.submit(T.square, i) for i in range(4)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    gate.release()
    assert running.result(timeout=30) == "finished"  # it ran to its end, not killed
    pool.shutdown(wait=True)
    assert not concurrent.futures.wait(pending, timeout=5).not_done  # waiters were woken


@pytest.mark.timeout(60)
def test_a_slow_done_callback_delays_no_other_work(backend: str) -> None:
    """Callbacks run on the pool's own thread, never on the loop plait.map shares."""
    release = threading.Event()
    seen: list[str] = []

    def slow_callback(_: concurrent.futures.Future[Any]) -> None:
        seen.append(threading.current_thread().name)
        release.wait(30)

    with plait.Pool(backend=backend, workers=2) as pool:
        pool.submit(fn_for(backend, T.square, T.asquare), 2).add_done_callback(slow_callback)
        assert wait_for(lambda: bool(seen), 30)
        assert finishes_meanwhile(lambda: plait.map(T.square, range(10), backend="thread"))
        release.set()
    assert seen[0] != "plait-loop"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["inline", "thread", "asyncio"])  # process: test_process_faults
def test_a_submitted_system_exit_is_that_tasks_error(backend: str) -> None:
    import _dropin_tasks as D

    with plait.Pool(backend=backend, workers=1) as pool:
        error = pool.submit(D.exit_with, 3).exception(timeout=30)
        assert type(error) is SystemExit
        assert pool.submit(T.square, 4).result(timeout=30) == 16  # the pool lives on


def test_results_of_dropped_futures_are_not_kept(backend: str) -> None:
    import gc
    import weakref

    import _dropin_tasks as D

    with plait.Pool(backend=backend, workers=2) as pool:
        futures = [pool.submit(D.blob) for _ in range(10)]
        refs = [weakref.ref(f.result(timeout=30)) for f in futures]
        del futures
        gc.collect()
        assert wait_for(lambda: all(r() is None for r in refs), 5), "a result is still held"

