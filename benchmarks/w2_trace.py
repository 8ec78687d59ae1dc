"""Where W2's time goes: each task records its worker and its start and end, so a call splits
into head (call to first task), tail (last task to return), gaps (workers idle between their
tasks), imbalance (between the workers' last ends) and the parent's CPU time.

    LOOPS=378142 .venv/bin/python benchmarks/w2_trace.py map joblib mp
"""

from __future__ import annotations

import itertools
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

from workloads import calibrate_spin, spin

import plait

Span = tuple[int, float, float]


def traced(loops: int) -> Span:
    start = time.time()
    spin(loops)
    return os.getpid(), start, time.time()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _split(spans: list[Span], began: float, ended: float) -> dict[str, float]:
    by_worker: dict[int, list[tuple[float, float]]] = {}
    for pid, start, end in spans:
        by_worker.setdefault(pid, []).append((start, end))
    gaps = 0.0
    for runs in by_worker.values():
        runs.sort()
        gaps += sum(after[0] - before[1] for before, after in itertools.pairwise(runs))
    ends = sorted(runs[-1][1] for runs in by_worker.values())
    return {
        "head": min(s for _, s, _ in spans) - began,
        "tail": ended - max(e for _, _, e in spans),
        "gaps": gaps,
        "imbalance": ends[-1] - ends[0],
    }


def analyse(label: str, call: Callable[[], list[Span]], calls: int = 10) -> None:
    call()
    rows = []
    for _ in range(calls):
        cpu, began = _cpu(), time.time()
        spans = call()
        ended = time.time()
        row = _split(spans, began, ended)
        rows.append({"wall": ended - began, "cpu": _cpu() - cpu, **row})
    medians = " ".join(f"{k}={statistics.median(r[k] for r in rows) * 1000:.1f}" for k in rows[0])
    print(f"{label:12} {medians} (ms)", flush=True)


def main(which: list[str]) -> None:
    loops = int(os.environ.get("LOOPS") or calibrate_spin(0.012))
    items = [loops] * 64
    for name in which:
        if name == "map":
            analyse("plait.map", lambda: plait.map(traced, items, backend="process"))
        elif name == "joblib":
            import joblib

            analyse("joblib", lambda: joblib.Parallel(n_jobs=2)(
                joblib.delayed(traced)(x) for x in items))
        elif name == "mp":
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(2) as pool:
                analyse("mp.Pool", lambda: pool.map(traced, items))


if __name__ == "__main__":
    main(sys.argv[1:] or ["map", "joblib", "mp"])
