"""A 3-stage pipeline, I/O (20 ms waits) -> CPU (~5 ms pure Python) -> I/O (5 ms waits):
plait.pipeline against each stage alone (the limit: the slowest stage), the three stages as
successive plait.map calls, a hand-written threads + processes + queues version, and pypeln
(if installed); then the peak memory of a pipeline over 1,000,000 items of an endless input.

    python benchmarks/pipeline.py [--items 2000] [--repeats 1] [--memory-items 1000000]

Contenders run in turn, ``--repeats`` rounds, medians reported. The machine is shared: compare
the ratios, printed as a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import plait
from plait._demo import calibrate, cpu_task

IO_WORKERS = 16  # 2,000 x 20 ms / 16 = 2.5 s: near the CPU stage's 2,000 x 5 ms / 2 cores
STORE_WORKERS = 4  # 2,000 x 5 ms / 4 = 2.5 s
CPU_WORKERS = os.cpu_count() or 1


def download(x: int) -> int:
    time.sleep(0.02)
    return x


def parse(x: int, loops: int) -> int:
    cpu_task(loops)
    return x


def store(x: int) -> int:
    time.sleep(0.005)
    return x


Stages = tuple[Callable[[int], int], Callable[[int], int], Callable[[int], int]]


def plait_pipeline(items: int, stages: Stages) -> int:
    first, second, third = stages
    flow = (
        plait.pipeline(range(items))
        .map(first, backend="thread", workers=IO_WORKERS)
        .map(second, backend="process", workers=CPU_WORKERS)
        .map(third, backend="thread", workers=STORE_WORKERS)
    )
    return len(flow.run())


def successive_maps(items: int, stages: Stages) -> int:
    first, second, third = stages
    values = plait.map(first, range(items), backend="thread", workers=IO_WORKERS)
    values = plait.map(second, values, backend="process", workers=CPU_WORKERS)
    return len(plait.map(third, values, backend="thread", workers=STORE_WORKERS))


def alone(stage: int) -> Callable[[int, Stages], int]:
    backend, workers = [("thread", IO_WORKERS), ("process", CPU_WORKERS),
                        ("thread", STORE_WORKERS)][stage]

    def run(items: int, stages: Stages) -> int:
        return len(plait.map(stages[stage], range(items), backend=backend, workers=workers))

    return run


_DONE = object()


def hand_written(items: int, stages: Stages) -> int:
    """What one writes without a library: threads, a process pool, bounded queues."""
    first, second, third = stages
    inbox: queue.Queue[Any] = queue.Queue()
    for item in range(items):
        inbox.put(item)
    downloaded: queue.Queue[Any] = queue.Queue(maxsize=64)
    parsed: queue.Queue[Any] = queue.Queue(maxsize=64)
    results: list[int] = []
    lock = threading.Lock()

    def downloader() -> None:
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return
            downloaded.put(first(item))

    def parser(pool: ProcessPoolExecutor) -> None:
        window: queue.Queue[Any] = queue.Queue(maxsize=4 * CPU_WORKERS)

        def forward() -> None:
            while (future := window.get()) is not _DONE:
                parsed.put(future.result())
            parsed.put(_DONE)

        forwarder = threading.Thread(target=forward)
        forwarder.start()
        for _ in range(items):
            window.put(pool.submit(second, downloaded.get()))
        window.put(_DONE)
        forwarder.join()

    def storer() -> None:
        while (item := parsed.get()) is not _DONE:
            value = third(item)
            with lock:
                results.append(value)
        parsed.put(_DONE)  # the next storer stops too

    with ProcessPoolExecutor(CPU_WORKERS) as pool:
        threads = [threading.Thread(target=downloader) for _ in range(IO_WORKERS)]
        threads += [threading.Thread(target=parser, args=(pool,))]
        threads += [threading.Thread(target=storer) for _ in range(STORE_WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return len(results)


def pypeln_pipeline(items: int, stages: Stages) -> int:
    import pypeln as pl

    first, second, third = stages
    stream = pl.thread.map(first, range(items), workers=IO_WORKERS, maxsize=64)
    stream = pl.process.map(second, stream, workers=CPU_WORKERS, maxsize=64)
    stream = pl.thread.map(third, stream, workers=STORE_WORKERS, maxsize=64)
    return len(list(stream))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def contenders() -> list[tuple[str, Callable[[int, Stages], int]]]:
    found = [
        ("stage 1 alone: download, threads", alone(0)),
        ("stage 2 alone: parse, processes", alone(1)),
        ("stage 3 alone: store, threads", alone(2)),
        ("**plait.pipeline**", plait_pipeline),
        ("**successive plait.map calls**", successive_maps),
        ("hand-written threads + ProcessPoolExecutor + queues", hand_written),
    ]
    if _has("pypeln"):
        found.append(("pypeln (thread -> process -> thread)", pypeln_pipeline))
    return found


def time_all(items: int, repeats: int) -> dict[str, float]:
    stages: Stages = (download, functools.partial(parse, loops=calibrate(0.005)), store)
    times: dict[str, list[float]] = {name: [] for name, _ in contenders()}
    for _ in range(repeats):
        for name, run in contenders():
            start = time.perf_counter()
            count = run(items, stages)
            times[name].append(time.perf_counter() - start)
            assert count == items, f"{name} gave {count} results for {items} items"
    return {name: statistics.median(values) for name, values in times.items()}


# --- memory with an endless input --------------------------------------------------------------


def plus_one(x: int) -> int:
    return x + 1


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_child(count: int) -> None:
    """Runs in a child: reads ``count`` results of an endless flow, printing RSS as it goes."""
    flow = (
        plait.pipeline(itertools.count())
        .map(plus_one, backend="thread", workers=4)
        .map(plus_one, backend="process", workers=2)
        .map(plus_one, backend="thread", workers=4)
    )
    start = time.perf_counter()
    samples = []
    for index, _ in enumerate(flow, 1):
        if index % (count // 10) == 0:
            samples.append(_rss_mib())
        if index >= count:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} {time.perf_counter() - start:.1f} {peak:.1f} "
          + " ".join(f"{s:.1f}" for s in samples), flush=True)


def memory(count: int) -> tuple[float, float, list[float]]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(count)], capture_output=True, text=True,
        check=True, timeout=1800,
    )
    fields = done.stdout.split()
    return float(fields[1]), float(fields[2]), [float(f) for f in fields[3:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-items", type=int, default=1_000_000)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    load = os.getloadavg()[0]
    print(f"## 3-stage pipeline: {args.items} items, I/O 20 ms -> CPU ~5 ms -> I/O 5 ms\n")
    print(f"{CPU_WORKERS} cores, load average {load:.1f} at the start; {args.repeats} round(s), "
          f"medians. Workers: {IO_WORKERS} download threads, {CPU_WORKERS} processes, "
          f"{STORE_WORKERS} store threads.\n")
    times = time_all(args.items, args.repeats)
    limit = max(t for name, t in times.items() if name.startswith("stage"))
    best = min(times.values())
    print("| contender | median s | vs slowest stage alone | vs best |")
    print("|---|---:|---:|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.2f} | x{seconds / limit:.2f} | x{seconds / best:.2f} |")
    pipe, successive = times["**plait.pipeline**"], times["**successive plait.map calls**"]
    print(f"\npipeline vs slowest stage alone: x{pipe / limit:.2f} (goal <= 1.1); successive "
          f"maps / pipeline: x{successive / pipe:.2f} (goal >= 1.5)\n")
    if args.memory_items:
        seconds, peak, samples = memory(args.memory_items)
        print(f"## Memory: {args.memory_items:,} items of an endless input through 3 stages "
              f"(thread -> process -> thread, x + 1)\n")
        print(f"{seconds:.1f} s; peak RSS {peak:.1f} MiB; RSS at each tenth: "
              + ", ".join(f"{s:.0f}" for s in samples) + " MiB")


if __name__ == "__main__":
    main()
