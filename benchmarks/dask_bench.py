"""backend="dask" side by side with raw Dask and the local process backend, in one run.

    python benchmarks/dask_bench.py [--repeat 3]

Starts a 2-worker cluster (LocalCluster: processes, one thread each) on 127.0.0.1 and measures
  1. 20,000 tiny items: plait backend="dask" vs raw client.map + gather (goal: >= 10x faster);
  2. W2, 64 calls of ~12 ms pure-Python CPU: plait dask vs raw client.map vs plait process
     (goal: within 1.15x of the process backend, never slower than raw client.map);
  3. the cost of one chunk on the cluster: chunks of one no-op item, one at a time (the round
     trip) and with the window full (the throughput);
  4. fetch throughput: the sharded fetch on the cluster vs one local ``fetch_all``.
Each figure is the median of ``--repeat`` runs after one warm-up run (raw client.map over the
20,000 items: one run, it takes about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import calibrate_spin, spin, tiny

import plait


def median_s(run: Callable[[], Any], repeat: int, warm_up: bool = True) -> float:
    if warm_up:  # imports, function caches on the workers, the process pool's start
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(runs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each, run in turn round after round (a load that comes and goes on
    a shared machine hits every contender alike)."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-raw-tiny", action="store_true",
                        help="skip raw client.map over 20,000 items (about a minute)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        as cluster,
        Client(cluster, set_as_default=False) as client,
        plait.Pool(backend="dask", client=client) as pool,
        plait.Pool(backend="process", workers=2) as processes,
    ):
        rows = measure(client, pool, processes, args.repeat, args.skip_raw_tiny)
        rows += fetch_rows(client, args.repeat)
    for row in rows:
        print(row)
    return 0


def fetch_rows(client: Any, repeat: int) -> list[str]:
    """Fetch throughput: the sharded fetch on the cluster vs one local fetch_all, on the test
    server's fast mode (two host names for the one server, so there are two shards)."""
    import itertools
    import subprocess

    from plait import _dask_fetch
    from plait.http import fetch_all

    server = Path(__file__).resolve().parent.parent / "tests" / "http_server.py"
    process = subprocess.Popen(
        [sys.executable, str(server), "--fast"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        hosts = itertools.cycle(["127.0.0.1", "localhost"])
        urls = [f"http://{next(hosts)}:{port}/ok/{i}" for i in range(4000)]
        local = median_s(lambda: list(fetch_all(urls, concurrency=100)), repeat)
        sharded = median_s(
            lambda: list(_dask_fetch.fetch_on_cluster(urls, client=client, concurrency=100)),
            repeat,
        )
    finally:
        process.kill()
        process.wait()
    return [
        f"fetch {len(urls)} URLs: local fetch_all {len(urls) / local:.0f}/s, sharded on the "
        f"2-worker cluster {len(urls) / sharded:.0f}/s (one machine: the workers share its "
        "2 cores with the server)"
    ]


def measure(
    client: Any, pool: plait.Pool, processes: plait.Pool, repeat: int, skip_raw: bool
) -> list[str]:
    rows = []
    n = 20_000
    items = list(range(n))
    mine = median_s(lambda: pool.map(tiny, items), repeat)
    # One run: it takes about a minute (one Dask task per item).
    if skip_raw:
        rows.append(f"tiny x {n}: plait dask {mine:.3f} s")
    else:
        raw = median_s(lambda: client.gather(client.map(tiny, items, pure=False)), 1, False)
        rows.append(
            f"tiny x {n}: plait dask {mine:.3f} s, raw client.map {raw:.3f} s: "
            f"{raw / mine:.1f}x faster (goal >= 10x)"
        )

    loops = calibrate_spin(0.012)
    work = [loops] * 64
    times = interleaved(
        {
            "mine": lambda: pool.map(spin, work),
            "raw": lambda: client.gather(client.map(spin, work, pure=False)),
            "warm": lambda: processes.map(spin, work),
            "cold": lambda: plait.map(spin, work, backend="process", workers=2),
            "serial": lambda: [spin(x) for x in work[:8]],
        },
        max(5, 2 * repeat),
    )
    mine, raw, warm, cold = times["mine"], times["raw"], times["warm"], times["cold"]
    serial = times["serial"] * 8
    rows.append(
        f"W2 64 x 12 ms on 2 workers: plait dask {mine:.3f} s, raw client.map {raw:.3f} s, "
        f"plait process {cold:.3f} s (warm Pool {warm:.3f} s), ideal {serial / 2:.3f} s; "
        f"dask/process {mine / cold:.2f}x (goal <= 1.15x), dask/raw {mine / raw:.2f}x "
        "(goal <= 1x)"
    )

    chunks = 400
    one_by_one = median_s(
        lambda: plait.map(tiny, range(chunks), backend="dask", workers=1, chunksize=1), repeat
    )
    window = median_s(lambda: pool.map(tiny, range(chunks), chunksize=1), repeat)
    rows.append(
        f"per chunk: {one_by_one / chunks * 1e6:.0f} us round trip (one at a time), "
        f"{window / chunks * 1e6:.0f} us each with {pool.workers} in flight"
    )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
