"""W4 side by side in one interpreter: plait.map and plait.amap of 20k one-turn coroutines,
interleaved; medians and spread.

    PYTHONPATH=CHECKOUT/src python benchmarks/w4_amap.py [runs]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import async_noop

import plait

N = 20_000


def by_map() -> None:
    plait.map(async_noop, range(N), backend="asyncio", workers=100)


def by_amap() -> None:
    async def run() -> list[int]:
        return [x async for x in plait.amap(async_noop, range(N), backend="asyncio", workers=100)]

    asyncio.run(run())


def timed(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    by_map()
    by_amap()
    tm, ta = [], []
    for _ in range(runs):
        tm.append(timed(by_map))
        ta.append(timed(by_amap))
    mm, ma = statistics.median(tm), statistics.median(ta)
    print(
        f"load {os.getloadavg()[0]:.2f}: map {mm:.3f} [{min(tm):.3f}-{max(tm):.3f}]  "
        f"amap {ma:.3f} [{min(ta):.3f}-{max(ta):.3f}]  amap/map {ma / mm:.2f}"
    )


if __name__ == "__main__":
    main()
