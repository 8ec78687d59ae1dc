"""``plait advise``: time a function on every backend and a few worker counts, then recommend.

Every configuration runs the sample of inputs repeated to as many items as one after another
would take ``seconds`` (from a short timed sample), with ``errors="collect"``; one that
finishes in under half of ``seconds`` runs again with proportionally more items, so that start-up
costs weigh the same everywhere, and one that runs past three times ``seconds`` is stopped.
Its throughput is the results it delivered divided by the time, worker start-up included.
``auto`` runs the same way, first, so that the grid can include the configuration it chose;
its row shows what the automatic choice gives, measuring included. The summary ranks every row,
auto's too. The chart is a self-contained SVG with a legend and a labelled axis.
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

from ._backends import REGISTRY, cpu_count
from ._decision import Decision

COLORS = {**{name: info.colour for name, info in REGISTRY.items()}, "auto": "#b279a2"}


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


def configurations(
    fn: Callable[..., Any], cores: int, chosen: Decision | None = None,
) -> list[tuple[str, int]]:
    """The grid: each backend with a few worker counts, and the one auto chose; asyncio only for
    coroutine functions (or when auto chose it)."""
    from ._backends._base import is_async_callable

    coroutines = is_async_callable(fn)
    counts = {
        name: set(info.grid(cores))
        for name, info in REGISTRY.items()
        if (coroutines or not info.coroutines_only) and info.requires is None  # local only
    }
    if chosen is not None and chosen.backend != "inline":
        counts.setdefault(chosen.backend, set()).add(chosen.workers)
    return [(backend, n) for backend, workers in counts.items() for n in sorted(workers)]


MAX_WORK = 1_000_000  # items in one run at most
OVERRUN = 3.0  # a run is stopped after this many times the planned seconds
RERUNS = 4  # a run that was too short is repeated with more items at most this often


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
    print(f"plait advise {name}: timing runs of about {seconds:g} s on {cores} cores ...",
          file=sys.stderr)
    print("  timing auto ...", file=sys.stderr)
    auto = measure(fn, items, count, "auto", None, seconds)
    runs: list[Run] = []
    for backend, workers in configurations(fn, cores, auto.decision):
        print(f"  timing {backend} x {workers} ...", file=sys.stderr)
        runs.append(measure(fn, items, count, backend, workers, seconds))
    runs.append(auto)
    print(header(name, len(items), runs, seconds, cores))
    print(table(runs))
    print(recommendation(runs))
    if chart:
        with open(chart, "w", encoding="utf-8") as handle:
            handle.write(svg_chart(runs, f"plait advise {name}: throughput, {cores} cores"))
        print(f"Chart: {chart}")
    return 0


def header(name: str, inputs: int, runs: list[Run], seconds: float, cores: int) -> str:
    """What was run: the items each run really did (runs are sized by time, see the docstring)."""
    low, high = min(run.done for run in runs), max(run.done for run in runs)
    did = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    return (f"plait advise {name}: {inputs} inputs, repeated; each run did {did} items "
            f"(sized to about {seconds:g} s, column 'done'), {cores} cores")


def table(runs: list[Run]) -> str:
    best = max(run.rate for run in runs) or 1.0
    lines = [f"{'backend x workers':<26} {'items/s':>12} {'of best':>8} {'done':>8} {'errors':>7}"]
    for run in runs:
        lines.append(
            f"{run.label:<26} {run.rate:>12,.0f} {run.rate / best:>8.0%} {run.done:>8,} "
            f"{run.failed:>7,}"
        )
    return "\n".join(lines)


AS_GOOD = 0.9  # auto within this share of the fastest row: recommended as it is


def recommendation(runs: list[Run]) -> str:
    """The fastest row of the table (auto's included), how auto did, and what to write: the
    same advice whenever auto chose the fastest configuration (however long its measuring took
    in this run: that, and noise, are all that differ between the two rows) or came within
    ``AS_GOOD`` of the fastest."""
    best = max(runs, key=lambda run: run.rate)
    lines = [f"Fastest: {best.label} ({best.rate:,.0f} items/s)."]
    auto = next((run for run in runs if run.backend == "auto"), None)
    if auto is None or auto.decision is None or best.rate <= 0:
        lines.append(f"Recommendation: plait.map(fn, items, {_named(best.backend, best.workers)})")
        return "\n".join(lines)
    chosen = auto.decision
    share = auto.rate / best.rate
    same = auto is best or (best.backend, best.workers) == (chosen.backend, chosen.workers)
    if auto is best:
        lines.append(f"auto chose {chosen.backend} x {chosen.workers} and was the fastest. "
                     f"Why: {chosen.reason}")
    else:
        why = (" (the same configuration: the difference is the time auto spent timing the "
               "first calls, and noise)") if same else ""
        lines.append(f"auto chose {chosen.backend} x {chosen.workers}: {share:.0%} of the "
                     f"fastest{why}. Why: {chosen.reason}")
    if same or share >= AS_GOOD:  # one advice, whichever row won by a hair in this run
        lines.append("Recommendation: plait.map(fn, items) (auto) is as good as any; to skip its "
                     f"measuring, name its choice ({_named(chosen.backend, chosen.workers)}).")
    else:
        lines.append(f"Recommendation: plait.map(fn, items, {_named(best.backend, best.workers)})")
    return "\n".join(lines)


def _named(backend: str, workers: int | None) -> str:
    return f"backend={backend!r}" + ("" if backend == "inline" else f", workers={workers}")


def svg_chart(runs: list[Run], title: str) -> str:
    """Horizontal bars of throughput, one per configuration, coloured by backend (the legend),
    over an axis with ticks; log scale when rates differ a lot."""
    scale = _Scale([run.rate for run in runs])
    left, bar_w, row_h, head = 190, 420, 26, 78
    axis_y = head + row_h * len(runs) + 4
    width, height = left + bar_w + 130, axis_y + 44
    best = max(range(len(runs)), key=lambda i: runs[i].rate)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="10" y="42" fill="#555">items per second{" (log scale)" if scale.log else ""}; '
        "longer is better</text>",
        *_legend(runs, y=52),
        *_axis(scale, left, bar_w, head, axis_y),
    ]
    for i, run in enumerate(runs):
        y = head + i * row_h
        w = max(1.0, bar_w * scale.at(run.rate))
        color = COLORS.get(run.backend, "#333")
        mark = " (fastest)" if i == best else ""
        parts += [
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{html.escape(run.label)}</text>',
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}"/>',
            f'<text x="{left + w + 6:.1f}" y="{y + 17}">{run.rate:,.0f}{mark}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _Scale:
    """Where a rate falls along the axis, 0..1: linear from 0, or log10 over the rates' range."""

    def __init__(self, rates: list[float]) -> None:
        rates = [max(rate, 1e-9) for rate in rates]
        self.top, low = max(rates), min(rates)
        self.log = self.top / low > 50
        self.floor = math.log10(low) - 0.5 if self.log else 0.0
        if not self.log:
            self.top = _nice_top(self.top)

    def at(self, rate: float) -> float:
        if not self.log:
            return rate / self.top
        span = math.log10(self.top) - self.floor
        return (math.log10(max(rate, 1e-9)) - self.floor) / span

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.ceil(self.floor), math.floor(math.log10(self.top))
            return [10.0 ** k for k in range(first, last + 1)]
        step = _nice_step(self.top / 5)
        return [step * k for k in range(round(self.top / step) + 1)]


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _nice_top(top: float) -> float:
    step = _nice_step(top / 5)
    return step * math.ceil(top / step)


def _axis(scale: _Scale, left: int, bar_w: int, top: int, axis_y: int) -> list[str]:
    """The x axis: a line, a tick, a faint grid line and a label at each round rate."""
    parts = [f'<line x1="{left}" y1="{axis_y}" x2="{left + bar_w}" y2="{axis_y}" '
             'stroke="#333"/>']
    for tick in scale.ticks():
        x = left + bar_w * scale.at(tick)
        parts += [
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#e4e4e4"/>',
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#333"/>',
            f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="11" '
            f'class="tick">{tick:,.10g}</text>',
        ]
    parts.append(f'<text x="{left + bar_w / 2:.0f}" y="{axis_y + 36}" text-anchor="middle" '
                 'fill="#555">items per second</text>')
    return parts


def _legend(runs: list[Run], y: int) -> list[str]:
    """A swatch and a name for each backend in the chart, in the order they first appear."""
    parts, x = [], 10
    for backend in dict.fromkeys(run.backend for run in runs):
        parts += [
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS.get(backend, "#333")}"/>',
            f'<text x="{x + 16}" y="{y + 11}" class="legend">{html.escape(backend)}</text>',
        ]
        x += 26 + 8 * len(backend)
    return parts
