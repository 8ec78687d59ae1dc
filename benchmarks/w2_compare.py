"""W2 repeated, interleaved in one process: the serial loop, ``plait.map`` (process and auto),
a warm ``plait.Pool`` and joblib, round after round, so that load falls on all alike.

    LOOPS=378142 .venv/bin/python benchmarks/w2_compare.py [ROUNDS]

The limit is the serial loop's median / 2 (2 cores). LOOPS fixes the call's size (~12 ms here);
without it, ``calibrate_spin`` picks one.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import joblib
from workloads import calibrate_spin, spin

import plait


def main(rounds: int) -> None:
    loops = int(os.environ.get("LOOPS") or calibrate_spin(0.012))
    items = [loops] * 64
    pool = plait.Pool(backend="process", workers=2)
    contenders: dict[str, Callable[[], Any]] = {
        "serial": lambda: [spin(x) for x in items],
        "plait.map process": lambda: plait.map(spin, items, backend="process"),
        "plait.map auto": lambda: plait.map(spin, items),
        "plait.Pool warm": lambda: pool.map(spin, items),
        "joblib": lambda: joblib.Parallel(n_jobs=2)(joblib.delayed(spin)(x) for x in items),
    }
    for run in contenders.values():
        run()  # warm-up: workers started, the auto trial made
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    pool.shutdown()
    limit = statistics.median(times["serial"]) / 2
    joblib_s = statistics.median(times["joblib"])
    for name, runs in times.items():
        runs.sort()
        median = statistics.median(runs)
        quartiles = f"{runs[len(runs) // 4] * 1000:.1f}-{runs[3 * len(runs) // 4] * 1000:.1f}"
        print(f"{name:18} {median * 1000:6.1f} ms  q1-q3 {quartiles}  "
              f"x{median / limit:.3f} limit  x{median / joblib_s:.3f} joblib")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
