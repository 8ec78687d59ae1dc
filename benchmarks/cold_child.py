"""One cold measurement: ``python cold_child.py CONTENDER WORKLOAD LOOPS`` imports what the
contender needs, then times its first call in this fresh interpreter and prints the seconds.

Contenders ending in ``@2`` time a second call instead (plait's shared workers, a later private
pool), after an untimed first one.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import peers
from harness import cores
from workloads import spin, tiny

import plait


def _mp(method: str, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    with multiprocessing.get_context(method).Pool(cores()) as pool:
        return pool.map(fn, items)


def _private_pool(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    with plait.Pool(backend="process", workers=cores()) as pool:
        return pool.map(fn, items)


def _ppe(fn: Callable[[Any], Any], items: list[Any], chunksize: int) -> list[Any]:
    with concurrent.futures.ProcessPoolExecutor(cores()) as executor:
        return list(executor.map(fn, items, chunksize=chunksize))


CONTENDERS: dict[str, Callable[[Callable[[Any], Any], list[Any]], Any]] = {
    "serial": peers.serial,
    "plait process": partial(peers.plait_map, backend="process", workers=cores()),
    "plait auto": partial(peers.plait_map, backend="auto"),
    "plait process @2": partial(peers.plait_map, backend="process", workers=cores()),
    "plait.Pool process @2": _private_pool,
    "multiprocessing.Pool (fork)": partial(_mp, "fork"),
    "multiprocessing.Pool (forkserver)": partial(_mp, "forkserver"),
    "ProcessPoolExecutor": partial(_ppe, chunksize=1),
    "ProcessPoolExecutor chunksize=1000": partial(_ppe, chunksize=1000),
    "joblib (loky)": lambda fn, items: peers.joblib_map(fn, items, cores()),
}


def items_of(workload: str, loops: int) -> tuple[Callable[[Any], Any], list[Any]]:
    if workload == "W2":
        return spin, [loops] * 64
    if workload == "W1":
        return tiny, list(range(200_000))
    if workload == "START-builtin":  # a function whose unpickling imports nothing
        return abs, [-1] * cores()
    return tiny, [1] * cores()  # START: one tiny task per worker


def main() -> None:
    name, workload, loops = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn, items = items_of(workload, loops)
    run = CONTENDERS[name]
    if name.endswith("@2"):  # an untimed first plait.map: the template and shared workers run
        peers.plait_map(fn, items, backend="process", workers=cores(), chunksize=1)
    start = time.perf_counter()
    run(fn, items)
    print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
