"""What crosses to a worker process and back keeps its type: classes, functions and exceptions
defined in the user's ``__main__`` (a script, ``python -c``), exceptions that are not
``Exception``s, a failing initializer, and modules found through ``''`` on ``sys.path``.

The ``__main__`` cases run as real programs (``sys.executable`` in a subprocess): in pytest,
``__main__`` is pytest's own, which hides the bug.
"""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import BrokenExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import _proc_tasks as P
import _tasks as T
import pytest
from conftest import subprocess_env

import plait

# --- the user's __main__ --------------------------------------------------------------------

_MAIN = '''
import dataclasses
import threading

import plait


class MyError(Exception):
    pass


class TwoArgs(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(a)


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Holder:
    def __init__(self):
        self.lock = threading.Lock()


def area(p):
    return p.x * p.y


def make_point(n):
    return Point(n, n + 1)


def echo(x):
    return x


def fail(n):
    raise MyError(f"bad {n}")


def fail_badly(n):
    raise TwoArgs(n, "b")


def double(n):
    return 2 * n


def main(n):  # a worker's own __main__ (_boot.py) once had a `main` too
    return n + 100


def apply(pair):
    fn, n = pair
    return fn(n)


def local_class(n):
    class Local:
        def __init__(self, v):
            self.v = v

    return Local(n)


def run(**kw):
    return plait.map(*kw.pop("args"), backend="process", workers=2, **kw)


print("argument", run(args=(area, [Point(2, 3), Point(4, 5)])))
points = run(args=(make_point, range(3)))
print("result", [type(p) is Point for p in points], points[2])
back = run(args=(echo, [Point(1, 2), MyError("x")]))
print("echo", type(back[0]) is Point, type(back[1]) is MyError)
try:
    run(args=(fail, [1]))
except MyError as e:
    print("raised", type(e) is MyError, e)
outcomes = run(args=(fail, range(4)), chunksize=2, errors="collect")
print("collected", [isinstance(o.error, MyError) for o in outcomes])
print("function", run(args=(apply, [(double, 4), (main, 1)])))
print("local", [v.v for v in run(args=(local_class, [7]))])
with plait.Pool(backend="process", workers=1) as pool:
    error = pool.submit(fail, 9).exception(timeout=60)
    print("submit", type(error) is MyError, type(pool.submit(make_point, 1).result(60)) is Point)
held = run(args=(type, [1, Holder(), 3]), errors="collect")
print("lock", [o.ok for o in held], type(held[1].error).__name__)
bad = run(args=(fail_badly, [5]), errors="collect")[0].error
print("unrebuildable", type(bad).__name__, "TwoArgs" in str(bad))
'''

_EXPECTED = [
    "argument [6, 20]",
    "result [True, True, True] Point(x=2, y=3)",
    "echo True True",
    "raised True bad 1",
    "collected [True, True, True, True]",
    "function [8, 101]",
    "local [7]",
    "submit True True",
    "lock [True, False, True] SerializationError",
    "unrebuildable SerializationError True",
]


def _run(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(120)
def test_main_classes_functions_and_errors_round_trip_from_a_script(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(_MAIN))
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _EXPECTED, done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_main_classes_functions_and_errors_round_trip_from_python_c(tmp_path: Path) -> None:
    done = _run(["-c", textwrap.dedent(_MAIN)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _EXPECTED, done.stdout + done.stderr


# --- '' on sys.path ---------------------------------------------------------------------------

_CHDIR = """
import os, sys
import plait
import user_module
assert sys.path[0] == "", sys.path[:2]
os.chdir(sys.argv[1])
print(plait.map(user_module.triple, [1, 2, 3], backend="process", workers=2))
"""


@pytest.mark.timeout(60)
def test_empty_sys_path_entry_means_the_start_directory(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "user_module.py").write_text("def triple(x):\n    return 3 * x\n")
    done = _run(["-c", textwrap.dedent(_CHDIR), str(elsewhere)], home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[3, 6, 9]"


# --- WorkerCrashed is the stdlib's BrokenProcessPool ------------------------------------------


def test_worker_crashed_is_caught_as_broken_process_pool() -> None:
    with pytest.raises(BrokenProcessPool) as caught:
        plait.map(T.exit_on_three, range(6), backend="process", workers=2, chunksize=1)
    crash = caught.value
    assert type(crash) is plait.WorkerCrashed and crash.exitcode == 1
    assert isinstance(crash, plait.PlaitError) and isinstance(crash, RuntimeError)
    copy = pickle.loads(pickle.dumps(crash))
    assert type(copy) is plait.WorkerCrashed and copy.exitcode == 1 and str(copy) == str(crash)


def test_worker_crashed_is_one_class_loaded_on_first_use() -> None:
    code = """
import sys
import plait
assert "concurrent.futures.process" not in sys.modules
from plait._worker_crashed import WorkerCrashed
from concurrent.futures.process import BrokenProcessPool
assert plait.WorkerCrashed is WorkerCrashed and "WorkerCrashed" in plait.__all__
assert WorkerCrashed.__mro__[1:3] == (plait.PlaitError, BrokenProcessPool)
print("ok")
"""
    done = _run(["-c", textwrap.dedent(code)], Path.cwd(), timeout=30)
    assert done.stdout.strip() == "ok", done.stderr


# --- a task's BaseException is that task's error; the worker goes on ------------------------


@pytest.mark.timeout(60)
def test_task_base_exceptions_keep_their_type_and_the_worker() -> None:
    with plait.Pool(backend="process", workers=1) as pool:
        pid = pool.submit(P.getpid).result(timeout=30)
        names = ["exit", "interrupt", "stop", "generator-exit", "value"]
        outcomes = pool.map(P.raise_base, names, chunksize=len(names), errors="collect")
        errors = [o.error for o in outcomes]
        assert [type(e) for e in errors] == [
            SystemExit,
            KeyboardInterrupt,
            StopIteration,
            GeneratorExit,
            ValueError,
        ]
        assert isinstance(errors[0], SystemExit) and errors[0].code == 3
        assert str(errors[1]) == "from the task"
        assert pool.submit(P.getpid).result(timeout=30) == pid  # the same worker, alive


def test_os_exit_in_a_task_stays_worker_crashed() -> None:
    outcomes = plait.map(T.exit_on_three, [3], backend="process", errors="collect")
    assert isinstance(outcomes[0].error, plait.WorkerCrashed)


# --- an initializer that fails: one clear error, no restart loop ------------------------------


def _init_count(folder: Path) -> int:
    return len(list(folder.glob("init-*")))


@pytest.mark.timeout(60)
def test_failing_initializer_breaks_the_pool_with_its_error_as_cause(tmp_path: Path) -> None:
    init = functools.partial(P.failing_init, str(tmp_path))
    with pytest.raises(BrokenExecutor, match="InitError: cannot set up") as caught:
        plait.map(T.square, range(20), backend="process", workers=2, initializer=init)
    cause = caught.value.__cause__
    assert isinstance(cause, P.InitError)  # the initializer's own error, as in the stdlib
    assert any("initializer" in note for note in getattr(cause, "__notes__", []))
    assert "failing_init" in str(cause.__cause__)  # the worker's traceback
    assert 1 <= _init_count(tmp_path) <= 2  # each worker tried once: no restart loop


@pytest.mark.timeout(60)
def test_failing_initializer_fails_every_task_of_the_pool_without_restarts(
    tmp_path: Path,
) -> None:
    init = functools.partial(P.failing_init, str(tmp_path))
    with plait.Pool(backend="process", workers=2, initializer=init) as pool:
        outcomes = pool.map(T.square, range(20), chunksize=1, errors="collect")
        assert len(outcomes) == 20
        assert all(isinstance(o.error.__cause__, P.InitError) for o in outcomes)  # type: ignore[union-attr]
        later = pool.map(T.square, range(5), errors="collect")
        assert all(isinstance(o.error, BrokenExecutor) for o in later)
    assert 1 <= _init_count(tmp_path) <= 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("init", "error_type"),
    [(P.exiting_init, BrokenExecutor), (P.dying_init, plait.WorkerCrashed)],
    ids=["sys.exit", "os._exit"],
)
def test_initializer_that_exits_is_reported_once(
    tmp_path: Path, init: object, error_type: type[BaseException]
) -> None:
    initializer = functools.partial(init, str(tmp_path))  # type: ignore[call-overload]
    outcomes = plait.map(
        T.square, range(10), backend="process", workers=2, initializer=initializer,
        errors="collect",
    )
    assert all(type(o.error) is error_type for o in outcomes), outcomes
    if error_type is BrokenExecutor:
        assert all(type(o.error.__cause__) is SystemExit for o in outcomes)  # type: ignore[union-attr]
    assert 1 <= _init_count(tmp_path) <= 2


# --- plait inside a worker -------------------------------------------------------------------


def test_a_worker_starts_without_plaits_api_and_loads_it_when_a_task_uses_it() -> None:
    with plait.Pool(backend="process", workers=1) as pool:
        # a lean start: neither package's __init__ has run (they load on first use)
        assert pool.submit(P.plait_as_the_worker_starts).result(timeout=30) == (False, False)
        assert pool.map(P.uses_plait, [3]) == [([3, 3], True, "thread")]
        assert pool.submit(P.plait_as_the_worker_starts).result(timeout=30) == (True, True)
