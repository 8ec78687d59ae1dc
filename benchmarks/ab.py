"""Before/after: the same workloads timed with two checkouts of plait, interleaved.

    python benchmarks/ab.py BEFORE_DIR AFTER_DIR [--repeat 7] [--only W1,W2]
                            [--before-env NAME=VALUE ...] [--after-env NAME=VALUE ...]

Each measurement is a fresh interpreter that imports plait from ``DIR/src`` (so both sides pay
the same start-up), runs one workload once after a warm-up call, and prints its time. Runs
alternate before/after so that noise from a shared machine falls on both alike; the table shows
medians, the spread (min-max) and after/before. The same checkout on both sides with different
environment variables compares settings (e.g. ``--before-env PLAIT_UVLOOP=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _w1() -> Any:
    from workloads import tiny

    import plait

    return lambda: plait.map(tiny, range(200_000), backend="process")


def _w1_auto() -> Any:
    from workloads import tiny

    import plait

    return lambda: plait.map(tiny, range(200_000))


def _w2() -> Any:
    from workloads import calibrate_spin, spin

    import plait

    loops = calibrate_spin(0.012)
    return lambda: plait.map(spin, [loops] * 64, backend="process")


def _w4_map() -> Any:
    from workloads import async_noop

    import plait

    return lambda: plait.map(async_noop, range(20_000), backend="asyncio", workers=100)


def _w4_amap() -> Any:
    from workloads import async_noop

    import plait

    async def run() -> list[int]:
        return [x async for x in plait.amap(async_noop, range(20_000), backend="asyncio",
                                             workers=100)]

    return lambda: asyncio.run(run())


def _overhead() -> Any:
    from workloads import tiny

    import plait

    return lambda: plait.map(tiny, range(20_000), backend="thread", workers=4, chunksize=1)


def _small_maps() -> Any:
    from workloads import tiny

    import plait

    def run() -> None:
        for _ in range(200):
            plait.map(tiny, range(10), backend="thread", workers=4)

    return run


def _bytes_50mb() -> Any:
    import plait

    blob = b"x" * (50 << 20)
    return lambda: plait.map(len, [blob], backend="process")


def _w5_server() -> list[str]:
    """5,000 URLs of the W5 server (benchmarks/w5_http.py), started in a child process."""
    import atexit

    saved = list(sys.path)
    import w5_http  # it puts its own checkout's src first on sys.path: undo that

    sys.path[:] = saved
    server, port = w5_http.start_server()
    atexit.register(server.kill)
    return [f"http://127.0.0.1:{port}/ok/{i}" for i in range(5000)]


def _w5_fetch() -> Any:
    import plait.http

    urls = _w5_server()
    return lambda: sum(r.ok for r in plait.http.fetch_all(urls, concurrency=100))


def _w5_afetch() -> Any:
    import plait.http

    urls = _w5_server()

    async def run() -> int:
        return sum([r.ok async for r in plait.http.afetch_all(urls, concurrency=100)])

    return lambda: asyncio.run(run())


WORKLOADS: dict[str, Callable[[], Any]] = {
    "W1 process 200k tiny": _w1,
    "W1 auto 200k tiny": _w1_auto,
    "W2 process 64x12ms": _w2,
    "W4 map 20k async": _w4_map,
    "W4 amap 20k async": _w4_amap,
    "thread overhead 20k chunksize=1": _overhead,
    "200 small thread maps": _small_maps,
    "50 MB bytes to a process": _bytes_50mb,
    "W5 fetch_all 5k GETs": _w5_fetch,
    "W5 afetch_all 5k GETs": _w5_afetch,
}


def child(name: str) -> None:
    sys.path.insert(0, str(HERE))
    run = WORKLOADS[name]()
    run()  # warm-up: imports, first workers
    start = time.perf_counter()
    run()
    print(time.perf_counter() - start)


def measure(tree: Path, name: str, extra_env: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree / "src"), str(HERE)]))
    env.update(setting.split("=", 1) for setting in extra_env)
    done = subprocess.run(
        [sys.executable, __file__, "--child", name],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed with {tree}:\n{done.stderr}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path, nargs="?")
    parser.add_argument("after", type=Path, nargs="?")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="", help="substrings of workload names, comma-separated")
    parser.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.before is None or args.after is None:
        parser.error("give the BEFORE and AFTER checkouts")
    from harness import cache_bytecode

    cache_bytecode(args.before / "src", args.after / "src", HERE)
    wanted = [w for w in args.only.split(",") if w]
    names = [n for n in WORKLOADS if not wanted or any(w in n for w in wanted)]
    print(f"load average {os.getloadavg()[0]:.1f}; {args.repeat} interleaved runs; medians")
    if args.before_env or args.after_env:
        print(f"before: {' '.join(args.before_env)}; after: {' '.join(args.after_env)}")
    print("| workload | before s | after s | after/before | spread before | spread after |")
    print("|---|---:|---:|---:|---|---|")
    for name in names:
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeat):
            times["before"].append(measure(args.before, name, args.before_env))
            times["after"].append(measure(args.after, name, args.after_env))
        b, a = (statistics.median(times[k]) for k in ("before", "after"))
        spread = {k: f"{min(v):.3f}-{max(v):.3f}" for k, v in times.items()}
        print(f"| {name} | {b:.3f} | {a:.3f} | {a / b:.2f} | {spread['before']} | "
              f"{spread['after']} |", flush=True)


if __name__ == "__main__":
    main()
