"""W4 side by side in one interpreter: plait.map and plait.amap of 20k one-turn coroutines,
interleaved; medians and spread. ``PYTHONPATH=CHECKOUT/src python benchmarks/w4_amap.py [runs]``."""

import asyncio, sys, time, statistics
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from workloads import async_noop
import plait
N = 20_000
def m():
    plait.map(async_noop, range(N), backend="asyncio", workers=100)
def a():
    async def run():
        return [x async for x in plait.amap(async_noop, range(N), backend="asyncio", workers=100)]
    asyncio.run(run())
m(); a()
tm, ta = [], []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 9):
    t = time.perf_counter(); m(); tm.append(time.perf_counter() - t)
    t = time.perf_counter(); a(); ta.append(time.perf_counter() - t)
mm, ma = statistics.median(tm), statistics.median(ta)
print(f"map {mm:.3f} [{min(tm):.3f}-{max(tm):.3f}]  amap {ma:.3f} [{min(ta):.3f}-{max(ta):.3f}]  ratio {ma/mm:.2f}")
