"""plait.ThreadPoolExecutor / plait.ProcessPoolExecutor behave as the stdlib's executors.

Real threads and processes; a task that must block waits on a file the test creates, so that
nothing depends on timing. CPython's own suite runs against them in ``./dev cf-suite``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import logging
import os
import pickle
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from concurrent.futures.thread import BrokenThreadPool
from pathlib import Path
from typing import Any

import _dropin_tasks as D
import pytest
from conftest import children, finishes_meanwhile, pid_alive, subprocess_env, wait_until

import plait

KINDS = ("thread", "process")
STDLIB = {
    "thread": concurrent.futures.ThreadPoolExecutor,
    "process": concurrent.futures.ProcessPoolExecutor,
}
PLAIT = {"thread": plait.ThreadPoolExecutor, "process": plait.ProcessPoolExecutor}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[D.Gate]:
    opened = D.Gate(tmp_path)
    yield opened
    opened.release()  # never leave a task blocked, whatever the test did


# --- names and signatures -------------------------------------------------------------------


def test_signatures_are_the_stdlibs(kind: str) -> None:
    ours = inspect.signature(PLAIT[kind]).parameters
    theirs = inspect.signature(STDLIB[kind]).parameters
    for name, param in theirs.items():
        assert name in ours, name
        assert (ours[name].kind, ours[name].default) == (param.kind, param.default), name
    extra = set(ours) - set(theirs)
    assert extra == {"timeout"} and ours["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    assert issubclass(PLAIT[kind], concurrent.futures.Executor)


def test_max_workers_default_and_checks(kind: str) -> None:
    cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    with PLAIT[kind]() as executor:
        expected = min(32, cores + 4) if kind == "thread" else cores
        assert executor._max_workers == expected  # Dask reads it
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            PLAIT[kind](max_workers=bad)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        PLAIT[kind](1, initializer=42)  # type: ignore[call-overload]


def test_mp_context_is_accepted_and_max_tasks_checked_as_in_the_stdlib() -> None:
    import multiprocessing

    with plait.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        assert ex.submit(D.square, 3).result(timeout=30) == 9
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        plait.ProcessPoolExecutor(1, max_tasks_per_child=0)
    with pytest.raises(ValueError, match="incompatible with the 'fork'"):
        plait.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), max_tasks_per_child=3
        )


def test_thread_names_follow_the_stdlib() -> None:
    executor = plait.ThreadPoolExecutor(2, thread_name_prefix="Special")
    executor.submit(D.square, 1).result(timeout=30)
    names = {t.name for t in executor._threads}
    executor.shutdown()
    assert names == {"Special_0"}
    with plait.ThreadPoolExecutor(1) as default:
        default.submit(D.square, 1).result(timeout=30)
        assert all(
            t.name.startswith("plait-ThreadPoolExecutor-") and t.name.endswith("_0")
            for t in default._threads
        )


# --- map ------------------------------------------------------------------------------------


def test_map_is_lazy_and_submits_eagerly(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "lines"
    with PLAIT[kind](2) as executor:
        results = executor.map(D.append_line, [str(out)] * 6, "abcdef")
        assert isinstance(results, Iterator) and not isinstance(results, list)
    # never iterated: the work ran anyway, before shutdown returned
    assert sorted(out.read_text().split()) == list("abcdef")


def test_map_errors_surface_at_iteration(kind: str) -> None:
    with PLAIT[kind](2) as executor:
        results = executor.map(D.divide, [1, 1, 1, 1], [2, 4, 0, 5])
        assert next(results) == 0.5
        assert next(results) == 0.25
        with pytest.raises(ZeroDivisionError):
            next(results)


def test_map_chunksize_keeps_order() -> None:
    with plait.ProcessPoolExecutor(2) as executor:
        for size in (1, 3, 50):
            assert list(executor.map(pow, range(20), range(20), chunksize=size)) == [
                pow(i, i) for i in range(20)
            ]
        with pytest.raises(ValueError, match="chunksize"):
            executor.map(pow, [1], [1], chunksize=0)


@pytest.mark.timeout(60)
def test_map_timeout_raises_during_iteration_and_cancels_the_rest(kind: str, gate: D.Gate) -> None:
    with PLAIT[kind](1) as executor:
        started, release = gate.task()
        blocker = executor.submit(D.block, started, release)
        gate.wait_started(started)
        results = executor.map(D.square, [1, 2, 3], timeout=0.05)  # all queued behind blocker
        with pytest.raises(TimeoutError):
            next(results)
        results.close()
        gate.release()
        assert blocker.result(timeout=30) is None
    # the stdlib's map cancels what it had not returned: nothing else ran


# --- future states --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_running_future_is_running_and_cannot_be_cancelled(kind: str, gate: D.Gate) -> None:
    with PLAIT[kind](1) as executor:
        started, release = gate.task()
        future = executor.submit(D.block, started, release, "value")
        queued = executor.submit(D.square, 4)
        gate.wait_started(started)
        assert future.running() and not future.done()
        assert future.cancel() is False
        assert not queued.running()
        assert queued.cancel() is True  # still pending: it can be
        gate.release()
        assert future.result(timeout=30) == "value"
        assert queued.cancelled()


@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_cancels_only_pending_ones(kind: str, gate: D.Gate) -> None:
    executor = PLAIT[kind](1)
    started, release = gate.task()
    running = executor.submit(D.block, started, release, "finished")
    gate.wait_started(started)
    pending = [executor.submit(D.square, i) for i in range(5)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    assert not running.cancelled()
    gate.release()
    assert running.result(timeout=30) == "finished"
    executor.shutdown(wait=True)
    _, not_done = concurrent.futures.wait([running, *pending], timeout=30)
    assert not not_done  # cancelled futures count as done for wait(): waiters are woken


def test_submit_after_shutdown_is_refused(kind: str) -> None:
    executor = PLAIT[kind](1)
    executor.shutdown()
    executor.shutdown()  # twice is fine
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(D.square, 2)


def test_submit_argument_forms(kind: str) -> None:
    with PLAIT[kind](2) as executor:
        assert executor.submit(pow, 2, 8).result(timeout=30) == 256
        assert executor.submit(D.divide, 1, b=4).result(timeout=30) == 0.25
        with pytest.raises(TypeError):
            executor.submit(fn=D.square, x=1)  # type: ignore[call-arg]


# --- callbacks never run on a shared loop ---------------------------------------------------


@pytest.mark.timeout(60)
def test_a_slow_done_callback_does_not_delay_other_work(kind: str) -> None:
    release = threading.Event()
    seen: list[str] = []

    def slow_callback(_: concurrent.futures.Future[Any]) -> None:
        seen.append(threading.current_thread().name)
        release.wait(30)

    with PLAIT[kind](2) as executor:
        executor.submit(D.square, 2).add_done_callback(slow_callback)
        assert wait_until(lambda: seen, 30)
        # the callback blocks its pool thread only: plait.map and the executor carry on
        assert finishes_meanwhile(lambda: plait.map(D.square, range(10), backend="thread"))
        # (well before the callback would give its thread back by itself)
        assert executor.submit(D.square, 3).result(timeout=10) == 9
        release.set()
    assert seen[0] != "plait-loop"


# --- references, exit and collection --------------------------------------------------------


@pytest.mark.timeout(120)
def test_dropped_results_are_not_kept(kind: str) -> None:
    refs: list[weakref.ref[D.Blob]] = []
    with PLAIT[kind](4) as executor:
        futures = [executor.submit(D.blob) for _ in range(40)]
        for future in futures:
            refs.append(weakref.ref(future.result(timeout=60)))
        del futures, future
        gc.collect()
        # the pool is still open, its threads idle: none may hold the last result it made
        assert wait_until(lambda: all(r() is None for r in refs), 5), "results still referenced"


def _peak_mb(executor: concurrent.futures.Executor, count: int) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        for _ in range(count):
            executor.submit(D.blob)
        executor.shutdown(wait=True)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(300)
def test_fire_and_forget_submits_do_not_pile_up_results() -> None:
    """20,000 dropped 10 kB results: a few MB at peak, as the stdlib (it held 150-300 MB)."""
    ours = _peak_mb(plait.ThreadPoolExecutor(4), 20_000)
    theirs = _peak_mb(concurrent.futures.ThreadPoolExecutor(4), 20_000)
    print(f"peak traced memory: plait {ours:.1f} MB, stdlib {theirs:.1f} MB")
    assert ours < max(3 * theirs, 20.0), (ours, theirs)


EXIT_SCRIPT = """
import sys, plait, _dropin_tasks as D
owner, folder = sys.argv[1], sys.argv[2]
if owner == "thread":
    pool = plait.ThreadPoolExecutor(2)
elif owner == "process":
    pool = plait.ProcessPoolExecutor(2)
else:
    pool = plait.Pool(backend=owner.removeprefix("pool-"), workers=2)
for i in range(4):
    pool.submit(D.write_file, f"{folder}/{i}", 0.2)
# no shutdown: the script ends here, and the work must still be done
"""
OWNERS = ["thread", "process", "pool-thread", "pool-process", "pool-asyncio"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("owner", OWNERS)
def test_work_left_in_an_open_executor_runs_at_exit(owner: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, owner, str(tmp_path)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2", "3"]


def _executor_threads(prefix: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(prefix)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("owner", OWNERS)
def test_an_unreferenced_executor_releases_its_threads_and_processes(owner: str) -> None:
    before_threads, before_children = set(threading.enumerate()), children()
    executor: Any
    if owner in KINDS:
        executor = PLAIT[owner](2)
    else:
        executor = plait.Pool(backend=owner.removeprefix("pool-"), workers=2)
    futures = [executor.submit(D.square, i) for i in range(4)]
    assert [f.result(timeout=30) for f in futures] == [0, 1, 4, 9]
    started = set(threading.enumerate()) - before_threads
    assert started
    probe = weakref.ref(executor)
    del executor, futures
    gc.collect()
    assert probe() is None, "something still references the executor"
    assert wait_until(lambda: not (started & set(threading.enumerate())), 10), started
    assert wait_until(lambda: children() == before_children, 10)


def test_an_unreferenced_executor_still_finishes_queued_work(tmp_path: Path) -> None:
    executor = plait.ThreadPoolExecutor(1)
    for i in range(5):
        executor.submit(D.append_line, str(tmp_path / "out"), str(i), 0.01)
    threads = set(executor._threads)
    del executor
    gc.collect()
    for thread in threads:
        thread.join(30)
    assert (tmp_path / "out").read_text().split() == ["0", "1", "2", "3", "4"]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_crashed_worker_fails_only_its_task_and_is_a_broken_process_pool() -> None:
    with plait.ProcessPoolExecutor(2) as executor:
        first = executor.submit(D.pid).result(timeout=30)
        crashed = executor.submit(D.die, 3)
        error = crashed.exception(timeout=30)
        assert isinstance(error, plait.WorkerCrashed) and isinstance(error, BrokenProcessPool)
        assert error.exitcode == 3
        # the pool goes on: new work runs, on a live worker
        assert executor.submit(D.square, 7).result(timeout=30) == 49
        assert executor.submit(D.pid).result(timeout=30) != 0 != first


@pytest.mark.timeout(60)
def test_system_exit_in_a_task_is_that_tasks_error(kind: str) -> None:
    with PLAIT[kind](1) as executor:
        error = executor.submit(D.exit_with, 4).exception(timeout=30)
        assert type(error) is SystemExit and error.code == 4
        assert executor.submit(D.square, 5).result(timeout=30) == 25


def test_process_errors_keep_their_type_and_the_workers_traceback() -> None:
    with plait.ProcessPoolExecutor(1) as executor:
        error = executor.submit(D.divide, 1, 0).exception(timeout=30)
        assert type(error) is ZeroDivisionError
        cause = error.__cause__
        assert type(cause) is concurrent.futures.process._RemoteTraceback
        assert "return a / b" in cause.tb


def test_pickling_errors_reach_the_future_with_their_own_type() -> None:
    with plait.ProcessPoolExecutor(1) as executor:
        argument = executor.submit(D.square, D.Unpicklable())  # type: ignore[arg-type]
        with pytest.raises(pickle.PicklingError, match="refused on purpose"):
            argument.result(timeout=30)
        result = executor.submit(D.return_unpicklable)
        with pytest.raises(pickle.PicklingError, match="refused on purpose"):
            result.result(timeout=30)
        assert executor.submit(lambda: 6 * 7).result(timeout=30) == 42  # cloudpickle: lambdas


@pytest.mark.timeout(60)
def test_task_timeout_extra(kind: str, gate: D.Gate) -> None:
    with pytest.raises(ValueError, match="timeout"):
        PLAIT[kind](1, timeout=0)
    with PLAIT[kind](1, timeout=0.3) as executor:
        started, release = gate.task()
        error = executor.submit(D.block, started, release).exception(timeout=30)
        assert isinstance(error, plait.TaskTimeout) and isinstance(error, TimeoutError)
        gate.release()  # an abandoned thread finishes; a process worker was killed
        assert executor.submit(D.square, 3).result(timeout=30) == 9


# --- initializer ----------------------------------------------------------------------------


def test_initializer_with_initargs(kind: str) -> None:
    with PLAIT[kind](2, initializer=D.set_init, initargs=("ready",)) as executor:
        assert [executor.submit(D.get_init).result(timeout=30) for _ in range(4)] == ["ready"] * 4


@pytest.mark.timeout(60)
def test_a_failing_thread_initializer_breaks_the_pool_as_in_the_stdlib(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor = plait.ThreadPoolExecutor(2, initializer=D.fail_init)
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        future = executor.submit(D.square, 2)
        with pytest.raises(BrokenThreadPool):
            future.result(timeout=30)
    assert "Exception in initializer:" in caplog.text
    assert wait_until(lambda: bool(executor._broken), 10)
    with pytest.raises(BrokenThreadPool):
        executor.submit(D.square, 3)
    executor.shutdown()


@pytest.mark.timeout(60)
def test_a_failing_process_initializer_fails_tasks_with_broken_process_pool() -> None:
    with plait.ProcessPoolExecutor(1, initializer=D.fail_init) as executor:
        for _ in range(2):  # each try fails the same way; the pool does not hang
            with pytest.raises(BrokenProcessPool):
                executor.submit(D.square, 2).result(timeout=30)


@pytest.mark.timeout(60)
def test_max_tasks_per_child_replaces_the_worker() -> None:
    with plait.ProcessPoolExecutor(1, max_tasks_per_child=2) as executor:
        pids = [executor.submit(D.pid).result(timeout=30) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]
    assert not any(pid_alive(p) for p in pids)


MANAGER_SCRIPT = """
import multiprocessing, plait, _dropin_tasks as D
if __name__ == "__main__":
    with multiprocessing.Manager() as manager:
        event = manager.Event()
        with plait.ProcessPoolExecutor(1) as executor:
            assert executor.submit(D.set_event, event).result(timeout=60) is True
        assert event.is_set()
    print("ok")
"""


@pytest.mark.timeout(120)
def test_manager_proxies_can_be_passed_to_process_workers() -> None:
    """multiprocessing's children share the parent's authkey; plait's workers get it too.
    (In a child script: a Manager leaves multiprocessing's helper processes behind.)"""
    done = subprocess.run(
        [sys.executable, "-c", MANAGER_SCRIPT],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.stdout.strip() == "ok", done.stderr


# --- real clients ---------------------------------------------------------------------------


def test_asyncio_run_in_executor(kind: str) -> None:
    async def main(executor: concurrent.futures.Executor) -> list[int]:
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(loop.run_in_executor(executor, D.square, i) for i in range(5)))
        )

    with PLAIT[kind](2) as executor:
        assert asyncio.run(main(executor)) == [0, 1, 4, 9, 16]


def test_wait_and_as_completed(kind: str) -> None:
    with PLAIT[kind](2) as executor:
        futures = [executor.submit(D.square, i) for i in range(6)]
        _, not_done = concurrent.futures.wait(futures, timeout=30)
        assert not not_done
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == [
            i * i for i in range(6)
        ]

