"""``plait demo``: the guide's "choosing the right approach" table, measured on this machine.

Four scenarios, each run with every approach, timed, and compared with what ``backend="auto"``
chose for the same function:

- many API calls: GETs to a real aiohttp server that the demo starts on 127.0.0.1 (a child
  process, with a simulated 20 ms of latency per call): asyncio + aiohttp, threads + urllib,
  and one after another (timed on a part and scaled up);
- reading large files: temporary files that the demo writes and removes, hashed with threads,
  processes, and one after another;
- CPU-heavy computations: a pure-Python loop, with processes, threads, and one after another;
- background tasks: long-running jobs started with ``plait.Pool(...).submit`` while the main
  thread keeps ticking; the worst pause of the main thread shows whether it stayed responsive.

aiohttp is imported only here, inside the API scenario.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._advise import capture_decisions
from ._backends import cpu_count
from ._decision import Decision


@dataclass(frozen=True, slots=True)
class Sizes:
    urls: int = 2000
    latency_s: float = 0.02
    serial_urls: int = 50  # one-after-another calls actually made; the rest is scaled
    files: int = 100
    file_mib: int = 4
    cpu_calls: int = 64
    cpu_call_s: float = 0.012  # each call: a pure-Python loop calibrated to about this long
    jobs: int = 4
    job_s: float = 1.0
    repeats: int = 3


FULL = Sizes()
QUICK = Sizes(urls=400, serial_urls=20, files=40, cpu_calls=40, jobs=3, job_s=0.3, repeats=1)


@dataclass(slots=True)
class Row:
    approach: str
    backend: str  # the plait backend this approach is ("inline" for one after another)
    seconds: float | None
    note: str = ""


@dataclass(slots=True)
class Scenario:
    name: str
    detail: str
    guide: str  # the guide's choice
    rows: list[Row] = field(default_factory=list)
    auto: Row | None = None
    decision: Decision | None = None
    skipped: str = ""

    def best(self) -> Row | None:
        timed = [row for row in self.rows if row.seconds is not None]
        return min(timed, key=lambda row: row.seconds or 0.0) if timed else None


# --- the tasks (module level, so worker processes import them by name) -----------------------


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cpu_task(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(target_s: float) -> int:
    """The loop count that makes ``cpu_task`` take about ``target_s`` here."""
    loops = 20_000
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        cpu_task(loops)
        timings.append(time.perf_counter() - start)
    return max(1, round(loops * target_s / _median(timings)))


def background_job(seconds: float) -> int:
    """A long-running job that mostly waits, like a poller or an uploader."""
    steps = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(0.02)
        steps += 1
    return steps


# --- running and timing -------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _measure(approaches: list[tuple[str, str, Callable[[], Any]]], repeats: int) -> list[Row]:
    """Each approach ``repeats`` times, interleaved; the median time of each."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in approaches}
    for _ in range(repeats):
        for label, _, run in approaches:
            times[label].append(_timed(run))
    return [Row(label, backend, _median(times[label])) for label, backend, _ in approaches]


def _auto_run(run: Callable[[], Any], repeats: int) -> tuple[Row, Decision | None]:
    """Run with backend="auto" and explain=True; the decision is captured from the log."""
    seconds: list[float] = []
    decision: Decision | None = None
    for _ in range(repeats):
        with capture_decisions() as found:
            seconds.append(_timed(run))
        decision = found[0] if found else decision
    chosen = decision.backend if decision else "?"
    return Row(f"plait auto (chose {chosen})", "auto", _median(seconds)), decision


# --- scenario 1: many API calls -------------------------------------------------------------


def serve(latency_s: float) -> None:
    """The demo's API server (run in a child process): prints its port, stops at stdin's end."""
    import socket

    from aiohttp import web

    async def item(request: web.Request) -> web.Response:
        await asyncio.sleep(latency_s)
        return web.json_response({"id": request.match_info["id"], "ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/item/{id}", item)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        await web.SockSite(runner, sock).start()
        print(sock.getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


@contextmanager
def api_server(latency_s: float) -> Iterator[str]:
    """A child process serving ``/item/{id}`` on 127.0.0.1; yields its base URL."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            f"from plait._demo import serve; serve({latency_s!r})")
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError("the demo's API server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


async def _fetch_all(urls: list[str], **opts: Any) -> int:
    """asyncio + aiohttp: one session, a coroutine per URL, run by plait.amap."""
    import aiohttp

    import plait

    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(url: str) -> int:
            async with session.get(url) as response:
                return len(await response.read())

        return sum([size async for size in plait.amap(fetch, urls, **opts)])


def _fetch_with_plait_http(urls: list[str]) -> int:
    """plait's own URL fetcher: one shared aiohttp session, retries, nothing lost."""
    from .http import fetch_all

    return sum(1 for response in fetch_all(urls, concurrency=100) if response.error is None)


def _urlopen(url: str) -> int:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 direct
    with opener.open(url, timeout=30) as response:
        return len(response.read())


def api_calls(sizes: Sizes) -> Scenario:
    scenario = Scenario(
        "Many API calls", f"{sizes.urls:,} GETs, {sizes.latency_s * 1000:.0f} ms each",
        "asyncio + aiohttp",
    )
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        scenario.skipped = "aiohttp is not installed: pip install 'plait[http]'"
        return scenario
    import plait

    with api_server(sizes.latency_s) as base:
        urls = [f"{base}/item/{i}" for i in range(sizes.urls)]
        asyncio.run(_fetch_all(urls[:50], backend="asyncio"))  # warm up the server
        scenario.rows = _measure([
            ("asyncio + aiohttp, 100 at once", "asyncio",
             lambda: asyncio.run(_fetch_all(urls, backend="asyncio", workers=100))),
            ("plait.http.fetch_all (aiohttp), 100 at once", "http",
             lambda: _fetch_with_plait_http(urls)),
            ("threads + urllib, 100 at once", "thread",
             lambda: plait.map(_urlopen, urls, backend="thread", workers=100)),
        ], sizes.repeats)
        part = urls[: sizes.serial_urls]
        serial = _timed(lambda: [_urlopen(url) for url in part]) * len(urls) / len(part)
        scenario.rows.append(Row("one after another (urllib)", "inline", serial,
                                 f"timed on {len(part)}, scaled"))
        scenario.auto, scenario.decision = _auto_run(
            lambda: asyncio.run(_fetch_all(urls, explain=True)), sizes.repeats)
    return scenario


# --- scenario 2: reading large files ------------------------------------------------------------


@contextmanager
def large_files(count: int, mib: int) -> Iterator[list[str]]:
    """``count`` files of ``mib`` MiB in a temporary folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="plait-demo-")
    try:
        block = os.urandom(mib << 20)
        paths = []
        for i in range(count):
            path = os.path.join(folder, f"file-{i:04d}.bin")
            with open(path, "wb") as handle:
                handle.write(i.to_bytes(8, "little"))
                handle.write(block)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def reading_files(sizes: Sizes) -> Scenario:
    import plait

    scenario = Scenario(
        "Reading large files", f"SHA-256 of {sizes.files} files of {sizes.file_mib} MiB",
        "threads",
    )
    with large_files(sizes.files, sizes.file_mib) as paths:
        [sha256_file(path) for path in paths[:2]]  # warm up
        scenario.rows = _measure([
            ("threads", "thread", lambda: plait.map(sha256_file, paths, backend="thread")),
            ("processes", "process", lambda: plait.map(sha256_file, paths, backend="process")),
            ("one after another", "inline", lambda: [sha256_file(path) for path in paths]),
        ], sizes.repeats)
        scenario.auto, scenario.decision = _auto_run(
            lambda: plait.map(sha256_file, paths, explain=True), sizes.repeats)
    return scenario


# --- scenario 3: CPU-heavy computations ---------------------------------------------------------


def cpu_heavy(sizes: Sizes) -> Scenario:
    import plait

    scenario = Scenario(
        "CPU-heavy computations",
        f"{sizes.cpu_calls} pure-Python loops of ~{sizes.cpu_call_s * 1000:.0f} ms",
        "processes",
    )
    work = [calibrate(sizes.cpu_call_s)] * sizes.cpu_calls
    scenario.rows = _measure([
        ("processes", "process", lambda: plait.map(cpu_task, work, backend="process")),
        ("threads", "thread", lambda: plait.map(cpu_task, work, backend="thread")),
        ("one after another", "inline", lambda: [cpu_task(n) for n in work]),
    ], sizes.repeats)
    scenario.auto, scenario.decision = _auto_run(
        lambda: plait.map(cpu_task, work, explain=True), sizes.repeats)
    return scenario


# --- scenario 4: background tasks ---------------------------------------------------------------


def _tick_until(finished: Callable[[], bool], start: float) -> float:
    """The main thread ticks every 5 ms until ``finished()``: its worst pause."""
    last, worst = start, 0.0
    while not finished():
        time.sleep(0.005)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    return max(worst, time.perf_counter() - last)


def _in_pool(backend: str, jobs: list[float]) -> tuple[float, float]:
    """Jobs started with Pool.submit, main thread free: (seconds, worst pause)."""
    import plait

    start = time.perf_counter()
    with plait.Pool(backend=backend, workers=len(jobs)) as pool:
        futures = [pool.submit(background_job, seconds) for seconds in jobs]
        pause = _tick_until(lambda: all(future.done() for future in futures), start)
        for future in futures:
            future.result()
    return time.perf_counter() - start, pause


def _in_main_thread(jobs: list[float]) -> tuple[float, float]:
    start = time.perf_counter()
    for seconds in jobs:
        background_job(seconds)
    elapsed = time.perf_counter() - start
    return elapsed, elapsed  # the main thread could do nothing else meanwhile


def background_tasks(sizes: Sizes) -> Scenario:
    import plait

    scenario = Scenario(
        "Background tasks", f"{sizes.jobs} jobs of {sizes.job_s:g} s, main thread ticking",
        "threads",
    )
    jobs = [sizes.job_s] * sizes.jobs
    approaches: list[tuple[str, str, Callable[[], tuple[float, float]]]] = [
        ("threads: Pool(backend='thread').submit", "thread", lambda: _in_pool("thread", jobs)),
        ("processes: Pool(backend='process').submit", "process",
         lambda: _in_pool("process", jobs)),
        ("in the main thread, one after another", "inline", lambda: _in_main_thread(jobs)),
    ]
    for label, backend, run in approaches:
        seconds, pause = run()
        note = f"main thread's worst pause {_fmt(pause)}"
        scenario.rows.append(Row(label, backend, seconds, note))
    scenario.decision = plait.explain(background_job, jobs)  # runs one job to measure it
    return scenario


# --- the report ---------------------------------------------------------------------------------


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def report(scenarios: list[Scenario], sizes: Sizes, load: float | None = None) -> str:
    gil = "GIL on" if getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL off"
    runs = "one run each" if sizes.repeats == 1 else f"median of {sizes.repeats} runs"
    lines = [
        "plait demo: the guide's \"choosing the right approach\", measured on this machine",
        f"({cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{gil}; {runs})",
        *_load_note(load),
        "",
        f"{'':<2}{'Approach':<44} {'Time':>8} {'vs best':>8}",
    ]
    for scenario in scenarios:
        lines += _scenario_lines(scenario)
    lines += ["The guide's table, checked here:", "",
              f"{'Scenario':<24} {'The guide says':<19} {'Fastest here':<42} auto chose",
              f"{'-' * 24} {'-' * 19} {'-' * 42} {'-' * 10}"]
    for scenario in scenarios:
        best = scenario.best()
        chosen = scenario.decision.backend if scenario.decision else "-"
        fastest = best.approach if best else "skipped"
        lines.append(f"{scenario.name:<24} {scenario.guide:<19} {fastest:<42} {chosen}")
    lines += ["", "Why auto chose what it chose:"]
    for scenario in scenarios:
        if scenario.decision is not None:
            d = scenario.decision
            lines.append(f"- {scenario.name}: {d.backend} x {d.workers}. {d.reason}")
    return "\n".join(lines)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _load_note(load: float | None) -> list[str]:
    """A warning when other work competed for the cores as the demo began: noisy numbers."""
    if load is None or load < 0.75 * cpu_count():
        return []
    return [f"Note: the load average was {load:.1f} on {cpu_count()} cores when the demo began: "
            "other work competed for them, so these times are noisy."]


def _scenario_lines(scenario: Scenario) -> list[str]:
    title = f"{scenario.name}: {scenario.detail} (the guide: {scenario.guide})"
    if scenario.skipped:
        return [title, f"  skipped: {scenario.skipped}", ""]
    best = scenario.best()
    base = best.seconds if best and best.seconds else 1.0
    chosen = scenario.decision.backend if scenario.decision else None
    lines = [title]
    for row in [*scenario.rows, *([scenario.auto] if scenario.auto else [])]:
        ratio = "" if row.seconds is None else f"{row.seconds / base:.1f}x"
        notes = [note for note in ("<- auto's choice" if row.backend == chosen else "", row.note)
                 if note]
        lines.append(f"  {row.approach:<44} {_fmt(row.seconds):>8} {ratio:>8}  "
                     + "; ".join(notes))
    return [line.rstrip() for line in lines] + [""]


def run_demo(*, quick: bool = False) -> int:
    sizes = QUICK if quick else FULL
    load = load_average()
    scenarios = []
    for measure in (api_calls, reading_files, cpu_heavy, background_tasks):
        print(f"measuring: {measure.__name__.replace('_', ' ')} ...", file=sys.stderr, flush=True)
        scenarios.append(measure(sizes))
    print(report(scenarios, sizes, load))
    return 0
