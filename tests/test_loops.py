"""plait's own event loops run on uvloop where it is installed (plait[fast]); a caller's loop
is never replaced; PLAIT_UVLOOP=0 and a missing uvloop keep asyncio's loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from conftest import subprocess_env

import plait

pytestmark = pytest.mark.timeout(60)
uvloop = pytest.importorskip("uvloop")  # in the dev extra: CI always has it


async def loop_module(_: object) -> str:
    return type(asyncio.get_running_loop()).__module__


def test_plait_map_runs_coroutines_on_uvloop() -> None:
    assert set(plait.map(loop_module, range(4), backend="asyncio")) == {"uvloop"}
    assert set(plait.map(loop_module, range(4))) == {"uvloop"}  # auto picks asyncio for them


def test_a_pools_submitted_coroutines_run_on_uvloop() -> None:
    with plait.Pool(backend="asyncio", workers=2) as pool:
        assert pool.submit(loop_module, 0).result(timeout=10) == "uvloop"


def test_amap_keeps_the_callers_loop() -> None:
    async def main() -> tuple[asyncio.AbstractEventLoop, list[bool]]:
        mine = asyncio.get_running_loop()

        async def same_loop(_: object) -> bool:
            return asyncio.get_running_loop() is mine

        return mine, [x async for x in plait.amap(same_loop, range(4), backend="asyncio")]

    loop, seen = asyncio.run(main())
    assert type(loop).__module__.startswith("asyncio") and seen == [True] * 4


SCRIPT = """
import asyncio, sys
{prelude}
import plait

async def loop_module(_):
    return type(asyncio.get_running_loop()).__module__

print(*set(plait.map(loop_module, range(3), backend="asyncio")))
"""


def run_script(prelude: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(prelude=prelude)],
        env=dict(subprocess_env(), **env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_plait_uvloop_0_keeps_asyncios_loop() -> None:
    assert run_script("", PLAIT_UVLOOP="0").startswith("asyncio")
    assert run_script("", PLAIT_UVLOOP="1") == "uvloop"


def test_without_uvloop_plait_runs_on_asyncios_loop() -> None:
    assert run_script("sys.modules['uvloop'] = None  # as if not installed").startswith("asyncio")


def test_runs_on_threads_and_processes_do_not_import_uvloop() -> None:
    """Their loop only hands out chunks: importing uvloop would only slow the first call."""
    check = (
        "import sys, plait\n"
        "assert plait.map(abs, [-1] * 50, backend='thread') == [1] * 50\n"
        "assert plait.map(abs, [-1] * 4, backend='process') == [1] * 4\n"
        "print('uvloop' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], env=subprocess_env(), capture_output=True, text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


async def echo_in_a_subprocess(i: int) -> tuple[str, int | None]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"print({i})", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    return out.decode().strip(), child.returncode


def test_coroutines_start_subprocesses_on_plaits_loop_thread() -> None:
    """uvloop watches children its own way, from a loop that is not in the main thread."""
    assert plait.map(echo_in_a_subprocess, range(3), backend="asyncio") == [
        ("0", 0), ("1", 0), ("2", 0),
    ]
