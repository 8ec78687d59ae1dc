"""``await plait.amap(...)`` gives the list, on every backend, with the semantics of ``async for``:
the same errors, the same outcomes, workers released however it ends."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import _tasks as T
import pytest
from _tasks import TaskError
from conftest import assert_no_leaks_now, non_daemon_threads, pool_threads

import plait

WORKERS = 2


def pick(backend: str, plain: Callable[..., Any], coroutine: Callable[..., Any]) -> Any:
    return coroutine if backend == "asyncio" else plain


def snapshot() -> tuple[set[Any], set[int]]:
    from conftest import children

    return pool_threads() | non_daemon_threads(), children()


async def _agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_await_gives_the_list(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)

    async def main() -> list[int]:
        return await plait.amap(fn, range(30), backend=backend, workers=WORKERS)

    assert asyncio.run(main()) == [x * x for x in range(30)]


def test_await_a_pools_amap_gives_the_list(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)

    async def main() -> tuple[list[int], list[int]]:
        with plait.Pool(backend=backend, workers=WORKERS) as pool:
            awaited = await pool.amap(fn, range(10))
            iterated = [x async for x in pool.amap(fn, range(10))]
        return awaited, iterated

    assert asyncio.run(main()) == ([x * x for x in range(10)], [x * x for x in range(10)])


def test_await_with_async_input_and_collect(backend: str) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)

    async def main() -> list[plait.Outcome[int]]:
        return await plait.amap(fn, _agen(8), backend=backend, workers=WORKERS, errors="collect")

    outcomes = asyncio.run(main())
    assert [o.index for o in outcomes] == list(range(8))
    assert [o.ok for o in outcomes] == [i != 5 for i in range(8)]
    assert isinstance(outcomes[5].error, TaskError)


def test_await_raises_the_task_exception_and_releases_workers(backend: str) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)

    async def main() -> list[int]:
        return await plait.amap(fn, range(20), backend=backend, workers=WORKERS, chunksize=1)

    before = snapshot()
    with pytest.raises(TaskError):
        asyncio.run(main())
    assert_no_leaks_now(*before)


@pytest.mark.timeout(30)
def test_await_cancelled_by_a_timeout_stops_the_run(backend: str) -> None:
    fn = pick(backend, T.sleep_then_square, T.asleep_then_square)

    async def main() -> None:
        async with asyncio.timeout(0.3):
            await plait.amap(fn, itertools.count(), backend=backend, workers=WORKERS, chunksize=1)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    # running 5 ms tasks may finish on their own; the leak fixture gives them a short grace


def test_results_are_an_async_iterator_and_awaitable() -> None:
    async def main() -> None:
        results = plait.amap(T.square, range(3), backend="inline")
        assert isinstance(results, AsyncIterator)
        assert isinstance(results, Awaitable)
        assert aiter(results) is results
        assert [x async for x in results] == [0, 1, 4]

    asyncio.run(main())


def test_awaiting_after_iterating_is_refused() -> None:
    async def main() -> None:
        results = plait.amap(T.square, range(10), backend="thread", workers=WORKERS)
        assert await anext(results) == 0
        with pytest.raises(RuntimeError, match="use either 'await"):
            await results
        await results.aclose()

    before = snapshot()
    asyncio.run(main())
    assert_no_leaks_now(*before)


def test_awaiting_twice_is_refused() -> None:
    async def main() -> None:
        results = plait.amap(T.square, range(4), backend="thread", workers=WORKERS)
        assert await results == [0, 1, 4, 9]
        with pytest.raises(RuntimeError, match="already being consumed"):
            await results

    asyncio.run(main())


def test_aclose_stops_the_run_and_releases_workers() -> None:
    async def main() -> None:
        results = plait.amap(T.square, itertools.count(), backend="process", workers=WORKERS)
        assert await anext(results) == 0
        await results.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(results)

    before = snapshot()
    asyncio.run(main())
    assert_no_leaks_now(*before)


def test_gather_of_awaited_runs() -> None:
    """Two awaited runs share one loop, as two ``async for`` loops would."""

    async def main() -> tuple[list[int], list[int]]:
        return await asyncio.gather(
            plait.amap(T.asquare, range(5), backend="asyncio"),
            plait.amap(T.square, range(5), backend="thread", workers=WORKERS),
        )

    assert list(asyncio.run(main())) == [[0, 1, 4, 9, 16]] * 2
