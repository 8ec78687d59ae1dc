"""The cost of ``import plait``, and the per-item overhead of the thread backend."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from functools import partial

import peers
from harness import Goal, Lineup, Report, Sizes, goal_le, measure
from peers import plait_map
from workloads import tiny

IMPORT_BUDGET_MS = 50.0
OVERHEAD_WORKERS = 4


def wall_ms(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - start) * 1000


def importtime() -> tuple[float, list[tuple[float, str]]]:
    """``-X importtime`` of ``import plait``: cumulative ms, and its subtree as (self ms, name)."""
    command = [sys.executable, "-X", "importtime", "-c", "import plait"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stderr.splitlines()
    rows = []
    for line in lines:
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            indent = len(name) - len(name.lstrip())
            rows.append(
                (int(parts[0].split(":")[1]) / 1000, int(parts[1]) / 1000, indent, name.strip())
            )
    end = next(i for i, row in enumerate(rows) if row[3] == "plait")
    start = end
    while start > 0 and rows[start - 1][2] > rows[end][2]:
        start -= 1
    return rows[end][1], [(row[0], row[3]) for row in rows[start : end + 1]]


def import_time(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    bare, with_plait, cumulative = [], [], []
    heaviest: dict[str, float] = {}
    for _ in range(sizes.import_runs):
        bare.append(wall_ms("pass"))
        with_plait.append(wall_ms("import plait"))
        total, subtree = importtime()
        cumulative.append(total)
        for self_ms, name in subtree:
            heaviest[name] = min(heaviest.get(name, self_ms), self_ms)
    delta = statistics.median(with_plait) - statistics.median(bare)
    measured = statistics.median(cumulative)
    top = sorted(heaviest.items(), key=lambda item: -item[1])[:6]
    report.section(
        "import plait",
        f"Medians of {sizes.import_runs} fresh interpreters, budget {IMPORT_BUDGET_MS:.0f} ms.",
        "",
        "| measure | ms |",
        "|---|---:|",
        f"| -X importtime, cumulative for plait | {measured:.1f} |",
        f"| wall time of `python -c 'import plait'` minus `python -c pass` | {delta:.1f} |",
        "",
        "Largest self times under plait (ms, best run): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in top),
    )
    figure = f"{measured:.1f} ms by -X importtime, {delta:.1f} ms by wall time"
    return [
        goal_le(f"import plait ≤ {IMPORT_BUDGET_MS:.0f} ms", measured, IMPORT_BUDGET_MS, figure)
    ]


def thread_overhead(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    n, workers = sizes.overhead_calls, OVERHEAD_WORKERS
    items = list(range(n))
    expected = [x + 1 for x in items]
    lineup = Lineup()
    lineup.add("serial loop", partial(peers.serial, tiny, items))
    lineup.add(
        f"ThreadPoolExecutor({workers}).map",
        partial(peers.thread_pool_executor, tiny, items, workers),
    )
    one = partial(plait_map, tiny, items, backend="thread", workers=workers, chunksize=1)
    lineup.plait(f"plait thread workers={workers} chunksize=1", one)
    auto = partial(plait_map, tiny, items, backend="thread", workers=workers)
    lineup.plait(f"plait thread workers={workers}, auto chunks", auto)
    timings = measure(lineup, repeat, check=lambda r: r == expected, hang_s=sizes.hang_s)
    serial = timings["serial loop"].median or 0.0
    per_item = {
        name: (t.median - serial) / n * 1e6 for name, t in timings.items() if t.median is not None
    }
    reference = per_item.get(f"ThreadPoolExecutor({workers}).map")
    report.section(
        f"Per-item overhead of the thread backend: {n:,} calls of x + 1",
        "Overhead per item = (median time - serial loop) / items.",
        "",
        "| contender | median s | overhead µs/item | vs ThreadPoolExecutor.map |",
        "|---|---:|---:|---:|",
    )
    for name, timing in timings.items():
        cost = per_item.get(name)
        versus = "—" if cost is None or not reference else f"x{cost / reference:.2f}"
        shown = "—" if cost is None else f"{cost:.2f}"
        median = "—" if timing.median is None else f"{timing.median:.3f}"
        report.add(f"| {name} | {median} | {shown} | {versus} |")
    goals = []
    bound = None if reference is None else 2 * reference
    for name in (key for key in per_item if key.startswith("plait")):
        figure = f"{per_item[name]:.2f} µs vs {reference or 0:.2f} µs per item"
        text = f"{name}: overhead ≤ 2 x ThreadPoolExecutor.map"
        goals.append(goal_le(text, per_item[name], bound, figure))
    return goals
