"""What every suite shares: contenders, interleaved timing with medians, tables and goals."""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plait

SLOW_S = 8.0  # a contender whose first run takes longer is not repeated


def cache_bytecode(*trees: str | Path) -> None:
    """Let the measured children import plait as users do, from cached bytecode. With
    PYTHONDONTWRITEBYTECODE (set in some shells and CI images) every fresh interpreter compiles
    plait's modules from source (~20-30 ms of a first call on 2 cores), while the peers, which
    pip compiled when it installed them, do not."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    import compileall

    for tree in trees:
        compileall.compile_dir(str(tree), quiet=1)


def cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    run: Callable[[], object]
    role: str = "peer"  # "plait", "peer", or "baseline" (shown, but not a way to do the job)


@dataclass(slots=True)
class Timing:
    name: str
    role: str
    times: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None


class Lineup:
    """The contenders of one workload, and notes: those skipped and why, what auto chose."""

    def __init__(self) -> None:
        self.contenders: list[Contender] = []
        self.notes: list[str] = []

    def add(
        self, name: str, run: Callable[[], object], *, role: str = "peer", needs: str = ""
    ) -> None:
        if needs and not has_module(needs):
            self.skip(name, f"{needs} is not installed")
            return
        self.contenders.append(Contender(name, run, role))

    def plait(self, name: str, run: Callable[[], object]) -> None:
        self.add(name, run, role="plait")

    def skip(self, name: str, reason: str) -> None:
        self.notes.append(f"{name}: skipped, {reason}")

    def explain_auto(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> None:
        """Note what backend="auto" picks for this workload, and why (``plait.explain``)."""
        explain = getattr(plait, "explain", None)
        if explain is None:
            return
        try:
            self.notes.append(
                f"plait auto, per plait.explain before the runs: {explain(fn, items)}"
            )
        except Exception as exc:
            self.notes.append(f"plait auto: plait.explain failed ({type(exc).__name__}: {exc})")


class Hung(BaseException):
    """A run took longer than the hang guard allows (raised by SIGALRM in the main thread)."""


def _alarm(signum: int, frame: object) -> None:
    raise Hung


def time_once(run: Callable[[], object], hang_s: float) -> tuple[float, object]:
    """Seconds taken by one run, and its result; ``Hung`` after ``hang_s`` seconds."""
    gc.collect()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, hang_s)
    try:
        start = time.perf_counter()
        result = run()
        return time.perf_counter() - start, result
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def measure(
    lineup: Lineup,
    repeat: int,
    check: Callable[[object], bool] | None = None,
    hang_s: float = 30.0,
) -> dict[str, Timing]:
    """Run every contender ``repeat`` times, interleaved, rotating the order each round."""
    contenders = lineup.contenders
    timings = {c.name: Timing(c.name, c.role) for c in contenders}
    for round_ in range(repeat):
        shift = round_ % max(1, len(contenders))
        for contender in [*contenders[shift:], *contenders[:shift]]:
            _run_one(contender, timings[contender.name], check, hang_s)
        print(f"  round {round_ + 1}/{repeat} done", file=sys.stderr, flush=True)
    return timings


def _run_one(
    contender: Contender, timing: Timing, check: Callable[[object], bool] | None, hang_s: float
) -> None:
    if timing.error is not None or (timing.times and timing.times[0] > SLOW_S):
        return
    try:
        seconds, result = time_once(contender.run, hang_s)
    except Hung:
        timing.error = f"HUNG: no result after {hang_s:.0f} s, stopped"
        return
    except Exception as exc:
        timing.error = f"failed: {type(exc).__name__}: {exc}"[:120]
        return
    if check is not None and contender.role != "baseline" and not check(result):
        timing.error = "WRONG RESULT"
        return
    timing.times.append(seconds)


def best_of(timings: dict[str, Timing]) -> float | None:
    medians = [t.median for t in timings.values() if t.role != "baseline" and t.median is not None]
    return min(medians) if medians else None


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}"


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "—"
    return f"x{value / reference:.2f}" if value / reference < 10 else f"x{value / reference:.0f}"


def ratio_table(timings: dict[str, Timing], limit_s: float | None) -> list[str]:
    """Markdown rows, fastest first: seconds, ratio to the best contender and to the limit."""
    best = best_of(timings)
    rows = [
        "| contender | median s | vs best | vs limit | runs (min-max s) |",
        "|---|---:|---:|---:|---|",
    ]
    order = sorted(timings.values(), key=lambda t: (t.median is None, t.median or 0.0))
    for t in order:
        name = f"**{t.name}**" if t.role == "plait" else t.name
        if t.role == "baseline":
            name += " (baseline, not a contender)"
        if t.median is None:
            rows.append(f"| {name} | — | — | — | {t.error or 'no run'} |")
            continue
        spread = f"{len(t.times)} ({min(t.times):.3f}-{max(t.times):.3f})"
        rows.append(
            f"| {name} | {seconds(t.median)} | {ratio(t.median, best)} | "
            f"{ratio(t.median, limit_s)} | {spread} |"
        )
    return rows


@dataclass(frozen=True, slots=True)
class Goal:
    text: str
    figure: str
    passed: bool | None  # None: could not be measured

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def goal_le(text: str, value: float | None, bound: float | None, figure: str) -> Goal:
    """A goal met when ``value <= bound``; n/a when either is missing."""
    if value is None or bound is None:
        return Goal(text, figure or "not measured", None)
    return Goal(text, figure, value <= bound)


def goal_ge(text: str, value: float | None, bound: float, figure: str) -> Goal:
    """A goal met when ``value >= bound``; n/a when the value is missing."""
    if value is None:
        return Goal(text, figure or "not measured", None)
    return Goal(text, figure, value >= bound)


class Report:
    """Lines printed as they come, and kept for the markdown file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)

    def section(self, title: str, *intro: str) -> None:
        self.add("", f"## {title}", "", *intro)

    def notes(self, notes: Sequence[str]) -> None:
        if notes:
            self.add("", *(f"- {note}" for note in notes))

    def write(self, path: Path) -> None:
        path.write_text("\n".join(self.lines).strip() + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each workload is: the full sizes below, or a quick smoke run."""

    tiny_calls: int = 200_000
    cpu_calls: int = 64
    cpu_call_s: float = 0.012
    sleep_calls: int = 500
    sleep_s: float = 0.02
    sleep_concurrency: int = 50
    async_calls: int = 100_000
    async_at_once: int = 1_000
    stream_stall_s: float = 1.0
    stream_cap: int = 200_000
    stream_timeout_s: float = 5.0  # no first result by then: the contender never yields
    files: int = 200
    file_mib: int = 4
    overhead_calls: int = 20_000
    import_runs: int = 9
    hang_s: float = 30.0  # a run taking longer is stopped and reported as hung


QUICK = Sizes(
    tiny_calls=20_000,
    cpu_calls=16,
    sleep_calls=100,
    async_calls=10_000,
    stream_stall_s=0.3,
    stream_cap=50_000,
    files=40,
    overhead_calls=4_000,
    import_runs=5,
    stream_timeout_s=3.0,
    hang_s=10.0,
)
