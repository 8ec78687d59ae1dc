"""COLD: the first call of a fresh program, each measurement in a new interpreter.

The repeated-call suites time calls in one long-lived process, where joblib's loky workers and
plait's shared workers are already running. A program that makes one call pays the start-up
too: here each run is ``cold_child.py`` in a subprocess, which imports its library and times
only its first call (imports excluded). START is the cost of the first ``cores()`` workers (one
tiny task each); ``@2`` rows time a second call after a first one (shared workers, a later
private pool forked from the template).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import Goal, Report, Sizes, Timing, cores, goal_le, has_module, ratio_table
from workloads import calibrate_spin

CHILD = str(Path(__file__).resolve().parent / "cold_child.py")
LINEUPS = {
    "START": [
        "plait process",
        "multiprocessing.Pool (forkserver)",
        "multiprocessing.Pool (fork)",
        "ProcessPoolExecutor",
        "plait.Pool process @2",
        "plait process @2",
    ],
    "W2": [
        "serial",
        "plait process",
        "plait auto",
        "joblib (loky)",
        "multiprocessing.Pool (fork)",
        "ProcessPoolExecutor",
    ],
    "W1": [
        "serial",
        "plait process",
        "plait auto",
        "multiprocessing.Pool (fork)",
        "ProcessPoolExecutor chunksize=1000",
        "joblib (loky)",
    ],
}


def run_child(name: str, workload: str, loops: int) -> float:
    done = subprocess.run(
        [sys.executable, CHILD, name, workload, str(loops)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=dict(os.environ),
    )
    return float(done.stdout.split()[-1])


def measure_cold(workload: str, loops: int, repeat: int) -> dict[str, Timing]:
    names = [n for n in LINEUPS[workload] if "joblib" not in n or has_module("joblib")]
    timings = {n: Timing(n, "plait" if "plait" in n else "peer") for n in names}
    if workload == "W2":
        timings["serial"].role = "baseline"
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            try:
                timings[name].times.append(run_child(name, workload, loops))
            except (subprocess.SubprocessError, ValueError) as exc:
                timings[name].error = f"failed: {type(exc).__name__}"[:120]
        print(f"  {workload} cold round {round_ + 1}/{repeat} done", file=sys.stderr, flush=True)
    return timings


def cold(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    loops = calibrate_spin(sizes.cpu_call_s)
    repeat = max(repeat, 5)
    report.section("COLD: the first call of a fresh interpreter", (__doc__ or "").split("\n\n")[1])
    results = {}
    for workload in LINEUPS:
        timings = measure_cold(workload, loops, repeat)
        results[workload] = timings
        serial = timings.get("serial")
        limit = None
        if serial is not None and serial.median is not None:
            limit = serial.median / cores() if workload == "W2" else serial.median
        report.add("", f"### {workload} cold", "", *ratio_table(timings, limit))
    return _goals(results, loops)


def _median(timings: dict[str, Timing], name: str) -> float | None:
    timing = timings.get(name)
    return None if timing is None else timing.median


def _goals(results: dict[str, dict[str, Timing]], loops: int) -> list[Goal]:
    start, w2 = results["START"], results["W2"]
    first = _median(start, "plait process")
    forkserver = _median(start, "multiprocessing.Pool (forkserver)")
    later = _median(start, "plait.Pool process @2")
    fork = _median(start, "multiprocessing.Pool (fork)")
    serial = _median(w2, "serial")
    limit = None if serial is None else serial / cores()
    mine, joblib = _median(w2, "plait process"), _median(w2, "joblib (loky)")
    return [
        goal_le(
            "first workers ≤ 0.6 x mp forkserver",
            first,
            _times(forkserver, 0.6),
            f"plait {_ms(first)} vs forkserver {_ms(forkserver)}",
        ),
        goal_le(
            "later private Pool ≤ 1.5 x mp.Pool (fork)",
            later,
            _times(fork, 1.5),
            f"plait.Pool {_ms(later)} vs mp.Pool fork {_ms(fork)}",
        ),
        goal_le(
            "W2 cold ≤ 1.15 x limit",
            mine,
            _times(limit, 1.15),
            f"plait {_ms(mine)} vs limit {_ms(limit)}",
        ),
        goal_le(
            "W2 cold ≤ joblib's first call",
            mine,
            joblib,
            f"plait {_ms(mine)} vs joblib {_ms(joblib)}",
        ),
    ]


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"
