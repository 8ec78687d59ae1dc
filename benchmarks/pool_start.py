"""A later private ``plait.Pool(backend="process", workers=N)``: start, one map of N tiny
calls, shutdown; with a function of a module the workers must import (``workloads.tiny``:
it imports asyncio) and with a builtin (``abs``: nothing to import). Medians and spread.

    PYTHONPATH=CHECKOUT/src python benchmarks/pool_start.py
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import tiny

import plait


def private_pool(fn: Callable[[Any], Any], workers: int) -> float:
    start = time.perf_counter()
    with plait.Pool(backend="process", workers=workers) as pool:
        pool.map(fn, [1] * workers)
    return (time.perf_counter() - start) * 1000


def mp_fork(fn: Callable[[Any], Any], workers: int) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(fn, [1] * workers)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    plait.map(tiny, [1, 1], backend="process", workers=2, chunksize=1)  # the template runs
    print(f"load average {os.getloadavg()[0]:.2f}; 9 runs each")
    for label, run, fn in (
        ("plait.Pool, workloads.tiny", private_pool, tiny),
        ("plait.Pool, abs", private_pool, abs),
        ("mp.Pool fork, workloads.tiny", mp_fork, tiny),
    ):
        got = [run(fn, 2) for _ in range(9)]
        med = statistics.median(got)
        print(f"  {label:30} {med:6.1f} ms [{min(got):.1f}-{max(got):.1f}]")


if __name__ == "__main__":
    main()
