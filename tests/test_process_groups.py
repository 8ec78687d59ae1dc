"""A process backend run leaves no process behind: a timeout, a crash, a deadline, breaking
out of ``imap``, Ctrl-C or a killed parent take down the worker *and* what its task started
(its process group); stopping a run stops its running tasks at once; a replaced worker exits
quietly. Asserted with pids (dead or alive), not with tight timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import _proc_tasks as P
import _tasks as T
import pytest
from conftest import pid_alive, subprocess_env, wait_until

import plait

# Killed sleepers are re-parented to init, which reaps them: allow it a moment.
REAP_S = 5.0


def _started(folder: Path) -> list[tuple[int, int]]:
    """(worker pid, sleeper pid) for each task that has started its ``sleep``."""
    return [tuple(map(int, p.name.split("-"))) for p in folder.iterdir()]  # type: ignore[misc]


def _wait_started(folder: Path, count: int) -> list[tuple[int, int]]:
    assert wait_until(lambda: len(_started(folder)) >= count, 30), _started(folder)
    return _started(folder)


def _all_dead(pids: list[int]) -> bool:
    return wait_until(lambda: not any(pid_alive(pid) for pid in pids), REAP_S)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """Where tasks record their pids; whatever a failed test left alive is killed after it."""
    path = tmp_path / "pids"
    path.mkdir()
    yield path
    for pids in _started(path):
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- the task's own children go with its worker -------------------------------------------


@pytest.mark.timeout(60)
def test_timeout_kills_the_processes_the_task_started(folder: Path) -> None:
    outcomes = plait.map(
        P.spawn_sleeper, [str(folder)], backend="process", timeout=1.0, errors="collect"
    )
    assert isinstance(outcomes[0].error, plait.TaskTimeout)
    [(worker, sleeper)] = _started(folder)
    assert _all_dead([worker, sleeper]), "the task's `sleep` outlived its timed-out worker"


@pytest.mark.timeout(60)
def test_a_crashed_worker_takes_its_tasks_children_along(folder: Path) -> None:
    outcomes = plait.map(
        P.spawn_sleeper_then_exit, [str(folder)], backend="process", errors="collect"
    )
    assert isinstance(outcomes[0].error, plait.WorkerCrashed)
    [(worker, sleeper)] = _started(folder)
    assert _all_dead([worker, sleeper])


@pytest.mark.timeout(60)
def test_deadline_kills_running_tasks_and_their_children(folder: Path) -> None:
    started = time.monotonic()
    with pytest.raises(plait.TaskTimeout, match="deadline"):
        plait.map(P.spawn_sleeper, [str(folder)] * 2, backend="process", workers=2, deadline=3.0)
    assert time.monotonic() - started < P.SLEEP_S / 2  # returned, not waited for the sleeps
    pids = [pid for pair in _started(folder) for pid in pair]
    assert len(pids) == 4, "both tasks should have started within the deadline"
    assert _all_dead(pids)


# --- breaking out of imap stops the running tasks at once ---------------------------------


@pytest.mark.timeout(60)
def test_breaking_out_of_imap_stops_running_tasks(folder: Path) -> None:
    items = [(i, str(folder)) for i in range(3)]
    results = plait.imap(P.quick_or_sleeper, items, backend="process", workers=2, chunksize=1)
    for first in results:
        assert first == 0
        _wait_started(folder, 2)  # items 1 and 2 are running their `sleep 30`
        break
    broke = time.monotonic()
    del results  # close the generator now, as leaving a for loop over it would
    assert time.monotonic() - broke < P.SLEEP_S / 2, "closing waited for the running tasks"
    started = _started(folder)
    workers = [worker for worker, _ in started]
    # Back in the caller, the workers are already gone (killed and reaped, no grace period)...
    assert not any(pid_alive(pid) for pid in workers), workers
    # ...with the processes their tasks started.
    assert _all_dead([sleeper for _, sleeper in started])
    # The next call is not held up by anything the first one left behind.
    assert plait.map(T.square, range(4), backend="process", workers=2) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
def test_a_pool_left_by_an_exception_kills_running_tasks_and_their_children(
    folder: Path,
) -> None:
    """``shutdown(cancel_futures=True)`` lets running tasks finish, as the stdlib does; leaving
    the ``with`` block by an exception stops them, with the processes they started."""
    with pytest.raises(KeyError), plait.Pool(backend="process", workers=2) as pool:
        futures = [pool.submit(P.spawn_sleeper, str(folder)) for _ in range(2)]
        started = _wait_started(folder, 2)
        stopping = time.monotonic()
        raise KeyError("leaving")
    assert time.monotonic() - stopping < P.SLEEP_S / 2, "leaving waited for the running tasks"
    assert all(f.done() for f in futures)
    assert not any(pid_alive(worker) for worker, _ in started)
    assert _all_dead([sleeper for _, sleeper in started])
# --- Ctrl-C and a killed parent -----------------------------------------------------------

_SCRIPT = """
import sys
import plait
import _proc_tasks

plait.map(_proc_tasks.spawn_sleeper, [sys.argv[1]] * 2, backend="process", workers=2)
print("map returned", flush=True)
"""


def _start_script(tmp_path: Path, folder: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    with open(tmp_path / "output.txt", "wb") as log:  # a file, not a pipe: workers inherit it
        return subprocess.Popen(
            [sys.executable, str(script), str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "parent-killed"])
def test_stopping_the_program_kills_the_tasks_children(
    tmp_path: Path, folder: Path, how: signal.Signals
) -> None:
    process = _start_script(tmp_path, folder)
    try:
        started = _wait_started(folder, 2)
        process.send_signal(how)
        process.wait(timeout=20)
        output = (tmp_path / "output.txt").read_text()
        assert "map returned" not in output
        if how == signal.SIGINT:
            assert "KeyboardInterrupt" in output, output
        pids = [pid for pair in started for pid in pair]
        assert _all_dead(pids), f"still running: {[p for p in pids if pid_alive(p)]}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


# --- a replaced worker exits quietly --------------------------------------------------------

_QUIET = """
import time
import plait

def nap_on_thirds(x):
    if x % 3 == 0:
        time.sleep(5)
    return x

for _ in range(4):
    plait.map(nap_on_thirds, range(7), backend="process", workers=2, timeout=0.3, errors="collect")
print("done")
"""


@pytest.mark.timeout(90)
def test_workers_replaced_after_timeouts_exit_without_tracebacks(tmp_path: Path) -> None:
    # Each run ends just as a worker replacing a timed-out one starts: it must leave quietly.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_QUIET)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


_PRINTS = """
import plait

def shout(x):
    print("task", x)
    return x

plait.map(shout, range(4), backend="process", workers=2, chunksize=1)
"""


@pytest.mark.timeout(60)
def test_what_tasks_print_is_flushed_when_workers_leave(tmp_path: Path) -> None:
    # Workers leave without the interpreter's teardown: they flush their output first.
    env = subprocess_env()
    env.pop("PYTHONUNBUFFERED", None)
    with open(tmp_path / "out.txt", "wb") as out:  # a file: block-buffered in the workers
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_PRINTS)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=50,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert sorted(lines) == [f"task {i}" for i in range(4)]


# --- a warm Pool: a stopped run frees its workers, the pool goes on -------------------------


@pytest.mark.timeout(60)
def test_leaving_a_pool_imap_early_stops_its_running_tasks(folder: Path) -> None:
    items = [(i, str(folder)) for i in range(3)]
    with plait.Pool(backend="process", workers=2) as pool:
        results = pool.imap(P.quick_or_sleeper, items, chunksize=1)
        for first in results:
            assert first == 0
            _wait_started(folder, 2)  # items 1 and 2 are running their `sleep 30`
            break
        del results
        started = _started(folder)
        # the stopped run's tasks are killed with what they started, not left to run 30 s...
        assert _all_dead([pid for pair in started for pid in pair]), started
        # ...so the pool's next call finds its workers free (replaced), well before the sleeps
        before = time.monotonic()
        assert pool.map(T.square, range(4)) == [0, 1, 4, 9]
        assert time.monotonic() - before < P.SLEEP_S / 2


@pytest.mark.timeout(60)
def test_a_pool_run_past_its_deadline_stops_its_running_tasks(folder: Path) -> None:
    with plait.Pool(backend="process", workers=2) as pool:
        with pytest.raises(plait.TaskTimeout, match="deadline"):
            pool.map(P.spawn_sleeper, [str(folder)] * 2, timeout=2.0)  # Executor.map: deadline
        started = _started(folder)
        assert _all_dead([pid for pair in started for pid in pair]), started
        assert pool.map(T.square, range(4)) == [0, 1, 4, 9]
