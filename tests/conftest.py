"""Shared fixtures: the backend matrix and a leak check that every test runs under.

``tests/`` goes on ``sys.path`` so ``import _tasks`` works here and in worker processes
(they receive the parent's ``sys.path``).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from plait._backends import NAMES, _reuse, _template

if TYPE_CHECKING:
    from http_server import Server

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

BACKENDS = NAMES  # every registered backend runs the conformance suite
LOOP_THREAD = "plait-loop"
LEAK_GRACE_S = 1.0
SESSION_CHILDREN: set[int] = set()  # started once for the session (the Dask cluster): not leaks
IDLE_REAPER = "plait-idle-workers"  # ends the shared idle workers; gone with plait.shutdown()

# A shell that starts the suite in the background (`./dev test &`) ignores SIGINT, and programs
# the tests start would inherit that and never see the Ctrl-C the tests send them. A handler
# (unlike SIG_IGN) is reset at exec, so each child starts with Python's own.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --- processes and threads, read from the system -------------------------------------------


def process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z...), or None if it no longer exists."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped) does not count."""
    return process_state(pid) not in (None, "Z", "X")


def children(pid: int | None = None) -> set[int]:
    """The direct children of a process (default: this one, less the session's Dask cluster),
    zombies included. plait's template process (it forks the process workers) stands for its
    children: the workers count as ours."""
    if pid is None:
        template = _template.pid()
        found = direct_children(os.getpid())
        if template in found:
            found = (found - {template}) | direct_children(template)
        return found - SESSION_CHILDREN
    return direct_children(pid)


def direct_children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.update(int(p) for p in handle.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def pool_threads() -> set[threading.Thread]:
    """plait's pool threads; the one persistent loop thread is allowed."""
    return {
        t for t in threading.enumerate() if t.name.startswith("plait-") and t.name != LOOP_THREAD
    }


def non_daemon_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()}


def wait_until(condition, timeout: float, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def finishes_meanwhile(call: Any, limit_s: float = 20.0) -> bool:
    """True if ``call()`` returns within ``limit_s`` (it runs in a helper thread)."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(limit_s)


def leaks(before_threads: set[threading.Thread], before_children: set[int]) -> list[str]:
    """What was left behind since the snapshot, described for an assertion message."""
    found = []
    threads = (pool_threads() | non_daemon_threads()) - before_threads
    threads = {t for t in threads if t.name != IDLE_REAPER}
    if threads:
        found.append(f"threads left running: {sorted(t.name for t in threads)}")
    kids = children() - before_children - _reuse.idle_pids()  # plait.map's shared idle workers
    if kids:
        described = {pid: process_state(pid) for pid in sorted(kids)}
        found.append(f"child processes left (pid: state): {described}")
    return found


def assert_no_leaks_now(
    before_threads: set[threading.Thread] | None = None, before_children: set[int] | None = None
) -> None:
    """Strict: nothing left at this very moment (no grace period)."""
    problems = leaks(before_threads or set(), before_children or set())
    assert not problems, "; ".join(problems)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test: no new pool/non-daemon threads and no child processes left at the end."""
    before_threads = pool_threads() | non_daemon_threads()
    before_children = children()
    yield
    gc.collect()  # objects that warn when collected (unclosed loops, sockets) warn in this test
    _reuse.release()  # plait.map's shared idle workers are allowed; each test starts without
    wait_until(lambda: not leaks(before_threads, before_children), LEAK_GRACE_S)
    problems = leaks(before_threads, before_children)
    if problems:
        for pid in children() - before_children:  # started by this test: do not poison the next
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        pytest.fail("leak after test: " + "; ".join(problems), pytrace=False)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "dask":  # runs on the session's real cluster (tests/_dask_cluster.py)
        request.getfixturevalue("dask_cluster")
    return str(request.param)


def subprocess_env() -> dict[str, str]:
    """Environment for child scripts: they import plait and _tasks like the tests do."""
    env = dict(os.environ)
    src = str(Path(TESTS_DIR).parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, src, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A real aiohttp test server on 127.0.0.1 (tests/http_server.py), one per test module."""
    from http_server import Server

    with Server() as running:
        yield running


from _dask_cluster import dask_cluster, print_logs_if_failed  # noqa: E402, F401 - the session's Dask cluster fixture


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_logs_if_failed(terminalreporter)  # the cluster's view when a Dask test failed
