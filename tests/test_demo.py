"""``plait demo``: end to end as a user runs it, and its parts (server, files, report)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from conftest import children, subprocess_env

from plait import Decision, _demo


def test_demo_quick_runs_the_four_scenarios_and_marks_autos_choice() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plait", "demo", "--quick"], capture_output=True, text=True,
        timeout=120, env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for scenario in ("Many API calls", "Reading large files", "CPU-heavy computations",
                     "Background tasks"):
        assert out.count(scenario) >= 3, out  # its rows, the checked table, auto's reason
    for approach in ("asyncio + aiohttp", "threads + urllib", "processes", "threads",
                     "one after another", "Pool(backend='thread').submit"):
        assert approach in out
    assert "<- auto's choice" in out and "The guide's table, checked here" in out
    api_row = next(line for line in out.splitlines() if line.startswith("Many API calls "))
    assert api_row.split()[-1] == "asyncio"  # the guide's choice, made by auto
    background = next(line for line in out.splitlines() if line.startswith("Background tasks "))
    assert background.split()[-1] == "thread"
    assert "Traceback" not in result.stderr


def test_the_api_server_answers_and_stops() -> None:
    before = children()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with _demo.api_server(0.0) as base:
        (server,) = children() - before  # the server is a child process of its own
        with opener.open(f"{base}/item/7", timeout=10) as response:
            assert b'"id": "7"' in response.read()
    assert server not in children()  # it has exited and was reaped
    with pytest.raises(urllib.error.URLError, match="refused"):
        opener.open(f"{base}/item/8", timeout=10)


def test_the_large_files_are_removed_afterwards() -> None:
    with _demo.large_files(3, 1) as paths:
        assert [os.path.getsize(p) for p in paths] == [(1 << 20) + 8] * 3
        hashes = {_demo.sha256_file(p) for p in paths}
        assert len(hashes) == 3  # the files differ
    assert not any(os.path.exists(p) for p in paths)
    assert not os.path.exists(os.path.dirname(paths[0]))


def test_the_report_marks_the_fastest_and_autos_choice() -> None:
    scenario = _demo.Scenario("CPU-heavy computations", "8 loops", "processes")
    scenario.rows = [
        _demo.Row("processes", "process", 0.5),
        _demo.Row("threads", "thread", 1.0),
        _demo.Row("one after another", "inline", 1.0, "a note"),
    ]
    scenario.auto = _demo.Row("plait auto (chose process)", "auto", 0.55)
    scenario.decision = Decision("process", 2, None, "The first 4 calls took 12.0 ms each.")
    skipped = _demo.Scenario("Many API calls", "GETs", "asyncio + aiohttp", skipped="no aiohttp")
    text = _demo.report([scenario, skipped], _demo.QUICK, load=99.0)
    assert "Note: the load average was 99.0" in text
    assert "  processes" in text and "500 ms" in text and "1.0x  <- auto's choice" in text
    assert "2.0x  a note" in text and "1.1x" in text
    assert "skipped: no aiohttp" in text
    assert "CPU-heavy computations   processes           processes" in text
    assert "- CPU-heavy computations: process x 2. The first 4 calls took 12.0 ms each." in text


def test_the_tasks() -> None:
    assert _demo.cpu_task(10) == sum(i * i % 7 for i in range(10))
    assert _demo.background_job(0.05) >= 1
    assert _demo.calibrate(0.001) >= 1
