"""Benchmarks: plait side by side with its peers, in the same run, as ratios.

    .venv/bin/python benchmarks/run.py [--only W1,W4] [--repeat N] [--quick] [--markdown FILE]

Workloads: W1 tiny (200,000 calls of x + 1), W2 cpu (64 pure-Python loops of ~12 ms), W3 sleep
(500 calls of time.sleep(0.02)), W4 async (100,000 coroutine calls, 1,000 at once), W6 stream (an
infinite generator and a consumer that stalls), W7 files (SHA-256 of 200 files of 4 MiB), plus the
cost of ``import plait`` (IMPORT), the per-item overhead of the thread backend (OVERHEAD) and
the first call of a fresh interpreter for START, W1 and W2 (COLD, a subprocess per run); the
sizes are in harness.py, the latest figures in RESULTS.md. Every contender runs ``--repeat``
times, interleaved with the others; the tables show medians, the ratio to the best contender and
to the physical limit. A "goals" section checks the performance goals of issue 2. Peers that are
not installed are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the task functions must be importable by worker processes

from cold import cold  # noqa: E402
from harness import QUICK, Goal, Report, Sizes, cache_bytecode, cores  # noqa: E402
from startup import import_time, thread_overhead  # noqa: E402
from stream import w6_stream  # noqa: E402
from suites_cpu import w1_tiny, w2_cpu, w7_files  # noqa: E402
from suites_io import w3_sleep, w4_async  # noqa: E402

import plait  # noqa: E402

Suite = Callable[[Report, Sizes, int], list[Goal]]
SUITES: dict[str, Suite] = {
    "W1": w1_tiny,
    "W2": w2_cpu,
    "W3": w3_sleep,
    "W4": w4_async,
    "W6": w6_stream,
    "W7": w7_files,
    "IMPORT": import_time,
    "OVERHEAD": thread_overhead,
    "COLD": cold,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default="", help=f"comma-separated, from {','.join(SUITES)}")
    parser.add_argument(
        "--repeat", type=int, help="runs per contender (default 3, or 1 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, a smoke run under 1 min"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    names = [n.strip().upper() for n in args.only.split(",") if n.strip()] or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.names = names
    return args


def machine() -> str:
    """Cores, CPU model, memory and load: enough to tell two result files apart."""
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cores()} cores ({model}), {memory_gib:.0f} GiB, load average {load} at the start"


def header(report: Report, repeat: int, quick: bool) -> None:
    report.add(
        "# plait benchmarks",
        "",
        f"{datetime.date.today().isoformat()}; {machine()}; Python {platform.python_version()}, "
        f"plait {plait.__version__}.",
        "",
        f"{'Quick' if quick else 'Full'} sizes, {repeat} interleaved run(s) per contender, "
        "medians. Bold rows are plait. The machine is shared and noisy: absolute times are "
        "hints, compare the ratios."
        + (
            " Quick sizes are a smoke run: the goals are meant for the full sizes." if quick else ""
        ),
    )


def goals_section(report: Report, goals: list[Goal]) -> None:
    report.section("Goals (issue 2)", "| goal | figure | verdict |", "|---|---|---|")
    for goal in goals:
        report.add(f"| {goal.text} | {goal.figure} | {goal.verdict} |")
    verdicts = [goal.verdict for goal in goals]
    report.add(
        "",
        f"{verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, "
        f"{verdicts.count('n/a')} n/a.",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache_bytecode(Path(plait.__file__).parent, Path(__file__).parent)
    # On SIGTERM, unwind (finally blocks kill the W6 children) rather than vanish.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = QUICK if args.quick else Sizes()
    report = Report()
    header(report, args.repeat, args.quick)
    started = time.perf_counter()
    goals: list[Goal] = []
    for name in args.names:
        print(f"[{name}]", file=sys.stderr, flush=True)
        suite_started = time.perf_counter()
        goals += SUITES[name](report, sizes, args.repeat)
        print(f"[{name}] {time.perf_counter() - suite_started:.1f} s", file=sys.stderr, flush=True)
    goals_section(report, goals)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    report.add(
        "", f"Total benchmark time: {time.perf_counter() - started:.0f} s; load average {load}."
    )
    if args.markdown is not None:
        report.write(args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
