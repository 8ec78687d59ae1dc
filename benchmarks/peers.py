"""One small function per way of mapping a function over a list; each makes and closes its
own pool, as a caller of ``plait.map`` would (joblib alone keeps its loky workers between
calls, which is how it is used in practice)."""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import multiprocessing.pool
from collections.abc import Callable, Sequence
from typing import Any

import plait

Fn = Callable[[Any], Any]


def serial(fn: Fn, items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


def plait_map(fn: Fn, items: Sequence[Any], **options: Any) -> list[Any]:
    return plait.map(fn, items, **options)


_warm_pools: dict[tuple[str, int], plait.Pool] = {}


def plait_warm_pool(fn: Fn, items: Sequence[Any], backend: str, workers: int) -> list[Any]:
    """A ``plait.Pool`` kept between calls, as joblib keeps its loky workers."""
    pool = _warm_pools.get((backend, workers))
    if pool is None:
        pool = _warm_pools[backend, workers] = plait.Pool(backend=backend, workers=workers)
        atexit.register(pool.shutdown)
    return pool.map(fn, items)


def thread_pool_executor(fn: Fn, items: Sequence[Any], workers: int | None = None) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        return list(executor.map(fn, items))


def process_pool_executor(
    fn: Fn, items: Sequence[Any], workers: int, chunksize: int = 1
) -> list[Any]:
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        return list(executor.map(fn, items, chunksize=chunksize))


def mp_pool_map(fn: Fn, items: Sequence[Any], workers: int) -> list[Any]:
    with multiprocessing.Pool(workers) as pool:
        return pool.map(fn, items)


def mp_thread_pool_map(fn: Fn, items: Sequence[Any], workers: int) -> list[Any]:
    with multiprocessing.pool.ThreadPool(workers) as pool:
        return pool.map(fn, items)


def joblib_map(fn: Fn, items: Sequence[Any], workers: int, prefer: str | None = None) -> list[Any]:
    import joblib

    return list(
        joblib.Parallel(n_jobs=workers, prefer=prefer)(joblib.delayed(fn)(x) for x in items)
    )


def mpire_map(fn: Fn, items: Sequence[Any], workers: int, threads: bool = False) -> list[Any]:
    from mpire.pool import WorkerPool

    start_method = "threading" if threads else "fork"
    with WorkerPool(n_jobs=workers, start_method=start_method) as pool:
        return list(pool.map(fn, items))
