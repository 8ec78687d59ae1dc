"""W5 http: 5,000 GETs to an aiohttp server in another process on 127.0.0.1.

    .venv/bin/python benchmarks/w5_http.py                 # throughput, then memory
    .venv/bin/python benchmarks/w5_http.py --rounds 5 --memory-urls 100000

Contenders, interleaved round by round (medians quoted; the machines are shared and noisy):
    plait.http          fetch_all(urls, concurrency=100), retries=3 and the progress bar on
    plait.http (bare)   the same with progress off
    plait.http async    afetch_all consumed by a coroutine on the same loop (no thread hand-off)
    aiohttp gather      hand-written: one session, TCPConnector(limit=100), gather of 5,000 tasks
    requests x32        requests.Session per thread, ThreadPoolExecutor(32)   (urllib if missing)

Also: CPU seconds per wall second of this process and of the server during each run (does
one event loop saturate a core?), a sharded run (two processes, one loop each), and memory for
100,000 URLs from a generator against the same fast server (peak RSS of a fresh process, next
to a run of 10,000: flat means the same).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SERVER = textwrap.dedent("""
    import asyncio, socket
    from aiohttp import web

    async def ok(request):
        return web.Response(text="ok " + request.match_info["name"])

    async def main():
        app = web.Application()
        app.router.add_get("/ok/{name}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=4096).start()
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")

CONNECTIONS = 100


def start_server() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the contenders ------------------------------------------------------------------------


def plait_http(urls: list[str], progress: bool = True) -> int:
    from plait.http import fetch_all

    ok = 0
    for response in fetch_all(urls, concurrency=CONNECTIONS, retries=3, progress=progress):
        ok += response.error is None
    return ok


def plait_bare(urls: list[str]) -> int:
    return plait_http(urls, progress=False)


def plait_async(urls: list[str]) -> int:
    """The async twin, consumed by a coroutine on the same loop (no thread hand-off)."""
    from plait.http import afetch_all

    async def main() -> int:
        ok = 0
        async for response in afetch_all(urls, concurrency=CONNECTIONS, retries=3):
            ok += response.error is None
        return ok

    return asyncio.run(main())


def aiohttp_gather(urls: list[str]) -> int:
    import aiohttp

    async def main() -> int:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(url: str) -> bool:
                async with session.get(url) as response:
                    await response.read()
                    return response.status == 200

            return sum(await asyncio.gather(*(get(url) for url in urls)))

    return asyncio.run(main())


def threads_32(urls: list[str]) -> int:
    local = threading.local()
    requests: Any = None
    if _has("requests"):
        import requests

    def get(url: str) -> bool:
        if requests is None:
            import urllib.request

            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
                return bool(response.status == 200)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return bool(session.get(url, timeout=30).status_code == 200)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        return sum(pool.map(get, urls))


SHARD = textwrap.dedent("""
    import sys, json, time
    sys.path.insert(0, sys.argv[1])
    from plait.http import fetch_all
    urls = json.loads(sys.stdin.readline())
    list(fetch_all(urls[:200], concurrency=int(sys.argv[2])))  # warm: imports, connections
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    ok = sum(r.error is None for r in fetch_all(urls, concurrency=int(sys.argv[2]), retries=3))
    print(ok, time.process_time() - cpu, flush=True)
""")


def sharded(urls: list[str], shards: int = 2) -> int:
    """One event loop per process, each on a share of the URLs; timed from a common start
    signal, after each process has imported everything (so start-up is not counted)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SHARD, str(ROOT / "src"), str(CONNECTIONS // shards)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(shards)
    ]
    pipes = [(p.stdin, p.stdout) for p in processes]
    for i, (stdin, stdout) in enumerate(pipes):
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(urls[i::shards]) + "\n")
        stdin.flush()
    for _, stdout in pipes:
        assert stdout is not None and stdout.readline().strip() == "ready"
    global _shard_started
    _shard_started = time.perf_counter()
    for stdin, _ in pipes:
        assert stdin is not None
        stdin.write("go\n")
        stdin.close()
    ok, cpu = 0, 0.0
    for process, (_, stdout) in zip(processes, pipes, strict=True):
        assert stdout is not None
        count, seconds = stdout.readline().split()
        ok, cpu = ok + int(count), cpu + float(seconds)
        process.wait()
    global _shard_cpu
    _shard_cpu = cpu
    return ok


_shard_started: float | None = None  # when the sharded processes were told to start
_shard_cpu = 0.0  # CPU seconds they spent on the timed part


# --- timing --------------------------------------------------------------------------------


def measure(fn: Callable[[list[str]], int], urls: list[str], server_pid: int) -> dict[str, float]:
    global _shard_started
    _shard_started = None
    server_cpu = cpu_seconds(server_pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    ok = fn(urls)
    wall = time.perf_counter() - (_shard_started or started)
    after = resource.getrusage(resource.RUSAGE_SELF)
    if ok != len(urls):
        raise RuntimeError(f"{fn.__name__}: {ok} of {len(urls)} succeeded")
    client_cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if _shard_started is not None:  # the work ran in child processes: count theirs
        client_cpu = _shard_cpu
    return {
        "wall": wall,
        "client_cpu": client_cpu / wall,
        "server_cpu": (cpu_seconds(server_pid) - server_cpu) / wall,
    }


def throughput(n: int, rounds: int, shards: int) -> dict[str, list[dict[str, float]]]:
    contenders: dict[str, Callable[[list[str]], int]] = {
        "plait.http": plait_http,
        "plait.http (bare)": plait_bare,
        "plait.http async": plait_async,
        "aiohttp gather": aiohttp_gather,
        "requests x32" if _has("requests") else "urllib x32": threads_32,
    }
    if shards > 1:
        contenders[f"plait.http x{shards} processes"] = lambda urls: sharded(urls, shards)
    server, port = start_server()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    try:
        urls = [f"http://127.0.0.1:{port}/ok/{i}" for i in range(n)]
        for fn in contenders.values():  # warm-up: imports, first connections
            fn(urls[:500])
        for round_number in range(rounds):
            order = list(contenders.items())
            order = order[round_number % len(order):] + order[: round_number % len(order)]
            for name, fn in order:
                results[name].append(measure(fn, urls, server.pid))
                print(f"  round {round_number + 1} {name}: {results[name][-1]['wall']:.3f} s",
                      file=sys.stderr)
    finally:
        server.kill()
        server.wait()
    return results


def report(results: dict[str, list[dict[str, float]]], n: int) -> None:
    """Medians per contender; the ratios are medians of per-round ratios (each round runs
    every contender back to back, so a ratio compares runs that saw the same machine load)."""
    threads_name = next(name for name in results if name.endswith("x32"))

    def ratio(name: str, peer: str) -> float:
        return statistics.median(
            p["wall"] / c["wall"] for c, p in zip(results[name], results[peer], strict=True)
        )

    rounds = len(next(iter(results.values())))
    print(f"\nW5 http: {n} GETs, {CONNECTIONS} connections, server in another process "
          f"({os.cpu_count()} cores); medians of {rounds} interleaved rounds")
    print(f"{'contender':28} {'seconds':>8} {'req/s':>8} {'vs gather':>10} {'vs threads':>11}"
          f" {'client CPU':>11} {'server CPU':>11} {'client us/req':>14}")
    for name, runs in results.items():
        wall = statistics.median(run["wall"] for run in runs)
        client = statistics.median(run["client_cpu"] for run in runs)
        server = statistics.median(run["server_cpu"] for run in runs)
        per_request_us = statistics.median(r["client_cpu"] * r["wall"] for r in runs) / n * 1e6
        print(f"{name:28} {wall:8.3f} {n / wall:8.0f} {ratio(name, 'aiohttp gather'):9.2f}x"
              f" {ratio(name, threads_name):10.2f}x {client:10.2f}  {server:10.2f}"
              f" {per_request_us:14.0f}")
    print("(vs gather / vs threads: throughput ratio, higher is better; CPU: CPU-seconds per "
          "wall second, 1.00 = one core saturated; client us/req: client CPU per request)")


# --- memory --------------------------------------------------------------------------------

MEMORY = textwrap.dedent("""
    import resource, sys, time
    sys.path.insert(0, sys.argv[1])
    from plait.http import fetch_all
    port, n = int(sys.argv[2]), int(sys.argv[3])
    pulled = 0
    def urls():
        global pulled
        for i in range(n):
            pulled += 1
            yield f"http://127.0.0.1:{port}/ok/{i}"
    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    import aiohttp  # count the library itself in the baseline
    base = rss_kib()
    ok, done, ahead, samples = 0, 0, 0, []
    started = time.perf_counter()
    for r in fetch_all(urls(), concurrency=100, read="none"):
        ok += r.error is None
        done += 1
        ahead = max(ahead, pulled - done)
        if done % (n // 10) == 0:
            samples.append(rss_kib())
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(ok, base, peak, ahead, round(took, 2), *samples)
""")


def memory(counts: list[int]) -> None:
    server, port = start_server()
    try:
        print("\nmemory: URLs from a generator, fresh process each, read='none', concurrency=100")
        print(f"{'URLs':>8} {'ok':>8} {'RSS before':>11} {'peak RSS':>9} {'growth':>8}"
              f" {'max read ahead':>15} {'seconds':>8}  RSS at each tenth (MiB)")
        for n in counts:
            out = subprocess.run(
                [sys.executable, "-c", MEMORY, str(ROOT / "src"), str(port), str(n)],
                capture_output=True, text=True, check=True, timeout=600,
            ).stdout.split()
            ok, base, peak, ahead = (int(x) for x in out[:4])
            took, samples = float(out[4]), [int(x) / 1024 for x in out[5:]]
            tenths = " ".join(f"{s:.0f}" for s in samples)
            print(f"{n:8} {ok:8} {base / 1024:9.1f}Mi {peak / 1024:7.1f}Mi "
                  f"{(peak - base) / 1024:6.1f}Mi {ahead:15} {took:8.1f}  {tenths}")
    finally:
        server.kill()
        server.wait()


def _has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=5000, help="GETs per run (default 5000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shards", type=int, default=2, help="processes for the sharded run")
    parser.add_argument("--memory-urls", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_throughput:
        report(throughput(args.n, args.rounds, args.shards), args.n)
    if args.memory_urls:
        memory(args.memory_urls)


if __name__ == "__main__":
    main()
