"""``plait advise``: time a function on every backend and a few worker counts, then recommend.

Every configuration runs the sample of inputs repeated to as many items as one after another
would take ``seconds`` (from a short timed sample), with ``errors="collect"``; one that
finishes in under half of ``seconds`` runs again with proportionally more items, so that start-up
costs weigh the same everywhere, and one that runs past three times ``seconds`` is stopped.
Its throughput is the results it delivered divided by the time, worker start-up included.
``auto`` runs the same way, so its row shows what the automatic choice gives. The chart is a
self-contained SVG.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._backends import cpu_count
from ._decision import Decision

COLORS = {
    "inline": "#8c8c8c", "thread": "#4c78a8", "process": "#f58518", "asyncio": "#54a24b",
    "auto": "#b279a2",
}


@dataclass(frozen=True, slots=True)
class Run:
    backend: str  # or "auto"
    workers: int | None  # None for auto
    done: int
    failed: int
    elapsed_s: float
    decision: Decision | None = None  # what auto chose

    @property
    def label(self) -> str:
        if self.backend == "auto":
            chosen = self.decision
            return "auto" if chosen is None else f"auto: {chosen.backend} x {chosen.workers}"
        return self.backend if self.backend == "inline" else f"{self.backend} x {self.workers}"

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def configurations(fn: Callable[..., Any], cores: int) -> list[tuple[str, int]]:
    """The grid: each backend with a few worker counts; asyncio only for coroutine functions."""
    from ._backends._base import is_async_callable

    grid = [("inline", 1)]
    grid += [("thread", n) for n in (4, 16, 64)]
    grid += [("process", n) for n in sorted({1, cores, 2 * cores})]
    if is_async_callable(fn):
        grid += [("asyncio", n) for n in (10, 100, 1000)]
    return grid


MAX_WORK = 1_000_000  # items in one run at most
OVERRUN = 3.0  # a run is stopped after this many times the planned seconds
RERUNS = 2  # a run that was too short is repeated with more items at most this often


def plan_work(fn: Callable[..., Any], items: list[Any], seconds: float) -> int:
    """How many items a run gets: the sample repeated to about ``seconds`` of serial work."""
    from ._probe import take_sample

    per_call = max(take_sample(fn, items, stop_on_error=False).per_call_s, 1e-7)
    return max(len(items), min(MAX_WORK, math.ceil(seconds / per_call)))


def measure(
    fn: Callable[..., Any], items: list[Any], count: int, backend: str, workers: int | None,
    seconds: float,
) -> Run:
    """One configuration: ``count`` items, more if that was over too soon (see the docstring)."""
    for _ in range(RERUNS + 1):
        work = list(itertools.islice(itertools.cycle(items), count))
        run = time_run(fn, work, backend, workers, OVERRUN * seconds)
        if run.elapsed_s >= seconds / 2 or count >= MAX_WORK or run.done < count:
            break
        count = min(MAX_WORK, math.ceil(count * min(50.0, seconds / max(run.elapsed_s, 1e-3))))
    return run


def time_run(
    fn: Callable[..., Any], work: list[Any], backend: str, workers: int | None, limit_s: float,
) -> Run:
    """Run the work, or as much of it as fits in ``limit_s``; count what comes back."""
    import plait

    opts: dict[str, Any] = {"errors": "collect", "ordered": False}
    if backend != "auto":
        opts.update(backend=backend, workers=workers)
    done = failed = 0
    with capture_decisions() as decisions:
        start = time.perf_counter()
        results = plait.imap(fn, work, explain=backend == "auto", **opts)
    try:
        for outcome in results:
            done += 1
            failed += not outcome.ok
            if time.perf_counter() - start >= limit_s:
                break
        elapsed = time.perf_counter() - start
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return Run(backend, workers, done, failed, elapsed, decisions[0] if decisions else None)


class _Collect(logging.Handler):
    def __init__(self, into: list[Decision]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        decision = getattr(record, "plait_decision", None)
        if isinstance(decision, Decision):
            self.into.append(decision)


@contextlib.contextmanager
def capture_decisions() -> Iterator[list[Decision]]:
    """The decisions that ``explain=True`` logs, collected instead of printed."""
    logger = logging.getLogger("plait")
    found: list[Decision] = []
    handler = _Collect(found)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def run_advise(
    fn: Callable[..., Any], items: list[Any], *, name: str, seconds: float, chart: str | None,
) -> int:
    cores = cpu_count()
    count = plan_work(fn, items, seconds)
    print(f"plait advise {name}: {len(items)} inputs, repeated to {count:,} items per run "
          f"(~{seconds:g} s one after another), {cores} cores", file=sys.stderr)
    runs: list[Run] = []
    for backend, workers in [*configurations(fn, cores), ("auto", None)]:
        print(f"  timing {backend} x {workers or 'auto'} ...", file=sys.stderr)
        runs.append(measure(fn, items, count, backend, workers, seconds))
    print(table(runs))
    print(recommendation(runs))
    if chart:
        with open(chart, "w", encoding="utf-8") as handle:
            handle.write(svg_chart(runs, f"plait advise {name}: throughput, {cores} cores"))
        print(f"Chart: {chart}")
    return 0


def table(runs: list[Run]) -> str:
    best = max(run.rate for run in runs) or 1.0
    lines = [f"{'backend x workers':<26} {'items/s':>12} {'of best':>8} {'done':>8} {'errors':>7}"]
    for run in runs:
        lines.append(
            f"{run.label:<26} {run.rate:>12,.0f} {run.rate / best:>8.0%} {run.done:>8,} "
            f"{run.failed:>7,}"
        )
    return "\n".join(lines)


def recommendation(runs: list[Run]) -> str:
    fixed = [run for run in runs if run.backend != "auto"]
    best = max(fixed, key=lambda run: run.rate)
    lines = [f"Fastest: {best.label} ({best.rate:,.0f} items/s)."]
    auto = next((run for run in runs if run.backend == "auto"), None)
    if auto is not None and auto.decision is not None and best.rate > 0:
        share = auto.rate / best.rate
        lines.append(f"auto chose {auto.decision.backend} x {auto.decision.workers}: "
                     f"{share:.0%} of the fastest. Why: {auto.decision.reason}")
        if share >= 0.9:
            lines.append("Recommendation: plait.map(fn, items) (auto) is as good as any.")
            return "\n".join(lines)
    workers = "" if best.backend == "inline" else f", workers={best.workers}"
    lines.append(f"Recommendation: plait.map(fn, items, backend={best.backend!r}{workers})")
    return "\n".join(lines)


def svg_chart(runs: list[Run], title: str) -> str:
    """Horizontal bars of throughput, one per configuration; log scale when rates differ a lot."""
    rates = [max(run.rate, 1e-9) for run in runs]
    top, low = max(rates), min(rates)
    log = low > 0 and top / low > 50
    left, bar_w, row_h, head = 190, 420, 26, 56
    width, height = left + bar_w + 130, head + row_h * len(runs) + 30

    def length(rate: float) -> float:
        if not log:
            return bar_w * rate / top
        floor = math.log10(low) - 0.5
        return bar_w * (math.log10(max(rate, 1e-9)) - floor) / (math.log10(top) - floor)

    best = max(range(len(runs)), key=lambda i: runs[i].rate if runs[i].backend != "auto" else -1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="10" y="42" fill="#555">items per second{" (log scale)" if log else ""}; '
        "longer is better</text>",
    ]
    for i, run in enumerate(runs):
        y = head + i * row_h
        w = max(1.0, length(run.rate))
        color = COLORS.get(run.backend, "#333")
        mark = " (fastest)" if i == best else ""
        parts += [
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{html.escape(run.label)}</text>',
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}"/>',
            f'<text x="{left + w + 6:.1f}" y="{y + 17}">{run.rate:,.0f}{mark}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
