"""W1 tiny, W2 cpu and W7 files: plait against the pools of the standard library and peers."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial

import peers
from harness import Goal, Lineup, Report, Sizes, Timing, cores, goal_le, measure, ratio_table
from peers import plait_map
from workloads import calibrate_spin, hash_file, read_file, spin, tiny


def show(report: Report, lineup: Lineup, timings: dict[str, Timing], limit_s: float | None) -> None:
    report.add(*ratio_table(timings, limit_s))
    report.notes(lineup.notes)


def median(timings: dict[str, Timing], name: str) -> float | None:
    timing = timings.get(name)
    return None if timing is None else timing.median


def w1_tiny(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    n, workers = sizes.tiny_calls, cores()
    items = list(range(n))
    expected = [x + 1 for x in items]
    lineup = Lineup()
    lineup.add("serial list comprehension", partial(peers.serial, tiny, items))
    lineup.plait("plait inline", partial(plait_map, tiny, items, backend="inline"))
    lineup.plait("plait thread", partial(plait_map, tiny, items, backend="thread"))
    lineup.plait("plait process, auto chunks", partial(plait_map, tiny, items, backend="process"))
    lineup.plait(
        "plait.Pool process, kept warm",
        partial(peers.plait_warm_pool, tiny, items, "process", workers),
    )
    lineup.plait("plait auto", partial(plait_map, tiny, items, backend="auto"))
    lineup.add("multiprocessing.Pool.map", partial(peers.mp_pool_map, tiny, items, workers))
    lineup.add(
        "ProcessPoolExecutor chunksize=1000",
        partial(peers.process_pool_executor, tiny, items, workers, 1000),
    )
    lineup.skip("ProcessPoolExecutor chunksize=1",
                "about 54 µs per item: 200,000 items would take over 10 s")
    lineup.add("joblib", partial(peers.joblib_map, tiny, items, workers), needs="joblib")
    lineup.add("mpire", partial(peers.mpire_map, tiny, items, workers), needs="mpire")
    lineup.add("ThreadPoolExecutor", partial(peers.thread_pool_executor, tiny, items))
    report.section(
        f"W1 tiny: {n:,} calls of x + 1",
        f"Limit: the serial list comprehension. Process pools use {workers} workers.",
        "",
    )
    lineup.explain_auto(tiny, items)
    timings = measure(lineup, repeat, check=lambda r: r == expected, hang_s=sizes.hang_s)
    show(report, lineup, timings, median(timings, "serial list comprehension"))
    mine, theirs = (
        median(timings, "plait process, auto chunks"),
        median(timings, "multiprocessing.Pool.map"),
    )
    figure = f"plait {_s(mine)} s vs multiprocessing.Pool.map {_s(theirs)} s"
    warm = median(timings, "plait.Pool process, kept warm")
    return [
        goal_le("W1 process backend, auto chunks ≤ multiprocessing.Pool.map", mine, theirs, figure),
        goal_le(
            "W1 plait.Pool (warm) ≤ multiprocessing.Pool.map",
            warm,
            theirs,
            f"plait.Pool {_s(warm)} s vs multiprocessing.Pool.map {_s(theirs)} s",
        ),
    ]


def w2_cpu(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    n, workers = sizes.cpu_calls, cores()
    loops = calibrate_spin(sizes.cpu_call_s)
    items, expected = [loops] * n, [spin(loops)] * n
    lineup = Lineup()
    lineup.add("serial loop", partial(peers.serial, spin, items))
    lineup.plait("plait process", partial(plait_map, spin, items, backend="process"))
    lineup.plait(
        "plait.Pool process, kept warm",
        partial(peers.plait_warm_pool, spin, items, "process", workers),
    )
    lineup.plait("plait thread", partial(plait_map, spin, items, backend="thread"))
    lineup.plait("plait auto", partial(plait_map, spin, items, backend="auto"))
    lineup.add("ProcessPoolExecutor", partial(peers.process_pool_executor, spin, items, workers))
    lineup.add("multiprocessing.Pool.map", partial(peers.mp_pool_map, spin, items, workers))
    lineup.add("joblib (loky)", partial(peers.joblib_map, spin, items, workers), needs="joblib")
    lineup.add("mpire", partial(peers.mpire_map, spin, items, workers), needs="mpire")
    lineup.add("ThreadPoolExecutor (GIL)", partial(peers.thread_pool_executor, spin, items))
    report.section(
        f"W2 cpu: {n} calls of a pure-Python loop of ~{sizes.cpu_call_s * 1000:.0f} ms",
        f"Limit: serial time / {workers} cores. Process pools use {workers} workers; "
        "joblib keeps its loky workers between calls.",
        "",
    )
    lineup.explain_auto(spin, items)
    timings = measure(lineup, repeat, check=lambda r: r == expected, hang_s=sizes.hang_s)
    serial = median(timings, "serial loop")
    ideal = None if serial is None else serial / workers
    show(report, lineup, timings, ideal)
    mine, joblib = median(timings, "plait process"), median(timings, "joblib (loky)")
    warm = median(timings, "plait.Pool process, kept warm")
    bound = None if ideal is None else 1.08 * ideal
    vs_ideal = f"plait process {_s(mine)} s = {_x(mine, ideal)} the ideal {_s(ideal)} s"
    pool_startup(report, sizes, repeat)
    return [
        goal_le("W2 process backend ≤ 1.08 x ideal (serial / cores)", mine, bound, vs_ideal),
        goal_le(
            "W2 process backend ≤ joblib",
            mine,
            joblib,
            f"plait {_s(mine)} s vs joblib {_s(joblib)} s",
        ),
        goal_le(
            "W2 plait.Pool (warm, like loky) ≤ 1.08 x ideal",
            warm,
            bound,
            f"plait.Pool {_s(warm)} s = {_x(warm, ideal)} the ideal {_s(ideal)} s",
        ),
        goal_le(
            "W2 plait.Pool (warm, like loky) ≤ joblib",
            warm,
            joblib,
            f"plait.Pool {_s(warm)} s vs joblib {_s(joblib)} s",
        ),
    ]


def pool_startup(report: Report, sizes: Sizes, repeat: int) -> None:
    """What a fresh pool costs before any work: a map over 2 tiny items, pool made and closed."""
    workers, items = cores(), [1, 2]
    lineup = Lineup()
    lineup.plait("plait process", partial(plait_map, tiny, items, backend="process"))
    lineup.add("multiprocessing.Pool (fork)", partial(peers.mp_pool_map, tiny, items, workers))
    lineup.add("ProcessPoolExecutor", partial(peers.process_pool_executor, tiny, items, workers))
    lineup.add("mpire", partial(peers.mpire_map, tiny, items, workers), needs="mpire")
    timings = measure(lineup, max(3, repeat), check=lambda r: r == [2, 3], hang_s=sizes.hang_s)
    figures = ", ".join(f"{t.name} {_s(t.median)} s" for t in timings.values())
    report.add(
        "",
        f"Start-up of a fresh pool of {workers} process workers (a map over 2 tiny items, "
        f"medians): {figures}.",
    )


@contextlib.contextmanager
def temp_files(count: int, mib: int) -> Iterator[list[str]]:
    """``count`` files of ``mib`` MiB each in a fresh temporary folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="plait-bench-")
    block = bytearray(os.urandom(mib << 20))
    try:
        paths = []
        for i in range(count):
            block[:8] = i.to_bytes(8, "little")
            path = os.path.join(folder, f"file-{i:04d}.bin")
            with open(path, "wb") as file:
                file.write(block)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def w7_files(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    workers = cores()
    with temp_files(sizes.files, sizes.file_mib) as paths:
        expected = [hash_file(p) for p in paths]  # also warms the page cache
        lineup = Lineup()
        lineup.add("read only, serial", partial(peers.serial, read_file, paths), role="baseline")
        lineup.add("serial loop", partial(peers.serial, hash_file, paths))
        lineup.plait("plait thread", partial(plait_map, hash_file, paths, backend="thread"))
        lineup.plait("plait process", partial(plait_map, hash_file, paths, backend="process"))
        lineup.plait("plait auto", partial(plait_map, hash_file, paths, backend="auto"))
        lineup.add("ThreadPoolExecutor", partial(peers.thread_pool_executor, hash_file, paths))
        lineup.add(
            "ProcessPoolExecutor", partial(peers.process_pool_executor, hash_file, paths, workers)
        )
        lineup.add(
            "multiprocessing.Pool.map", partial(peers.mp_pool_map, hash_file, paths, workers)
        )
        joblib_threads = partial(peers.joblib_map, hash_file, paths, workers, "threads")
        lineup.add("joblib threads", joblib_threads, needs="joblib")
        lineup.add(
            "joblib processes", partial(peers.joblib_map, hash_file, paths, workers), needs="joblib"
        )
        lineup.add(
            "mpire processes", partial(peers.mpire_map, hash_file, paths, workers), needs="mpire"
        )
        report.section(
            f"W7 files: sha256 of {sizes.files} files of {sizes.file_mib} MiB (large files)",
            "Limit: max(serial read of the files from the page cache, serial hashing / "
            f"{workers} cores). Pools use {workers} workers unless they pick their own.",
            "",
        )
        lineup.explain_auto(hash_file, paths)
        timings = measure(lineup, repeat, check=lambda r: r == expected, hang_s=sizes.hang_s)
    read, serial = median(timings, "read only, serial"), median(timings, "serial loop")
    limit = None if read is None or serial is None else max(read, serial / workers)
    show(report, lineup, timings, limit)
    report.add("", f"Limit used: {_s(limit)} s (read {_s(read)} s, serial hash {_s(serial)} s).")
    return []


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _x(value: float | None, reference: float | None) -> str:
    return "—" if value is None or not reference else f"{value / reference:.2f} x"
