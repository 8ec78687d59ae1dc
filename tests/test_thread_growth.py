"""The thread backend starts threads past the core count only while a core is idle
(_backends/_growth.py), and never lets tasks that wait for one another stall for want of one."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

import plait
from plait._backends import _growth, cpu_count

BLOB = bytes(8 << 20)  # hashing it releases the GIL for a few ms


def _spin_until_all_run(item: tuple[threading.Barrier, list[int], threading.Lock]) -> str:
    """Keep a core busy with the GIL released (hashing) until every task of the run has
    started: the pool must start one thread per task although its cores are full."""
    barrier, started, lock = item
    with lock:
        started[0] += 1
    deadline = time.monotonic() + 20
    while started[0] < barrier.parties and time.monotonic() < deadline:
        hashlib.sha256(BLOB).digest()
    barrier.wait(timeout=20)  # raises BrokenBarrierError if they never all ran at once
    return threading.current_thread().name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("always_busy", [False, True], ids=["measured", "cores-always-busy"])
def test_tasks_that_keep_the_cores_busy_until_all_run_never_stall(
    always_busy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if always_busy:  # as on a machine whose cores these tasks fill: only the stall check grows
        monkeypatch.setattr(_growth, "_IDLE", -1.0)
        monkeypatch.setattr(_growth, "_FREE", 1e9)
    n = cpu_count() + 3
    barrier, lock = threading.Barrier(n), threading.Lock()
    items = [(barrier, counter, lock) for counter in [[0]] for _ in range(n)]
    names = plait.map(_spin_until_all_run, items, backend="thread", workers=n, chunksize=1)
    assert len(set(names)) == n


def _wait_for_all(item: tuple[threading.Barrier, int]) -> int:
    barrier, i = item
    barrier.wait(timeout=20)
    return i


@pytest.mark.timeout(60)
def test_tasks_that_wait_get_every_thread() -> None:
    n = 4 * cpu_count() + 1
    barrier = threading.Barrier(n)
    items = [(barrier, i) for i in range(n)]
    assert plait.map(_wait_for_all, items, backend="thread", workers=n, chunksize=1) == list(
        range(n)
    )


def _hash_and_name(_: int) -> str:
    hashlib.sha256(BLOB[: 2 << 20]).digest()
    return threading.current_thread().name


def _cores_we_get() -> float:
    """The cores this process gets now for GIL-releasing hashing on one thread per core."""
    stop = time.monotonic() + 0.2

    def hash_until() -> None:
        while time.monotonic() < stop:
            hashlib.sha256(BLOB[: 1 << 20]).digest()

    threads = [threading.Thread(target=hash_until) for _ in range(cpu_count())]
    wall, cpu = time.monotonic(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.process_time() - cpu) / (time.monotonic() - wall)


@pytest.mark.timeout(60)
def test_calls_that_fill_the_cores_run_on_about_one_thread_per_core() -> None:
    if _cores_we_get() < 0.9 * cpu_count():
        pytest.skip("the machine is too busy to give this process all its cores now")
    names = plait.map(_hash_and_name, range(200), backend="thread", workers=32, chunksize=1)
    assert len(set(names)) < 16, f"{len(set(names))} threads for calls that filled the cores"
