"""``plait demo``: the "choosing the right approach" table of a guide to threads, processes
and asyncio in Python (``GUIDE``: the article plait grew from), measured on this machine.

Four scenarios, each run with every approach, timed, and compared with what ``backend="auto"``
chose for the same function, in the same rounds (auto's choice in each run is shown, and how
often each when runs chose differently):

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
import collections
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from ._advise import capture_decisions
from ._backends import cpu_count, default_workers
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
# QUICK keeps FULL's 100 files: with 40, the work left after auto's sample sat near the point
# where starting processes stops paying off, so auto chose inline or processes by the load.
QUICK = Sizes(urls=400, serial_urls=20, files=100, cpu_calls=40, jobs=3, job_s=0.3, repeats=1)


@dataclass(slots=True)
class Row:
    approach: str
    backend: str  # the plait backend this approach is ("inline" for one after another)
    seconds: float | None
    note: str = ""
    workers: int | None = None  # calls at once, when it is a plait run that auto could match


@dataclass(slots=True)
class Scenario:
    name: str
    detail: str
    guide: str  # the guide's choice
    rows: list[Row] = field(default_factory=list)
    auto: Row | None = None
    decisions: list[Decision] = field(default_factory=list)  # auto's, one per run
    skipped: str = ""

    def best(self) -> Row | None:
        timed = [row for row in self.rows if row.seconds is not None]
        return min(timed, key=lambda row: row.seconds or 0.0) if timed else None

    @property
    def decision(self) -> Decision | None:
        """Auto's choice: the backend it chose most often (the first such decision)."""
        if not self.decisions:
            return None
        backend, _ = collections.Counter(d.backend for d in self.decisions).most_common(1)[0]
        return next(d for d in self.decisions if d.backend == backend)

    def times_chosen(self, backend: str) -> int:
        return sum(d.backend == backend for d in self.decisions)


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
    """The loop count that makes ``cpu_task`` take about ``target_s`` of CPU time here (CPU,
    not wall time: on a busy machine the wall time of a call is partly time queued for a CPU,
    and loops sized by it would be too short)."""
    loops = 20_000
    timings = []
    for _ in range(5):
        start = time.thread_time()
        cpu_task(loops)
        timings.append(time.thread_time() - start)
    return max(1, round(loops * target_s / max(_median(timings), 1e-6)))


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


Approach = tuple[str, str, int | None, Callable[[], Any]]  # label, backend, workers, the run


def _measure(scenario: Scenario, approaches: list[Approach], auto: Callable[[], Any],
             repeats: int) -> None:
    """Each approach, then plait auto (``explain=True``, its decision captured from the log),
    ``repeats`` rounds in turn, so that a busy spell of the machine falls on all alike. Each
    row gets its median time; auto's row is labelled with what auto chose in each run."""
    times: dict[str, list[float]] = {label: [] for label, *_ in approaches}
    auto_times: list[float] = []
    for _ in range(repeats):
        for label, _, _, run in approaches:
            times[label].append(_timed(run))
        with capture_decisions() as found:
            auto_times.append(_timed(auto))
        scenario.decisions += found[:1]
    scenario.rows += [Row(label, backend, _median(times[label]), workers=workers)
                      for label, backend, workers, _ in approaches]
    scenario.auto = Row(_auto_label(scenario.decisions), "auto", _median(auto_times))


def _auto_label(decisions: list[Decision]) -> str:
    """``plait auto (chose thread x 4)``; when runs chose differently, how often each."""
    counts = collections.Counter(d.backend for d in decisions)
    if not counts:
        return "plait auto"
    if len(counts) == 1:
        return f"plait auto (chose {decisions[0].backend} x {decisions[0].workers})"
    return "plait auto (chose " + ", ".join(f"{b} {n}x" for b, n in counts.most_common()) + ")"


Pooled = Literal["thread", "process"]
_POOL_LABELS = {"thread": "threads", "process": "processes"}


def _pools(fn: Callable[[Any], Any], items: list[Any], *backends: Pooled) -> list[Approach]:
    """``plait.map`` on each of ``backends`` with its default workers, in that order, then a
    plain loop."""
    import plait

    def on(backend: Pooled) -> Approach:
        return (_POOL_LABELS[backend], backend, default_workers(backend),
                lambda: plait.map(fn, items, backend=backend))

    return [*map(on, backends), ("one after another", "inline", 1, lambda: [fn(x) for x in items])]


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
        _measure(scenario, [
            ("asyncio + aiohttp, 100 at once", "asyncio", 100,
             lambda: asyncio.run(_fetch_all(urls, backend="asyncio", workers=100))),
            ("plait.http.fetch_all (aiohttp), 100 at once", "http", None,
             lambda: _fetch_with_plait_http(urls)),
            ("threads + urllib, 100 at once", "thread", None,
             lambda: plait.map(_urlopen, urls, backend="thread", workers=100)),
        ], lambda: asyncio.run(_fetch_all(urls, explain=True)), sizes.repeats)
        part = urls[: sizes.serial_urls]
        serial = _timed(lambda: [_urlopen(url) for url in part]) * len(urls) / len(part)
        scenario.rows.append(Row("one after another (urllib)", "inline", serial,
                                 f"timed on {len(part)}, scaled"))
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
        _measure(scenario, _pools(sha256_file, paths, "thread", "process"),
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
    _measure(scenario, _pools(cpu_task, work, "process", "thread"),
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
    scenario.decisions = [plait.explain(background_job, jobs)]  # runs one job to measure it
    return scenario


# --- scenario 5: a pipeline that mixes backends ---------------------------------------------


def parse_record(body: bytes, loops: int) -> dict[str, Any]:
    """The parse stage: JSON, then pure-Python work of about 5 ms (CPU)."""
    import json

    record: dict[str, Any] = json.loads(body)
    record["score"] = cpu_task(loops)
    return record


def store_record(record: dict[str, Any]) -> int:
    """The store stage: a write that waits about 5 ms, like a database insert."""
    time.sleep(0.005)
    return 1


def _download(url: str) -> bytes:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 direct
    with opener.open(url, timeout=30) as response:
        return bytes(response.read())


def pipelines(sizes: Sizes) -> Scenario:
    """download (20 ms waits, threads) -> parse (~5 ms CPU, processes) -> store (5 ms waits,
    threads): one ``plait.pipeline`` whose stages overlap, against the three stages as
    ``plait.map`` calls one after another (full lists in between)."""
    import functools

    import plait

    count = max(40, sizes.urls // 4)
    scenario = Scenario(
        "Pipelines", f"{count} items: download -> parse (~5 ms CPU) -> store",
        "a pipeline, a backend per stage",
    )
    parse = functools.partial(parse_record, loops=calibrate(0.005))
    stages: list[tuple[Callable[[Any], Any], str, int | None]] = [
        (_download, "thread", 16), (parse, "process", None), (store_record, "thread", 4),
    ]

    def flow(urls: list[str]) -> int:
        run = plait.pipeline(urls)
        for fn, backend, workers in stages:
            run = run.map(fn, backend=backend, workers=workers)
        return sum(run)

    def one_after_another(urls: list[str]) -> int:
        values: list[Any] = urls
        for fn, backend, workers in stages:
            options: dict[str, Any] = {"backend": backend, "workers": workers}
            values = plait.map(fn, values, **options)
        return sum(values)

    with api_server(sizes.latency_s) as base:
        urls = [f"{base}/item/{i}" for i in range(count)]
        plait.map(_download, urls[:20], backend="thread", workers=16)  # warm up the server
        for label, backend, run in (
            ("plait.pipeline: the stages overlap", "pipeline", flow),
            ("three plait.map calls, one after another", "map", one_after_another),
        ):
            times = [_timed(lambda run=run: run(urls)) for _ in range(sizes.repeats)]  # type: ignore[misc]
            scenario.rows.append(Row(label, backend, _median(times)))
    return scenario


# --- the report ---------------------------------------------------------------------------------


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


WIDTH = 100  # prose lines of the report wrap here
NOISY = 1.5  # auto's time this far from the row of the backend it chose: said so


def report(scenarios: list[Scenario], sizes: Sizes, load: float | None = None) -> str:
    gil = "GIL on" if getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL off"
    runs = "one run each" if sizes.repeats == 1 else f"median of {sizes.repeats} runs"
    width = max([len("Approach")] + [len(row.approach) for s in scenarios for row in _all_rows(s)])
    machine = (f"({cpu_count()} cores, {platform.python_implementation()} "
               f"{platform.python_version()}, {gil}; {runs})")
    lines = [
        *textwrap.wrap(f"plait demo: the scenarios of {GUIDE}, each run with every approach on "
                       f"this machine {machine}", WIDTH),
        *textwrap.wrap(_load_note(load), WIDTH),
        "",
        f"{'':<2}{'Approach':<{width}} {'Time':>8} {'vs best':>8}",
    ]
    for scenario in scenarios:
        lines += _scenario_lines(scenario, width)
    lines += _checked_table(scenarios)
    lines += ["", "Why auto chose what it chose:"]
    for scenario in scenarios:
        lines += _why(scenario)
    return "\n".join(lines)


GUIDE = ("a guide to threads, processes and asyncio in Python (the DEV Community article "
         "\"Concurrency and Parallelism in Python\", which plait grew from)")


def _all_rows(scenario: Scenario) -> list[Row]:
    return [*scenario.rows, *([scenario.auto] if scenario.auto else [])]


def _chosen(scenario: Scenario) -> str:
    """What auto chose: one backend, or how often each when runs differed."""
    counts = collections.Counter(d.backend for d in scenario.decisions)
    if len(counts) <= 1:
        return next(iter(counts), "-")
    return ", ".join(f"{backend} {n}x" for backend, n in counts.most_common())


def _checked_table(scenarios: list[Scenario]) -> list[str]:
    """Scenario, the guide's choice, the fastest here, auto's choice: columns as wide as needed."""
    head = ("Scenario", "The guide says", "Fastest here", "auto chose")
    rows = [(s.name, s.guide, best.approach if (best := s.best()) else "skipped", _chosen(s))
            for s in scenarios]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{cell:<{w}}" for cell, w in zip(cells, widths, strict=True)).rstrip()

    return ["The guide's table, checked here:", "", line(head),
            line(tuple("-" * w for w in widths)), *[line(row) for row in rows]]


def _why(scenario: Scenario) -> list[str]:
    """Auto's reason; each distinct one, with how many runs gave it, when runs differed."""
    runs = len(scenario.decisions)
    distinct = {d.backend: d for d in scenario.decisions}
    lines = []
    for backend, d in distinct.items():
        share = "" if len(distinct) == 1 else f" ({scenario.times_chosen(backend)} of {runs} runs)"
        text = f"- {scenario.name}{share}: {d.backend} x {d.workers}. {d.reason}"
        lines += textwrap.wrap(text, WIDTH, subsequent_indent="  ")
    return lines


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _load_note(load: float | None) -> str:
    """A warning when other work competed for the cores as the demo began: noisy numbers."""
    if load is None or load < 0.75 * cpu_count():
        return ""
    return (f"Note: the load average was {load:.1f} on {cpu_count()} cores when the demo began: "
            "other work competed for them, so these times are noisy.")


def _scenario_lines(scenario: Scenario, width: int) -> list[str]:
    title = f"{scenario.name}: {scenario.detail} (the guide: {scenario.guide})"
    if scenario.skipped:
        return [title, f"  skipped: {scenario.skipped}", ""]
    best = scenario.best()
    base = best.seconds if best and best.seconds else 1.0
    lines = [title]
    for row in _all_rows(scenario):
        ratio = "" if row.seconds is None else f"{row.seconds / base:.1f}x"
        notes = [note for note in (_marker(scenario, row), row.note, _noisy(scenario, row))
                 if note]
        lines.append(f"  {row.approach:<{width}} {_fmt(row.seconds):>8} {ratio:>8}  "
                     + "; ".join(notes))
    return [line.rstrip() for line in lines] + [""]


def _marker(scenario: Scenario, row: Row) -> str:
    """``<- auto's choice`` on the row of the backend auto chose (how often, if runs differed)."""
    chosen, runs = scenario.times_chosen(row.backend), len(scenario.decisions)
    if not chosen:
        return ""
    return "<- auto's choice" if chosen == runs else f"<- auto's choice in {chosen} of {runs} runs"


def _noisy(scenario: Scenario, row: Row) -> str:
    """On auto's row: a time far from that of the same backend and workers, which auto chose in
    every run, is noise."""
    decision = scenario.decision
    if row is not scenario.auto or decision is None or row.seconds is None:
        return ""
    if scenario.times_chosen(decision.backend) != len(scenario.decisions):
        return ""
    same = next((r for r in scenario.rows
                 if (r.backend, r.workers) == (decision.backend, decision.workers)), None)
    if same is None or not same.seconds or 1 / NOISY <= row.seconds / same.seconds <= NOISY:
        return ""
    return f"far from the {same.approach!r} row: noisy times"


def run_demo(*, quick: bool = False) -> int:
    sizes = QUICK if quick else FULL
    load = load_average()
    scenarios = []
    for measure in (api_calls, reading_files, cpu_heavy, background_tasks, pipelines):
        print(f"measuring: {measure.__name__.replace('_', ' ')} ...", file=sys.stderr, flush=True)
        scenarios.append(measure(sizes))
    print(report(scenarios, sizes, load))
    return 0
