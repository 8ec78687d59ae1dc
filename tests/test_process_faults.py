"""The process backend's fault matrix, with real processes: crashes, signals, pickling failures,
Ctrl-C and a parent killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import _tasks as T
import pytest
from _tasks import TaskError
from conftest import children, pid_alive, subprocess_env, wait_until

import plait

# --- a worker that dies fails only its own task -------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 5, None], ids=["chunksize=1", "chunksize=5", "auto"])
def test_os_exit_fails_only_that_task(chunksize: int | None) -> None:
    outcomes = plait.map(
        T.exit_on_three,
        range(10),
        backend="process",
        workers=2,
        chunksize=chunksize,
        errors="collect",
    )
    assert [o.index for o in outcomes] == list(range(10))
    failed = [o for o in outcomes if not o.ok]
    assert [o.index for o in failed] == [3]
    crash = failed[0].error
    assert isinstance(crash, plait.WorkerCrashed)
    assert isinstance(crash, plait.PlaitError)
    assert crash.exitcode == 1
    assert "exit code 1" in str(crash)
    assert [o.value for o in outcomes if o.ok] == [x * x for x in range(10) if x != 3]


def test_sigkill_names_the_signal() -> None:
    outcomes = plait.map(
        T.sigkill_on_three, range(10), backend="process", workers=2, chunksize=1, errors="collect"
    )
    failed = [o for o in outcomes if not o.ok]
    assert [o.index for o in failed] == [3]
    crash = failed[0].error
    assert isinstance(crash, plait.WorkerCrashed)
    assert crash.exitcode == -signal.SIGKILL
    assert "SIGKILL" in str(crash)
    assert sum(o.ok for o in outcomes) == 9


def test_crash_with_errors_raise_raises_worker_crashed() -> None:
    with pytest.raises(plait.WorkerCrashed, match="exit code 1"):
        plait.map(T.exit_on_three, range(10), backend="process", workers=2, chunksize=1)


def test_crash_with_errors_skip_keeps_the_rest() -> None:
    result = plait.map(T.exit_on_three, range(10), backend="process", workers=2, errors="skip")
    assert result == [x * x for x in range(10) if x != 3]


def test_pool_keeps_working_after_crashes() -> None:
    with plait.Pool(backend="process", workers=2) as pool:
        first = pool.map(T.exit_on_three, range(10), chunksize=1, errors="collect")
        assert sum(not o.ok for o in first) == 1
        second = pool.map(T.sigkill_on_three, range(10), chunksize=1, errors="collect")
        assert sum(not o.ok for o in second) == 1
        assert pool.map(T.square, range(20)) == [x * x for x in range(20)]
        assert pool.submit(T.square, 7).result(timeout=10) == 49
        crashed = pool.submit(T.exit_on_three, 3)
        assert isinstance(crashed.exception(timeout=10), plait.WorkerCrashed)
        assert pool.submit(T.square, 8).result(timeout=10) == 64
        # the dead workers were replaced, not added to: still at most two live workers
        live = [pid for pid in children() if pid_alive(pid)]
        assert len(live) <= 2, live


def test_worker_killed_while_idle_is_replaced_silently() -> None:
    with plait.Pool(backend="process", workers=1) as pool:
        pid = pool.submit(T.getpid).result(timeout=10)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(pid), 5)  # dead (a zombie not yet reaped)
        # the next task did not kill anything: it runs on a fresh worker and succeeds, even
        # submitted the moment the worker shows as dead (before it can be reaped)
        new_pid = pool.submit(T.getpid).result(timeout=10)
        assert new_pid != pid


@pytest.mark.timeout(20)
def test_leaving_a_process_pool_by_an_exception_kills_its_workers(tmp_path: Path) -> None:
    # Two tasks of 60 s run when the block is left by an exception: the workers are killed
    # and reaped at once (leaving the block does not wait for the tasks, within the 20 s limit).
    folder = tmp_path / "running"
    folder.mkdir()
    with pytest.raises(TaskError, match="leave"), plait.Pool(backend="process", workers=2) as pool:
        futures = [pool.submit(T.record_and_sleep, (str(folder), 60.0)) for _ in range(2)]
        assert wait_until(lambda: len(list(folder.iterdir())) == 2, 15), "the tasks never ran"
        workers = {int(path.name.split("-")[0]) for path in folder.iterdir()}
        raise TaskError("leave")
    assert len(workers) == 2
    assert not any(pid_alive(pid) for pid in workers)
    assert not workers & children(), "killed but not reaped"
    assert all(future.done() for future in futures)


# --- what cannot cross the process boundary -----------------------------------------------


def test_unpicklable_argument_fails_only_that_item() -> None:
    items = [1, 2, threading.Lock(), 4, 5]
    outcomes = plait.map(T.typename, items, backend="process", workers=2, errors="collect")
    assert [o.index for o in outcomes] == list(range(5))
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert isinstance(outcomes[2].error, plait.SerializationError)
    assert "pickle" in str(outcomes[2].error)
    assert [o.value for o in outcomes if o.ok] == ["int"] * 4


def test_unpicklable_argument_in_a_chunk_with_errors_raise() -> None:
    with pytest.raises(plait.SerializationError):
        plait.map(
            T.typename, [1, 2, threading.Lock(), 4], backend="process", workers=2, chunksize=4
        )


def test_unpicklable_result_fails_only_that_item() -> None:
    outcomes = plait.map(
        T.lock_on_two, range(6), backend="process", workers=2, chunksize=3, errors="collect"
    )
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    assert isinstance(outcomes[2].error, plait.SerializationError)
    assert "lock" in str(outcomes[2].error).lower()
    assert [o.value for o in outcomes if o.ok] == [0, 1, 9, 16, 25]


def test_unpicklable_exception_fails_only_that_item() -> None:
    outcomes = plait.map(
        T.raise_unpicklable_on_two,
        range(6),
        backend="process",
        workers=2,
        chunksize=3,
        errors="collect",
    )
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    error = outcomes[2].error
    assert isinstance(error, plait.SerializationError)
    assert "UnpicklableError" in str(error) and "bad 2" in str(error)
    assert [o.value for o in outcomes if o.ok] == [0, 1, 9, 16, 25]


@pytest.mark.timeout(10)
def test_exception_that_cannot_be_rebuilt_in_the_parent_fails_only_that_item() -> None:
    # TwoArgumentError pickles in the worker but unpickling it in the parent raises TypeError.
    outcomes = plait.map(
        T.raise_unrebuildable_on_two,
        range(6),
        backend="process",
        workers=2,
        chunksize=3,
        errors="collect",
    )
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    error = outcomes[2].error
    # not the raw TwoArgumentError (it cannot be rebuilt): a SerializationError that names it,
    # with the worker's traceback
    assert type(error) is plait.SerializationError, repr(error)
    assert "the task raised TwoArgumentError: 2: detail" in str(error)
    assert "cannot be rebuilt in the parent" in str(error)
    assert "raise_unrebuildable_on_two" in str(error.__cause__)
    assert [o.value for o in outcomes if o.ok] == [0, 1, 9, 16, 25]


@pytest.mark.timeout(10)
def test_result_that_cannot_be_rebuilt_in_the_parent_fails_only_that_item() -> None:
    outcomes = plait.map(
        T.unloadable_on_two, range(6), backend="process", workers=2, chunksize=3, errors="collect"
    )
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    assert isinstance(outcomes[2].error, plait.SerializationError), repr(outcomes[2].error)
    assert [o.value for o in outcomes if o.ok] == [0, 1, 9, 16, 25]


def test_task_exception_keeps_type_and_remote_traceback() -> None:
    outcomes = plait.map(T.fail_on_five, range(8), backend="process", workers=2, errors="collect")
    error = outcomes[5].error
    assert type(error) is TaskError and error.args == (5,)
    assert error.__cause__ is not None and "fail_on_five" in str(error.__cause__)


# --- Ctrl-C and a parent that dies ---------------------------------------------------------

_SCRIPT = """
import sys
import plait
import _tasks

folder = sys.argv[1]
tasks = [(folder, 20.0)] * 4
plait.map(_tasks.record_and_sleep, tasks, backend={backend!r}, workers=2, chunksize=1)
print("map returned", flush=True)
"""


def _start_script(tmp_path: Path, backend: str) -> tuple[subprocess.Popen[bytes], Path]:
    folder = tmp_path / "running"
    folder.mkdir()
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(backend=backend)))
    with open(tmp_path / "output.txt", "wb") as log:  # a file, not a pipe: workers inherit it
        process = subprocess.Popen(
            [sys.executable, str(script), str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )
    if not wait_until(lambda: len(list(folder.iterdir())) >= 2, 30):
        process.kill()
        process.wait()
        pytest.fail(
            "the script's two tasks never started:\n" + (tmp_path / "output.txt").read_text()
        )
    return process, folder


def _worker_pids(folder: Path) -> set[int]:
    return {int(path.name.split("-")[0]) for path in folder.iterdir()}


def _stop(process: subprocess.Popen[bytes], folder: Path | None = None) -> None:
    """Clean up what this test started, even when it failed: the script, then its workers."""
    if process.poll() is None:
        process.kill()
    process.wait()
    for pid in _worker_pids(folder) if folder is not None else ():
        if pid != process.pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_on_process_backend_stops_everything(tmp_path: Path) -> None:
    process, folder = _start_script(tmp_path, "process")
    try:
        workers = _worker_pids(folder)
        assert len(workers) == 2 and process.pid not in workers
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the script did not stop within 10 s of Ctrl-C")
        elapsed = time.monotonic() - started
        output = (tmp_path / "output.txt").read_text()
        assert "KeyboardInterrupt" in output, output
        assert "map returned" not in output
        assert elapsed < 3.0, f"Ctrl-C took {elapsed:.1f} s to return"
        assert wait_until(lambda: not any(pid_alive(pid) for pid in workers), 1.0), (
            f"workers still running after Ctrl-C: {[p for p in workers if pid_alive(p)]}"
        )
    finally:
        _stop(process, folder)


def test_ctrl_c_on_thread_backend_returns_quickly(tmp_path: Path) -> None:
    process, _ = _start_script(tmp_path, "thread")
    try:
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the script did not stop within 10 s of Ctrl-C")
        elapsed = time.monotonic() - started
        output = (tmp_path / "output.txt").read_text()
        assert "KeyboardInterrupt" in output, output
        assert elapsed < 2.5, f"Ctrl-C took {elapsed:.1f} s to return"
    finally:
        _stop(process)


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    process, folder = _start_script(tmp_path, "process")
    try:
        workers = _worker_pids(folder)
        assert len(workers) == 2
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_until(lambda: not any(pid_alive(pid) for pid in workers), 3.0), (
            f"orphaned workers still running 3 s after the parent was killed: "
            f"{[p for p in workers if pid_alive(p)]}"
        )
    finally:
        _stop(process, folder)


@pytest.mark.timeout(30)
def test_kill_reaches_a_worker_that_does_not_lead_its_group_yet() -> None:
    """A worker forked by the template leads its own process group only once it has run
    setsid(); killed before (Ctrl-C right after the fork), it must die all the same, or the
    run's stop waits for it forever."""
    from types import SimpleNamespace

    from plait._backends._process import WorkerProcess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        WorkerProcess.kill(SimpleNamespace(popen=child))  # type: ignore[arg-type]
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
