"""W7 side by side in one interpreter: sha256 of 200 files of 4 MiB with plait's thread backend
and joblib's threads, interleaved; medians and spread.

    PYTHONPATH=CHECKOUT/src python benchmarks/w7_threads.py [runs] [extra plait.map options]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import joblib_map
from suites_cpu import temp_files
from workloads import hash_file

import plait


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    extra: dict[str, Any] = eval(f"dict({sys.argv[2]})") if len(sys.argv) > 2 else {}
    workers = os.cpu_count() or 2
    with temp_files(200, 4) as paths:
        expected = [hash_file(p) for p in paths]  # warms the page cache
        lineup = {
            "serial": lambda: [hash_file(p) for p in paths],
            "plait thread": lambda: plait.map(hash_file, paths, backend="thread", **extra),
            "joblib threads": lambda: joblib_map(hash_file, paths, workers, "threads"),
        }
        times: dict[str, list[float]] = {name: [] for name in lineup}
        for run in lineup.values():
            assert run() == expected
        for _ in range(runs):
            for name, run in lineup.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    best = statistics.median(times["joblib threads"])
    print(f"load average {os.getloadavg()[0]:.2f}; {runs} interleaved runs; {extra or ''}")
    for name, got in times.items():
        med = statistics.median(got)
        print(f"  {name:15} {med:.3f} s [{min(got):.3f}-{max(got):.3f}]  {med / best:.2f}x joblib")


if __name__ == "__main__":
    main()
