"""Ctrl-C stops everything within about two seconds: every API, every backend that runs tasks
concurrently, also while the input blocks. The program runs as a real child process and gets
a real SIGINT once its tasks have started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import pid_alive, subprocess_env, wait_until

SCRIPT = """
import asyncio, itertools, os, sys, threading, time
import plait

folder = sys.argv[1]

def started(x):
    open(os.path.join(folder, f"{{os.getpid()}}-{{x}}"), "w").close()

def block(x):
    started(x)
    time.sleep(30)
    return x

async def ablock(x):
    started(x)
    await asyncio.sleep(30)
    return x

def items():
    yield from range(2)
    threading.Event().wait(60)  # the input blocks too: more never comes
    yield 2

fn = ablock if "{backend}" == "asyncio" else block
options = dict(backend="{backend}", workers=2, chunksize=1)

if "{api}" == "map":
    plait.map(fn, items(), **options)
elif "{api}" == "imap":
    for _ in plait.imap(fn, items(), **options):
        pass
else:
    async def main():
        async for _ in plait.amap(fn, items(), **options):
            pass
    asyncio.run(main())
print("the run returned", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["map", "imap", "amap"])
@pytest.mark.parametrize("backend", ["thread", "process", "asyncio"])
def test_ctrl_c_stops_every_api_within_two_seconds(tmp_path: Path, api: str, backend: str) -> None:
    output = _interrupt_once_started(tmp_path, SCRIPT.format(api=api, backend=backend))
    assert "the run returned" not in output


UNSHUT = """
import os, sys, time, plait

folder = sys.argv[1]

def block(x):
    open(os.path.join(folder, f"{{os.getpid()}}-{{x}}"), "w").close()
    time.sleep(30)
    return x

pool = {make}  # never shut down: at exit, Ctrl-C must not wait for its running tasks
futures = [pool.submit(block, i) for i in range(2)]
print([f.result() for f in futures], flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "make",
    [
        'plait.Pool(backend="process", workers=2)',
        'plait.Pool(backend="thread", workers=2)',
        "plait.ProcessPoolExecutor(2)",
        "plait.ThreadPoolExecutor(2)",
    ],
)
def test_ctrl_c_with_a_pool_nobody_shut_down_stops_its_running_tasks(
    tmp_path: Path, make: str
) -> None:
    _interrupt_once_started(tmp_path, UNSHUT.format(make=make))


def _interrupt_once_started(tmp_path: Path, source: str) -> str:
    """Run ``source`` as a program, Ctrl-C it once two tasks have started, and check that it
    stops within 2.5 s with a KeyboardInterrupt and leaves no worker; return its output."""
    folder = tmp_path / "started"
    folder.mkdir()
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    with open(tmp_path / "output.txt", "wb") as log:  # a file: workers inherit it, not a pipe
        process = subprocess.Popen(
            [sys.executable, str(script), str(folder)],
            stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(),
        )
    workers: set[int] = set()
    try:
        if not wait_until(lambda: len(list(folder.iterdir())) >= 2, 30):
            pytest.fail("the tasks never started:\n" + (tmp_path / "output.txt").read_text())
        workers = {int(p.name.split("-")[0]) for p in folder.iterdir()} - {process.pid}
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the program did not stop within 15 s of Ctrl-C")
        elapsed = time.monotonic() - started
        output = (tmp_path / "output.txt").read_text()
        assert "KeyboardInterrupt" in output, output
        assert elapsed < 2.5, f"Ctrl-C took {elapsed:.1f} s"
        assert wait_until(lambda: not any(pid_alive(pid) for pid in workers), 2.0), workers
        return output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in workers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
