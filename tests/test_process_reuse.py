"""plait.map's process workers: forked from the template, shared across calls, and never a
worker that is busy, crashed or timed out handed on; none outlives its parent."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import _reuse_tasks as R
import pytest
from conftest import IDLE_REAPER, direct_children, pid_alive, subprocess_env, wait_until

import plait
from plait._backends import _reuse, _template

pytestmark = pytest.mark.timeout(60)


def workers_of(fn: object, n: int = 8, **options: object) -> set[int]:
    return set(plait.map(fn, range(n), backend="process", workers=2, chunksize=1, **options))


def recorded(folder: Path) -> int:
    (name,) = [p.name for p in folder.iterdir()]
    return int(name)


def test_two_map_calls_share_their_workers() -> None:
    first = workers_of(R.slow_pid)
    assert len(first) == 2
    assert _reuse.idle_pids() == first  # idle between the calls
    assert workers_of(R.slow_pid) == first


def test_workers_come_from_the_template_not_the_user_process() -> None:
    parents = workers_of(R.parent_pid)
    template = _template.pid()
    assert template is not None and template != os.getpid()
    assert parents == {template}
    assert template in direct_children(os.getpid())


def test_plain_spawn_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_PROCESS_START", "spawn")
    assert workers_of(R.parent_pid) == {os.getpid()}


def test_idle_workers_exit_after_the_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0.3")
    pids = workers_of(R.slow_pid)
    assert pids == _reuse.idle_pids()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 3)  # the default is 5 s
    assert not _reuse.idle_pids()
    assert wait_until(lambda: IDLE_REAPER not in {t.name for t in threading.enumerate()}, 5)


def test_idle_timeout_zero_turns_sharing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0")
    pids = workers_of(R.pid)
    assert not _reuse.idle_pids()
    assert not any(pid_alive(p) for p in pids)


def test_shutdown_releases_the_workers_and_the_template() -> None:
    pids = workers_of(R.pid)
    template = _template.pid()
    plait.shutdown()
    assert not _reuse.idle_pids()
    assert not any(pid_alive(p) for p in pids)
    assert template not in direct_children(os.getpid())
    assert workers_of(R.pid)  # a later call starts what it needs again


def test_a_worker_that_timed_out_is_not_reused(tmp_path: Path) -> None:
    items = [(i, str(tmp_path)) for i in range(6)]
    outcomes = plait.map(
        R.record_then_sleep,
        items,
        backend="process",
        workers=2,
        chunksize=1,
        timeout=0.5,
        errors="collect",
    )
    assert isinstance(outcomes[0].error, plait.TaskTimeout)
    killed = recorded(tmp_path)
    assert killed not in _reuse.idle_pids()
    assert killed not in workers_of(R.slow_pid)


def test_a_worker_that_crashed_is_not_reused(tmp_path: Path) -> None:
    items = [(i, str(tmp_path)) for i in range(6)]
    outcomes = plait.map(
        R.record_then_die, items, backend="process", workers=2, chunksize=1, errors="collect"
    )
    assert isinstance(outcomes[0].error, plait.WorkerCrashed)
    crashed = recorded(tmp_path)
    assert crashed not in _reuse.idle_pids()
    assert crashed not in workers_of(R.slow_pid)


def test_a_stopped_run_hands_on_no_busy_worker(tmp_path: Path) -> None:
    items = [(i, str(tmp_path)) for i in range(6)]
    with pytest.raises(ValueError, match="stop the run"):
        plait.map(R.record_then_fail, items, backend="process", workers=2, chunksize=1)
    busy = recorded(tmp_path)
    assert busy not in _reuse.idle_pids()
    assert wait_until(lambda: not pid_alive(busy), 5), "the busy worker was not killed"
    assert busy not in workers_of(R.slow_pid)


@pytest.mark.parametrize(
    "options", [{"initializer": os.getpid}, {"max_tasks_per_worker": 100}], ids=["init", "recycle"]
)
def test_initializer_and_recycling_runs_keep_private_workers(options: dict[str, object]) -> None:
    pids = workers_of(R.pid, **options)
    assert not _reuse.idle_pids()
    assert not any(pid_alive(p) for p in pids)


def test_a_pool_keeps_its_workers_to_itself() -> None:
    with plait.Pool(backend="process", workers=2) as pool:
        pool.map(R.pid, range(4))
    assert not _reuse.idle_pids()


def test_a_reused_worker_sees_the_parent_environment_and_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workers_of(R.pid)
    monkeypatch.setenv("PLAIT_REUSE_TEST", "later")
    monkeypatch.chdir(tmp_path)
    seen = plait.map(R.env_and_cwd, ["PLAIT_REUSE_TEST"] * 4, backend="process", workers=2)
    assert set(seen) == {("later", str(tmp_path))}


# --- the parent's end, in a subprocess ----------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import plait
    import _reuse_tasks as R
    from plait._backends import _template
    pids = set(plait.map(R.slow_pid, range(8), backend="process", workers=2, chunksize=1))
    print(*pids, _template.pid(), flush=True)
    if sys.argv[1] == "wait":
        time.sleep(60)
    """
)


def _run_script(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert process.stdout is not None
    pids = [int(p) for p in process.stdout.readline().split()]
    assert len(pids) == 3, pids  # two workers and the template
    return process, pids


def test_no_worker_or_template_survives_a_normal_exit(tmp_path: Path) -> None:
    process, pids = _run_script(tmp_path, "exit")
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    process.stdout.close()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5), [
        p for p in pids if pid_alive(p)
    ]


def test_no_worker_or_template_survives_the_parent_sigkill(tmp_path: Path) -> None:
    process, pids = _run_script(tmp_path, "wait")
    try:
        assert all(pid_alive(p) for p in pids)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5), [
            p for p in pids if pid_alive(p)
        ]
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_a_killed_template_is_replaced_and_its_workers_still_serve() -> None:
    first = workers_of(R.slow_pid)
    template = _template.pid()
    assert template is not None
    os.kill(template, signal.SIGKILL)
    assert wait_until(lambda: _template.pid() != template, 5)
    assert workers_of(R.slow_pid) == first  # idle, orphaned, still reused
    plait.shutdown()
    assert wait_until(lambda: not any(pid_alive(p) for p in first), 5)
    assert len(workers_of(R.slow_pid)) == 2  # from a new template
    assert _template.pid() not in (None, template)


def test_many_calls_with_new_functions_run_on_the_same_workers() -> None:
    first = workers_of(R.slow_pid)
    for n in range(70):  # more functions than a worker caches (64)
        assert plait.map(lambda x, n=n: x + n, [1, 2], backend="process", workers=2) == [
            1 + n,
            2 + n,
        ]
    assert workers_of(R.slow_pid) == first


def test_a_function_the_worker_evicted_is_sent_again() -> None:
    """A worker caches 64 functions; Pool.submit keeps one handle per function, so the 1st
    function comes back after the worker dropped it: the parent mirrors the cache and resends."""
    functions = [lambda x, n=n: x + n for n in range(70)]
    with plait.Pool(backend="process", workers=1) as pool:
        for n, fn in enumerate(functions):
            assert pool.submit(fn, 1).result(timeout=30) == 1 + n
        assert pool.submit(functions[0], 1).result(timeout=30) == 1


def test_workers_inherit_the_stdlib_modules_the_program_loaded_and_cloudpickle() -> None:
    import decimal  # noqa: F401 - on the template's preload list
    import xmlrpc.client  # noqa: F401 - not on it: a module must be listed to be preloaded
    import zoneinfo  # noqa: F401 - listed

    names = ["cloudpickle", "decimal", "xmlrpc", "zoneinfo"]
    plait.shutdown()  # a fresh template, which has imported none of them

    def one_private_worker() -> list[str]:
        (found,) = plait.map(R.loaded, [names], backend="process", max_tasks_per_worker=1)
        return found

    # the first worker may be forked before the template imported any of them: a request
    # never waits for the imports
    assert set(one_private_worker()) <= {"cloudpickle", "decimal", "zoneinfo"}
    assert {"decimal", "zoneinfo"} <= _template.PRELOAD and "xmlrpc" not in _template.PRELOAD
    assert wait_until(lambda: "cloudpickle" in one_private_worker(), 10)  # imported last
    assert one_private_worker() == ["cloudpickle", "decimal", "zoneinfo"]


def test_a_template_given_time_preloads_before_its_first_fork() -> None:
    """The template starts at the beginning of a program's first process run and imports while
    the parent prepares it: given the time, the first worker has the program's stdlib modules."""
    import zoneinfo  # noqa: F401 - listed

    plait.shutdown()
    _template.prestart()
    time.sleep(2)  # far more than importing zoneinfo and cloudpickle takes
    (found,) = plait.map(R.loaded, [["zoneinfo", "cloudpickle"]], backend="process")
    assert found == ["zoneinfo", "cloudpickle"]


def test_the_template_imports_nothing_while_a_run_has_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The PRELOAD modules the program loads during a run are imported by the template after
    the run, not while its workers compute: workers forked during it do not have them."""
    monkeypatch.delitem(sys.modules, "sqlite3", raising=False)  # as if never imported here
    plait.shutdown()  # a fresh template, started without sqlite3 on its list
    with plait.Pool(backend="process", workers=1, max_tasks_per_worker=1) as pool:
        assert pool.submit(R.loaded, ["sqlite3"]).result(timeout=30) == []
        importlib.import_module("sqlite3")  # the program has it now
        for _ in range(4):  # each task has a worker forked for it, during the run
            time.sleep(0.1)
            assert pool.submit(R.loaded, ["sqlite3"]).result(timeout=30) == []

    def fresh_worker() -> list[str]:
        (found,) = plait.map(R.loaded, [["sqlite3"]], backend="process", max_tasks_per_worker=1)
        return found

    assert wait_until(lambda: fresh_worker() == ["sqlite3"], 10)  # imported once it ended


def test_the_template_imports_what_a_runs_function_needs_before_it_forks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The PRELOAD modules the function's module imported, and cloudpickle for a function
    sent by value, are imported by the template before it forks the run's workers (each
    worker would import them anyway): a later worker of the same run has them too."""
    monkeypatch.delitem(sys.modules, "sqlite3", raising=False)
    monkeypatch.delitem(sys.modules, "_needs_tasks", raising=False)
    plait.shutdown()
    _template.prestart()  # a template started before the program imported sqlite3
    needs = importlib.import_module("_needs_tasks")
    with plait.Pool(backend="process", workers=1, max_tasks_per_worker=1) as pool:
        assert pool.submit(needs.sqlite_major).result(timeout=30) == 3
        assert pool.submit(lambda: 0).result(timeout=30) == 0  # by value: needs cloudpickle
        # a worker forked for this task: its function's module imports neither
        assert pool.submit(R.loaded, ["sqlite3", "cloudpickle"]).result(timeout=30) == [
            "sqlite3",
            "cloudpickle",
        ]


SHADOWED = """
import sys, time
sys.path.insert(0, sys.argv[1])
import csv  # the program's own csv.py, which shadows the standard library's
import zoneinfo  # a listed stdlib module: the template preloads it
import plait
import _reuse_tasks as R

names = ["csv", "zoneinfo"]
plait.map(R.loaded, [names], backend="process")  # the template runs, and is asked to preload
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    (found,) = plait.map(R.loaded, [names], backend="process", max_tasks_per_worker=1)
    if "zoneinfo" in found:
        break
print(" ".join(found))
"""


def test_a_module_that_shadows_the_stdlib_is_never_preloaded(tmp_path: Path) -> None:
    (tmp_path / "csv.py").write_text("MINE = True\n")
    done = subprocess.run(
        [sys.executable, "-c", SHADOWED, str(tmp_path)], env=subprocess_env(),
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zoneinfo"]  # the stdlib csv would differ from the parent's


EARLY = """
import sys
import plait
from plait._backends import _template

started_before_the_run_machinery = []
prestart = _template.prestart

def spy():
    started_before_the_run_machinery.append("plait._run" not in sys.modules)
    prestart()

_template.prestart = spy
if sys.argv[1] == "map":
    assert plait.map(abs, [-1], backend="process") == [1]
else:
    with plait.Pool(backend="process") as pool:
        assert pool.map(abs, [-1]) == [1]
print(started_before_the_run_machinery[0])
"""


@pytest.mark.parametrize("first", ["map", "Pool"])
def test_the_first_process_run_starts_the_template_before_loading_its_machinery(
    first: str,
) -> None:
    """So that the template boots while the program loads plait's run machinery (its
    benchmark: the first workers of a program, ``benchmarks/cold.py``)."""
    done = subprocess.run(
        [sys.executable, "-c", EARLY, first], env=subprocess_env(), capture_output=True,
        text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
