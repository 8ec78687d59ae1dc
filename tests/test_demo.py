"""``plait demo``: end to end as a user runs it, and its parts (server, files, report)."""

from __future__ import annotations

import os
import re
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
    assert_consistent(out)


def assert_consistent(out: str) -> None:
    """Auto's row, the rows marked as its choice and the checked table tell one story."""
    lines = out.splitlines()
    table = lines[lines.index("The guide's table, checked here:") + 4:]
    for title in ("Many API calls", "Reading large files", "CPU-heavy computations"):
        start = next(i for i, line in enumerate(lines) if line.startswith(title + ":"))
        block = lines[start + 1: lines.index("", start)]
        label = re.search(r"plait auto \(chose (.*?)\)", "\n".join(block))
        assert label is not None, block
        chosen = table[[row.startswith(title) for row in table].index(True)].split("  ")[-1]
        marked = [line for line in block if "<- auto's choice" in line]
        if "x," in label.group(1) or label.group(1).endswith("x"):  # runs chose differently
            assert chosen.strip() == label.group(1) and len(marked) >= 2
            assert all(" of " in line for line in marked)
        else:
            assert label.group(1).split(" x ")[0] == chosen.strip()
            assert len(marked) <= 1 and not any(" runs" in line for line in marked)


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


def cpu_scenario(*chosen: str, auto_s: float = 0.55) -> _demo.Scenario:
    scenario = _demo.Scenario("CPU-heavy computations", "8 loops", "processes")
    scenario.rows = [
        _demo.Row("processes", "process", 0.5, workers=2),
        _demo.Row("threads", "thread", 1.0, workers=32),
        _demo.Row("one after another", "inline", 1.0, "a note", workers=1),
    ]
    scenario.decisions = [Decision(backend, 2, None, f"{backend} because.") for backend in chosen]
    scenario.auto = _demo.Row(_demo._auto_label(scenario.decisions), "auto", auto_s)
    return scenario


def test_the_report_marks_the_fastest_and_autos_choice() -> None:
    scenario = cpu_scenario("process")
    skipped = _demo.Scenario("Many API calls", "GETs", "asyncio + aiohttp", skipped="no aiohttp")
    text = _demo.report([scenario, skipped], _demo.QUICK, load=99.0)
    assert "Note: the load average was 99.0" in text
    assert "  processes" in text and "500 ms" in text and "1.0x  <- auto's choice" in text
    assert "2.0x  a note" in text and "1.1x" in text
    assert "plait auto (chose process x 2)" in text
    assert "skipped: no aiohttp" in text
    assert "CPU-heavy computations  processes          processes     process" in text
    assert "- CPU-heavy computations: process x 2. process because." in text
    assert "a guide to threads, processes and asyncio in Python" in text
    assert "noisy" not in text.split("Approach")[1]


def test_runs_that_chose_differently_are_all_shown_never_one_for_all() -> None:
    scenario = cpu_scenario("thread", "process", "thread")
    text = _demo.report([scenario], _demo.FULL)
    assert "plait auto (chose thread 2x, process 1x)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert rows["processes"].endswith("1.0x  <- auto's choice in 1 of 3 runs")
    assert rows["threads"].endswith("2.0x  <- auto's choice in 2 of 3 runs")
    assert "noisy" not in rows["plait"]  # runs differed: no single row to compare with
    assert "- CPU-heavy computations (2 of 3 runs): thread x 2. thread because." in text
    assert "- CPU-heavy computations (1 of 3 runs): process x 2. process because." in text
    table = next(line for line in text.splitlines() if line.startswith("CPU-heavy computations "))
    assert table.endswith("thread 2x, process 1x")


def test_autos_time_far_from_its_chosen_row_is_called_noisy() -> None:
    text = _demo.report([cpu_scenario("process", auto_s=0.2)], _demo.QUICK)
    auto_row = next(line for line in text.splitlines() if "plait auto" in line)
    assert auto_row.endswith("far from the 'processes' row: noisy times")
    other_workers = cpu_scenario("thread", auto_s=0.2)  # 2 threads, the row ran 32: no match
    text = _demo.report([other_workers], _demo.QUICK)
    assert "noisy" not in next(line for line in text.splitlines() if "plait auto" in line)


def test_no_line_of_the_report_overflows_its_columns() -> None:
    long = _demo.Scenario("Many API calls", "GETs", "asyncio + aiohttp")
    long.rows = [_demo.Row("plait.http.fetch_all (aiohttp), 100 at once and then some", "http",
                           0.1)]
    long.decisions = [Decision("asyncio", 100, None, "word " * 60)]
    text = _demo.report([long, cpu_scenario("process")], _demo.QUICK, load=99.0)
    lines = text.splitlines()
    table = lines[lines.index("The guide's table, checked here:") + 2:][:4]
    starts = [m.start() for m in re.finditer(r"-+", table[1])]
    for row in (table[0], table[2], table[3]):
        for start in starts[1:]:
            assert row[start - 1] == " ", (row, start)  # every cell ends before the next column
    why = lines[lines.index("Why auto chose what it chose:") + 1:]
    assert all(len(line) <= _demo.WIDTH for line in why), why
    assert all(len(line) <= _demo.WIDTH for line in lines[:3])


def test_the_tasks() -> None:
    assert _demo.cpu_task(10) == sum(i * i % 7 for i in range(10))
    assert _demo.background_job(0.05) >= 1
    assert _demo.calibrate(0.001) >= 1
