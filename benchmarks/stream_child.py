"""W6 child: one contender maps over an infinite generator; the consumer takes one result and
stalls. Run by ``stream.py`` in its own process group, because some peers never stop reading.

    python stream_child.py CONTENDER STALL_S TIMEOUT_S CAP OUT_FILE

Writes ``{"first_s": seconds or null, "read": items, "capped": bool}`` to OUT_FILE and leaves
at once with ``os._exit``: after the stall, after TIMEOUT_S without a first result, or as soon
as the generator has produced CAP items. (A file, not stdout: the peers' worker processes
inherit stdout and would keep a pipe open after this process has gone.)
"""

from __future__ import annotations

import concurrent.futures
import importlib
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from workloads import async_tiny, tiny

import plait

WORKERS = 2
_keep: list[Any] = []  # pools stay referenced while the consumer stalls


class Probe:
    """Counts what the generator produced, and reports once."""

    def __init__(self, cap: int, out_file: str) -> None:
        self.cap = cap
        self.out_file = out_file
        self.read = 0
        self.first_s: float | None = None
        self.got_first = threading.Event()

    def endless(self) -> Iterator[int]:
        for i in itertools.count():
            if i >= self.cap:
                self.report(capped=True)
            self.read += 1
            yield i

    def report(self, capped: bool = False) -> NoReturn:
        line = json.dumps({"first_s": self.first_s, "read": self.read, "capped": capped})
        try:
            with open(self.out_file, "w", encoding="utf-8") as out:
                out.write(line + "\n")
        finally:
            os._exit(0)  # also when the parent is gone (a broken pipe)


def plait_thread(items: Iterator[int]) -> Iterator[Any]:
    return plait.imap(tiny, items, backend="thread", workers=WORKERS, chunksize=1)


def plait_process(items: Iterator[int]) -> Iterator[Any]:
    return plait.imap(tiny, items, backend="process", workers=WORKERS, chunksize=1)


def plait_asyncio(items: Iterator[int]) -> Iterator[Any]:
    return plait.imap(async_tiny, items, backend="asyncio", workers=WORKERS, chunksize=1)


def plait_process_auto_chunks(items: Iterator[int]) -> Iterator[Any]:
    return plait.imap(tiny, items, backend="process", workers=WORKERS)


def plait_auto(items: Iterator[int]) -> Iterator[Any]:
    return plait.imap(tiny, items)


def mp_pool_imap(items: Iterator[int]) -> Iterator[Any]:
    pool = multiprocessing.Pool(WORKERS)
    _keep.append(pool)
    return pool.imap(tiny, items)


def mpire_imap(items: Iterator[int]) -> Iterator[Any]:
    from mpire.pool import WorkerPool

    pool = WorkerPool(n_jobs=WORKERS)
    _keep.append(pool)
    return pool.imap(tiny, items)


def joblib_generator(items: Iterator[int]) -> Iterator[Any]:
    import joblib

    parallel = joblib.Parallel(n_jobs=WORKERS, return_as="generator")
    return iter(parallel(joblib.delayed(tiny)(x) for x in items))


def process_pool_executor(items: Iterator[int]) -> Iterator[Any]:
    executor = concurrent.futures.ProcessPoolExecutor(WORKERS)
    _keep.append(executor)
    return executor.map(tiny, items)


def thread_pool_executor(items: Iterator[int]) -> Iterator[Any]:
    executor = concurrent.futures.ThreadPoolExecutor(WORKERS)
    _keep.append(executor)
    return executor.map(tiny, items)


CONTENDERS: dict[str, Callable[[Iterator[int]], Iterator[Any]]] = {
    "plait-thread": plait_thread,
    "plait-process": plait_process,
    "plait-asyncio": plait_asyncio,
    "plait-process-auto-chunks": plait_process_auto_chunks,
    "plait-auto": plait_auto,
    "mp-pool-imap": mp_pool_imap,
    "mpire-imap": mpire_imap,
    "joblib-generator": joblib_generator,
    "process-pool-executor": process_pool_executor,
    "thread-pool-executor": thread_pool_executor,
}
NEEDS = {"mpire-imap": "mpire", "joblib-generator": "joblib"}


def watchdog(probe: Probe, stall_s: float, timeout_s: float) -> None:
    if probe.got_first.wait(timeout_s):
        time.sleep(stall_s)
    probe.report()


def main() -> None:
    name, out_file = sys.argv[1], sys.argv[5]
    stall_s, timeout_s, cap = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    if name in NEEDS:
        importlib.import_module(NEEDS[name])  # not counted in the time to the first result
    probe = Probe(cap, out_file)
    threading.Thread(target=watchdog, args=(probe, stall_s, timeout_s), daemon=True).start()
    start = time.perf_counter()
    results = CONTENDERS[name](probe.endless())
    first = next(results)
    probe.first_s = time.perf_counter() - start
    probe.got_first.set()
    _keep.extend([results, first])
    time.sleep(stall_s + timeout_s + 60)  # the stall: the watchdog reports and leaves


if __name__ == "__main__":
    main()
