"""A real Dask cluster for the tests: one ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (free ports, no dashboard, one thread per worker), started once per session on first
use and stopped by pid at the end. Dask's ``scheduler-address`` points at it meanwhile, so
``backend="dask"`` finds it as a user's program would.

The scheduler lets a task kill only two workers before it gives up on it (``KilledWorker``),
so the tests of a task that kills its worker stay short.

The scheduler and workers log to files in a temporary folder; when a Dask test fails, the end of
the scheduler's log is printed after the test summary (``print_logs_if_failed``), so that a
failure seen only in CI says what the cluster saw.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = str(Path(__file__).resolve().parent)
ALLOWED_FAILURES = 1  # Dask's default is 3: each death costs a worker restart (~1 s)
WORKERS = 2
LOGS = Path(tempfile.mkdtemp(prefix="plait-dask-logs-"))


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(TESTS_DIR).parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, src, env.get("PYTHONPATH")) if p)
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(ALLOWED_FAILURES)
    env["DASK_DISTRIBUTED__LOGGING__DISTRIBUTED"] = "info"  # into the log files
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def _start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
    """A Dask process in a session of its own (a nanny's worker goes with it), logging to
    ``LOGS/name.log``."""
    # made again if need be: a session that ended without a failed Dask test removed it, and
    # mutmut's fork server runs each mutant's tests after such a session, in the same process
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *command], env=cluster_env(),
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )


def start_worker(address: str) -> subprocess.Popen[bytes]:
    """A worker with a nanny: the nanny restarts the worker process if it dies."""
    return _start("workers", [
        "distributed.cli.dask_worker", address, "--nthreads", "1", "--host", "127.0.0.1",
        "--no-dashboard", "--nworkers", "1",
    ])


def start_cluster() -> DaskCluster:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start("scheduler", [
        "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
        "--no-dashboard",
    ])
    cluster = DaskCluster(address, scheduler)
    cluster.workers = [start_worker(address) for _ in range(WORKERS)]
    return cluster


def print_logs_if_failed(reporter: Any) -> None:
    """After the test summary: what the scheduler logged about clients, and its warnings and
    errors, when a Dask test failed (the logs are removed otherwise)."""
    failed = [r for r in reporter.stats.get("failed", []) if "dask" in r.nodeid]
    log = LOGS / "scheduler.log"
    if not failed or not log.exists():
        shutil.rmtree(LOGS, ignore_errors=True)
        return
    telling = [line for line in log.read_text(errors="replace").splitlines() if _tells(line)]
    reporter.write_sep("-", f"the Dask scheduler's log, its end ({log})")
    for line in telling[-40:]:
        reporter.write_line(line[:300])


def _tells(line: str) -> bool:
    if " - INFO - " in line:
        return "client" in line.lower() or "cancel" in line.lower()
    return "Received signal" not in line


def wait_for_workers(address: str, count: int, timeout: float = 60) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Client(address, timeout=5, set_as_default=False) as client:
                client.wait_for_workers(count, timeout=max(1, deadline - time.monotonic()))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the process and its group (a nanny's worker), by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def worker_pids(address: str) -> list[int]:
    """The pids of the worker processes (the nannies' children) now in the cluster."""
    from plait._backends._dask_cluster import connect

    client = connect(address)
    pids: dict[str, int] = client.run(os.getpid)
    return sorted(pids.values())


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    """The session's cluster; plait's backend="dask" finds it through Dask's configuration."""
    import dask
    from conftest import SESSION_CHILDREN

    import plait
    from plait._backends import _dask_cluster

    cluster = start_cluster()
    SESSION_CHILDREN.update(p.pid for p in [cluster.scheduler, *cluster.workers])
    try:
        wait_for_workers(cluster.address, WORKERS)
        with dask.config.set({"scheduler-address": cluster.address}):
            # Warm up: the Client's threads (its loop, Dask's offload thread) start here, once,
            # not inside the first test that uses the cluster.
            assert plait.map(abs, [-1, -2], backend="dask") == [1, 2]
            yield cluster
            _dask_cluster.close_all()
    finally:
        for process in [*cluster.workers, cluster.scheduler]:
            stop(process)
