"""W3 sleep (blocking I/O in threads) and W4 async (many coroutine calls, 1,000 at once)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterable, Callable
from functools import partial
from typing import Any

import peers
from harness import Goal, Lineup, Report, Sizes, Timing, goal_ge, goal_le, measure, ratio_table
from peers import plait_map
from suites_cpu import _s, median
from workloads import async_noop, nap

import plait


def w3_sleep(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    n, at_once, pause = sizes.sleep_calls, sizes.sleep_concurrency, sizes.sleep_s
    items = [pause] * n
    lineup = Lineup()
    lineup.plait(
        f"plait thread workers={at_once}",
        partial(plait_map, nap, items, backend="thread", workers=at_once),
    )
    lineup.plait("plait thread, default workers", partial(plait_map, nap, items, backend="thread"))
    lineup.plait("plait auto", partial(plait_map, nap, items, backend="auto"))
    lineup.add(
        f"ThreadPoolExecutor({at_once})", partial(peers.thread_pool_executor, nap, items, at_once)
    )
    lineup.add(
        "ThreadPoolExecutor() default workers", partial(peers.thread_pool_executor, nap, items)
    )
    lineup.add(
        f"multiprocessing ThreadPool({at_once})",
        partial(peers.mp_thread_pool_map, nap, items, at_once),
    )
    joblib_threads = partial(peers.joblib_map, nap, items, at_once, "threads")
    lineup.add(f"joblib threads n_jobs={at_once}", joblib_threads, needs="joblib")
    mpire_threads = partial(peers.mpire_map, nap, items, at_once, True)
    lineup.add(f"mpire threading n_jobs={at_once}", mpire_threads, needs="mpire")
    lineup.skip(
        "serial loop", f"it takes {n} x {pause * 1000:.0f} ms = {n * pause:.0f} s by construction"
    )
    limit = n * pause / at_once
    report.section(
        f"W3 sleep: {n} calls of time.sleep({pause})",
        f"Limit: {n} x {pause * 1000:.0f} ms / {at_once} at once = {limit:.3f} s.",
        "",
    )
    lineup.explain_auto(nap, items)
    timings = measure(lineup, repeat, check=lambda r: r == items, hang_s=sizes.hang_s)
    report.add(*ratio_table(timings, limit))
    report.notes(lineup.notes)
    return []


async def _sequential(n: int) -> list[int]:
    return [await async_noop(x) for x in range(n)]


def raw_stepping(n: int) -> list[int]:
    return asyncio.run(_sequential(n))


async def _gather(n: int, at_once: int) -> list[int]:
    semaphore = asyncio.Semaphore(at_once)

    async def one(x: int) -> int:
        async with semaphore:
            return await async_noop(x)

    return await asyncio.gather(*(one(x) for x in range(n)))


def gather_semaphore(n: int, at_once: int) -> list[int]:
    return asyncio.run(_gather(n, at_once))


async def _collect(results: AsyncIterable[Any]) -> list[Any]:
    return [r async for r in results]


def plait_amap(n: int, at_once: int) -> list[int]:
    return asyncio.run(
        _collect(plait.amap(async_noop, range(n), backend="asyncio", workers=at_once))
    )


def aiometer_run_all(n: int, at_once: int) -> list[int]:
    import aiometer

    jobs = [partial(async_noop, x) for x in range(n)]
    return asyncio.run(aiometer.run_all(jobs, max_at_once=at_once))


async def _aiometer_amap(n: int, at_once: int) -> list[int]:
    import aiometer

    async with aiometer.amap(async_noop, range(n), max_at_once=at_once) as results:
        return await _collect(results)


def aiometer_amap(n: int, at_once: int) -> list[int]:
    return asyncio.run(_aiometer_amap(n, at_once))


def traced_peak_mb(run: Callable[[], object]) -> float:
    """Peak memory that Python allocated during one run, in MB (results included)."""
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def w4_async(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    n, at_once = sizes.async_calls, sizes.async_at_once
    expected = list(range(n))
    limit_name = "one coroutine awaiting each call in turn"
    gather_name = f"asyncio.gather + Semaphore({at_once})"
    map_name, amap_name = f"plait.map asyncio workers={at_once}", f"plait.amap workers={at_once}"
    lineup = Lineup()
    lineup.add(limit_name, partial(raw_stepping, n))
    lineup.plait(amap_name, partial(plait_amap, n, at_once))
    lineup.plait(
        map_name, partial(plait_map, async_noop, range(n), backend="asyncio", workers=at_once)
    )
    lineup.plait("plait.map auto", partial(plait_map, async_noop, range(n), backend="auto"))
    lineup.add(gather_name, partial(gather_semaphore, n, at_once))
    lineup.add(
        f"aiometer.run_all max_at_once={at_once}",
        partial(aiometer_run_all, n, at_once),
        needs="aiometer",
    )
    lineup.add(
        f"aiometer.amap max_at_once={at_once}", partial(aiometer_amap, n, at_once), needs="aiometer"
    )
    report.section(
        f"W4 async: {n:,} coroutine calls (await asyncio.sleep(0)), at most {at_once:,} at once",
        "Limit: raw coroutine stepping, one coroutine awaiting each call in turn.",
        "",
    )
    lineup.explain_auto(async_noop, range(n))
    timings = measure(
        lineup,
        repeat,
        check=lambda r: isinstance(r, list) and sorted(r) == expected,
        hang_s=sizes.hang_s,
    )
    report.add(*ratio_table(timings, median(timings, limit_name)))
    report.notes(lineup.notes)
    memory = _memory(
        report, {c.name: c.run for c in lineup.contenders if c.name != "plait.map auto"}
    )
    return _w4_goals(timings, memory, gather_name, (map_name, amap_name))


def _memory(report: Report, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    report.add("", "Peak memory allocated during one run (tracemalloc, results included):", "")
    report.add("| contender | peak MB |", "|---|---:|")
    peaks = {name: traced_peak_mb(run) for name, run in runs.items()}
    for name, peak in sorted(peaks.items(), key=lambda item: item[1]):
        report.add(f"| {name} | {peak:.1f} |")
    return peaks


def _w4_goals(
    timings: dict[str, Timing],
    memory: dict[str, float],
    gather_name: str,
    mine: tuple[str, ...],
) -> list[Goal]:
    goals = []
    gather = median(timings, gather_name)
    for name in mine:
        value = median(timings, name)
        speedup = None if value is None or gather is None else gather / value
        figure = f"{_s(value)} s vs gather {_s(gather)} s: {speedup or 0:.1f}x faster"
        goals.append(
            goal_ge(f"W4 {name} ≥ 5x faster than gather + Semaphore", speedup, 5.0, figure)
        )
        peak, theirs = memory.get(name), memory.get(gather_name)
        figure = (
            "" if peak is None else f"peak {peak:.1f} MB (gather + Semaphore: {theirs or 0:.1f} MB)"
        )
        goals.append(goal_le(f"W4 {name} ≤ 10 MB extra", peak, 10.0, figure))
    return goals
