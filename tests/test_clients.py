"""plait's executors where people already use executors: asyncio's run_in_executor, tornado's
run_on_executor, requests-futures, and Dask's local schedulers. Real clients, real threads and
processes, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from typing import TYPE_CHECKING

import pytest

import plait

if TYPE_CHECKING:
    from http_server import Server


def square(x: int) -> int:
    return x * x


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def second(pair: tuple[int, int]) -> int:
    return pair[1]


class Boom(Exception):
    pass


def boom(x: int) -> int:
    raise Boom(f"boom {x}")


EXECUTORS = {
    "ThreadPoolExecutor": lambda: plait.ThreadPoolExecutor(max_workers=3),
    "ProcessPoolExecutor": lambda: plait.ProcessPoolExecutor(max_workers=2),
    "Pool(thread)": lambda: plait.Pool(backend="thread", workers=3),
    "Pool(process)": lambda: plait.Pool(backend="process", workers=2),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", EXECUTORS)
def test_asyncio_run_in_executor(name: str) -> None:
    async def main(executor: concurrent.futures.Executor) -> list[int]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(executor, square, x) for x in range(20))
        )
        with pytest.raises(Boom, match="boom 7"):
            await loop.run_in_executor(executor, boom, 7)
        return list(results)

    with EXECUTORS[name]() as executor:
        assert asyncio.run(main(executor)) == [x * x for x in range(20)]


@pytest.mark.timeout(60)
def test_asyncio_default_executor_is_a_plait_pool() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(plait.ThreadPoolExecutor(max_workers=2))
        return list(await asyncio.gather(*(asyncio.to_thread(square, x) for x in range(10))))

    assert asyncio.run(main()) == [x * x for x in range(10)]  # asyncio.run shuts it down


@pytest.mark.timeout(60)
def test_tornado_run_on_executor() -> None:
    from tornado.concurrent import run_on_executor

    class Handler:
        def __init__(self, executor: concurrent.futures.Executor) -> None:
            self.executor = executor

        @run_on_executor  # type: ignore[untyped-decorator]
        def compute(self, x: int) -> int:
            return x * x

    async def main(executor: concurrent.futures.Executor) -> list[int]:
        handler = Handler(executor)
        return list(await asyncio.gather(*(handler.compute(x) for x in range(10))))

    with plait.ThreadPoolExecutor(max_workers=2) as executor:
        assert asyncio.run(main(executor)) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_requests_futures_session_on_a_plait_executor(server: Server) -> None:
    from requests_futures.sessions import FuturesSession

    with plait.ThreadPoolExecutor(max_workers=4) as executor:
        session = FuturesSession(executor=executor)
        futures = [session.get(server.url(f"/ok/{i}")) for i in range(12)]
        bodies = [future.result(timeout=30).text for future in futures]
        session.close()
    assert bodies == [f"ok {i}" for i in range(12)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_dask_local_scheduler_on_a_plait_executor(name: str) -> None:
    import dask

    tasks = [dask.delayed(pid_and_square)(x) for x in range(12)]
    total = dask.delayed(sum)([dask.delayed(second)(t) for t in tasks])
    scheduler = "threads" if name == "ThreadPoolExecutor" else "processes"
    with EXECUTORS[name]() as executor:
        pairs, summed = dask.compute(tasks, total, scheduler=scheduler, pool=executor)
    assert [square for _, square in pairs] == [x * x for x in range(12)]
    assert summed == sum(x * x for x in range(12))
    if name == "ProcessPoolExecutor":
        assert os.getpid() not in {pid for pid, _ in pairs}
