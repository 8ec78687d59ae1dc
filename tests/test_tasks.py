"""Background tasks: plait.spawn handles, TaskGroup, plait.cancelled() and plait.every."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import pid_alive, subprocess_env, wait_until
from test_ctrl_c import _interrupt_once_started

import plait
from plait.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


def double(x: int) -> int:
    return 2 * x


def boom(message: str = "boom") -> None:
    raise ValueError(message)


def write_pid_and_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def spin_until_cancelled(started: threading.Event) -> str:
    started.set()
    while not plait.cancelled():
        time.sleep(0.005)
    return "noticed"


# --- the handle is a concurrent.futures.Future -----------------------------------------------


def test_handle_is_a_future_that_wait_and_as_completed_accept() -> None:
    handles = [plait.spawn(double, i, name=f"double-{i}") for i in range(4)]
    assert all(isinstance(h, concurrent.futures.Future) for h in handles)
    done, _ = concurrent.futures.wait(handles, timeout=20)
    assert len(done) == 4
    assert sorted(h.result() for h in concurrent.futures.as_completed(handles)) == [0, 2, 4, 6]
    assert [h.name for h in handles] == ["double-0", "double-1", "double-2", "double-3"]
    assert all(h.done() and not h.running() for h in handles)


def test_handle_works_with_asyncio_wrap_future() -> None:
    async def main() -> int:
        return int(await asyncio.wrap_future(plait.spawn(double, 21, backend="process")))

    assert asyncio.run(main()) == 42


def test_default_name_names_the_function_and_kwargs_reach_it() -> None:
    handle = plait.spawn(int, "ff", base=16)
    assert handle.result(20) == 255
    assert handle.name.startswith("int-")


def test_running_while_the_call_runs() -> None:
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(10)
        return "done"

    handle = plait.spawn(work, backend="thread")
    assert started.wait(10)
    assert handle.running() and not handle.done()
    release.set()
    assert handle.result(10) == "done"


# --- cancel() really stops the task ------------------------------------------------------------


def test_cancel_kills_a_process_task(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    handle = plait.spawn(write_pid_and_sleep, str(pid_file), 60, backend="process")
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20)
    pid = int(pid_file.read_text())
    assert handle.cancel() is True  # running: a plain Future would refuse
    assert handle.cancelled() and handle.done()
    with pytest.raises(concurrent.futures.CancelledError):
        handle.result(0)
    assert wait_until(lambda: not pid_alive(pid), 5), "the worker process still runs"
    assert handle.finished.wait(5)


def test_cancel_cancels_an_asyncio_task() -> None:
    started, saw_cancel = threading.Event(), threading.Event()

    async def wait_forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    handle = plait.spawn(wait_forever)  # auto: a coroutine function runs on asyncio
    assert started.wait(10)
    handle.cancel()
    assert saw_cancel.wait(5)
    assert handle.finished.wait(5)


def test_thread_task_stops_cooperatively_through_cancelled() -> None:
    started = threading.Event()
    handle = plait.spawn(spin_until_cancelled, started, backend="thread")
    assert started.wait(10)
    assert not plait.cancelled()  # outside any task
    handle.cancel()
    assert handle.finished.wait(5)
    assert handle.cancelled()


def test_cancel_before_start_and_after_finish() -> None:
    handle = plait.spawn(double, 1)
    assert handle.result(20) == 2
    assert handle.cancel() is False  # finished: as a plain Future
    assert not handle.cancelled()


def test_cancel_waiters_of_concurrent_wait_wake_up(tmp_path: Path) -> None:
    handle = plait.spawn(write_pid_and_sleep, str(tmp_path / "pid"), 60, backend="process")
    assert wait_until(lambda: handle.running(), 20)
    threading.Timer(0.1, handle.cancel).start()
    done, _ = concurrent.futures.wait([handle], timeout=10)
    assert done == {handle}
    assert handle.finished.wait(5)


# --- policies ----------------------------------------------------------------------------------


def test_timeout_raises_task_timeout() -> None:
    handle = plait.spawn(time.sleep, 30, backend="process", timeout=0.2)
    with pytest.raises(plait.TaskTimeout):
        handle.result(20)


def test_retries_retry_the_call() -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("again")
        return len(calls)

    assert plait.spawn(flaky, backend="thread", retries=2).result(20) == 3


def test_bad_options_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="on_exit"):
        plait.spawn(double, 1, on_exit="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plait.spawn(double, 1, backend="nope")
    with pytest.raises(ValueError):
        plait.spawn(double, 1, timeout=float("nan"))
    with pytest.raises(TypeError):
        plait.spawn(42)  # type: ignore[arg-type]


# --- errors are never lost ---------------------------------------------------------------------


def test_unretrieved_exception_is_logged_when_the_handle_is_collected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = plait.spawn(boom, "nobody looked", name="lonely")
    concurrent.futures.wait([handle], timeout=20)
    assert handle.finished.wait(5)
    with caplog.at_level(logging.ERROR, logger="plait"):
        del handle
        gc.collect()
    records = [r for r in caplog.records if "lonely" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None and "nobody looked" in caplog.text
    assert "Traceback" in caplog.text


def test_retrieved_exception_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    handle = plait.spawn(boom, name="seen")
    with pytest.raises(ValueError):
        handle.result(20)
    assert handle.finished.wait(5)
    with caplog.at_level(logging.ERROR, logger="plait"):
        del handle
        gc.collect()
    assert "seen" not in caplog.text


def _run_program(tmp_path: Path, source: str, timeout: float = 30) -> tuple[str, float]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
        env=subprocess_env(), timeout=timeout,
    )
    return done.stdout + done.stderr, time.monotonic() - started


def test_unretrieved_exception_is_reported_at_exit(tmp_path: Path) -> None:
    output, _ = _run_program(tmp_path, """
        import plait
        def fail():
            raise KeyError("lost at exit")
        task = plait.spawn(fail, name="forgotten")
    """)
    assert "forgotten" in output and "lost at exit" in output and "Traceback" in output


def test_exit_waits_for_running_tasks_by_default(tmp_path: Path) -> None:
    output, _ = _run_program(tmp_path, """
        import sys, time, plait
        def slow(path):
            time.sleep(0.5)
            open(path, "w").write("finished")
        plait.spawn(slow, sys.argv[1] + "/out", backend="thread")
        plait.spawn(slow, sys.argv[1] + "/out2", backend="process")
    """)
    assert (tmp_path / "out").read_text() == "finished", output
    assert (tmp_path / "out2").read_text() == "finished", output


def test_exit_cancels_tasks_spawned_with_on_exit_cancel(tmp_path: Path) -> None:
    output, elapsed = _run_program(tmp_path, """
        import os, sys, time, plait
        def block(path):
            open(path, "w").write(str(os.getpid()))
            time.sleep(60)
        task = plait.spawn(block, sys.argv[1] + "/pid", backend="process", on_exit="cancel")
        while not os.path.exists(sys.argv[1] + "/pid"):
            time.sleep(0.01)
        time.sleep(0.1)
    """)
    assert elapsed < 15, output
    pid = int((tmp_path / "pid").read_text())
    assert wait_until(lambda: not pid_alive(pid), 5)


@pytest.mark.parametrize("backend", ["process", "thread", "asyncio"])
def test_ctrl_c_cancels_every_task_within_two_seconds(tmp_path: Path, backend: str) -> None:
    output = _interrupt_once_started(tmp_path, f"""
        import asyncio, os, sys, time, plait
        folder = sys.argv[1]
        def block(x):
            open(os.path.join(folder, f"{{os.getpid()}}-{{x}}"), "w").close()
            time.sleep(30)
        async def ablock(x):
            block.__wrapped__ if False else open(
                os.path.join(folder, f"{{os.getpid()}}-{{x}}"), "w").close()
            await asyncio.sleep(30)
        fn = ablock if "{backend}" == "asyncio" else block
        tasks = [plait.spawn(fn, i, backend="{backend}") for i in range(2)]
        print([t.result() for t in tasks], flush=True)
    """)
    assert "[None, None]" not in output


# --- TaskGroup ---------------------------------------------------------------------------------


def test_task_group_waits_for_every_task() -> None:
    with plait.TaskGroup() as group:
        handles = [group.spawn(double, i, backend=b)
                   for i, b in enumerate(["thread", "process", "inline"])]
    assert all(h.done() for h in handles)
    assert [h.result() for h in handles] == [0, 2, 4]
    assert all(h.finished.is_set() for h in handles)


def test_task_group_first_failure_cancels_the_rest(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = threading.Event()
    begun = time.monotonic()
    with pytest.raises(ExceptionGroup) as caught, plait.TaskGroup() as group:
        sleeper = group.spawn(write_pid_and_sleep, str(pid_file), 60, backend="process")
        spinner = group.spawn(spin_until_cancelled, started, backend="thread")
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20)
        assert started.wait(10)
        group.spawn(boom, "first")
    assert time.monotonic() - begun < 30
    assert [str(e) for e in caught.value.exceptions] == ["first"]
    assert caught.value.subgroup(ValueError) is not None
    assert sleeper.cancelled() and spinner.cancelled()
    assert wait_until(lambda: not pid_alive(int(pid_file.read_text())), 5)


def test_task_group_body_error_cancels_tasks_and_is_raised_with_them() -> None:
    started = threading.Event()
    with pytest.raises(ExceptionGroup) as caught, plait.TaskGroup() as group:
        spinner = group.spawn(spin_until_cancelled, started, backend="thread")
        assert started.wait(10)
        raise KeyError("body")
    assert [type(e) for e in caught.value.exceptions] == [KeyError]
    assert spinner.cancelled() and spinner.finished.is_set()


def test_task_group_lets_keyboard_interrupt_through() -> None:
    started = threading.Event()
    with pytest.raises(KeyboardInterrupt), plait.TaskGroup() as group:
        spinner = group.spawn(spin_until_cancelled, started, backend="thread")
        assert started.wait(10)
        raise KeyboardInterrupt
    assert spinner.cancelled()


def test_task_group_refuses_spawn_after_it_finished() -> None:
    with plait.TaskGroup() as group:
        pass
    with pytest.raises(RuntimeError, match="finished"):
        group.spawn(double, 1)


def test_async_task_group() -> None:
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    async def main() -> tuple[list[int], list[type[BaseException]]]:
        async with plait.TaskGroup() as group:
            handles = [group.spawn(fetch, i) for i in range(3)]
        values = [h.result() for h in handles]
        started = threading.Event()
        try:
            async with plait.TaskGroup() as group:
                group.spawn(spin_until_cancelled, started, backend="thread")
                group.spawn(boom)
        except ExceptionGroup as failures:
            return values, [type(e) for e in failures.exceptions]
        return values, []

    assert asyncio.run(main()) == ([0, 1, 2], [ValueError])


# --- every -------------------------------------------------------------------------------------


def test_every_ticks_on_schedule_with_a_fake_clock() -> None:
    clock = FakeClock()
    times: list[float] = []
    enough = threading.Event()

    async def tick() -> None:
        times.append(clock.now())
        if len(times) >= 4:
            enough.set()

    handle = plait.every(30, tick, clock=clock)
    assert enough.wait(10)
    handle.cancel()
    assert handle.finished.wait(5)
    assert times[:4] == [0.0, 30.0, 60.0, 90.0]
    assert handle.cancelled()


def test_every_never_runs_two_ticks_at_once() -> None:
    running, most, ticks = [0], [0], [0]
    lock = threading.Lock()
    enough = threading.Event()

    def slow_tick() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # far longer than the period
        with lock:
            running[0] -= 1
            ticks[0] += 1
        if ticks[0] >= 4:
            enough.set()

    handle = plait.every(0.001, slow_tick, backend="thread")
    assert enough.wait(20)
    handle.cancel()
    assert handle.finished.wait(5)
    assert most[0] == 1


def test_every_reports_a_failed_tick_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    count = [0]
    enough = threading.Event()

    async def sometimes() -> None:
        count[0] += 1
        if count[0] == 2:
            raise ValueError("tick two failed")
        if count[0] >= 4:
            enough.set()

    with caplog.at_level(logging.ERROR, logger="plait"):
        handle = plait.every(1, sometimes, clock=clock, name="heartbeat")
        assert enough.wait(10)
        handle.cancel()
        assert handle.finished.wait(5)
    assert "tick two failed" in caplog.text and "heartbeat" in caplog.text
    assert count[0] >= 4


def test_every_refuses_a_bad_period() -> None:
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            plait.every(bad, double, 1)


def test_every_on_processes_reuses_one_worker_and_stops_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="plait"):
        handle = plait.every(0.01, os.getpid, backend="process", name="pids")
        time.sleep(1.0)
        handle.cancel()
        assert handle.finished.wait(10)
    assert "pids" not in caplog.text  # cancelling is not a failed tick
