"""amap's streaming path (LoopSink batches drained in run_async): it must keep imap's
promises: bounded read-ahead (a chunk's window slot is freed only when the consumer has taken
its last value and asks for more), the values before an error, and errors="skip"."""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

import _tasks as T
import pytest
from test_conformance import WORKERS, Counted, pick, read_ahead

import plait


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chunksize", [1, 3], ids=["chunksize=1", "chunksize=3"])
@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_stalled_amap_consumer_reads_ahead_exactly_the_window(
    backend: str, chunksize: int
) -> None:
    source = Counted(itertools.count())
    fn = functools.partial(pick(backend, T.sleep_then_square, T.asleep_then_square), seconds=0.025)
    taken = 2 * chunksize + 1  # two whole chunks, and one result of the third
    expected = read_ahead(backend, chunksize, taken)

    async def main() -> tuple[list[int], int]:
        stream = plait.amap(fn, source, backend=backend, workers=WORKERS, chunksize=chunksize)
        got: list[int] = []
        try:
            async for value in stream:
                got.append(value)
                if len(got) == taken:
                    break
            for _ in range(200):  # up to 10 s for the window to fill
                if source.pulled >= expected:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the consumer stalls on: nothing more may be read
            return got, source.pulled
        finally:
            await stream.aclose()

    got, pulled = asyncio.run(main())
    assert got == [x * x for x in range(taken)]
    assert pulled == expected, f"read {pulled} items ahead of a stalled amap consumer"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chunksize", [1, 4], ids=["chunksize=1", "chunksize=4"])
@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_amap_yields_the_values_before_the_error(backend: str, chunksize: int) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)
    got: list[int] = []

    async def main() -> None:
        async for value in plait.amap(
            fn, range(20), backend=backend, workers=WORKERS, chunksize=chunksize
        ):
            got.append(value)

    with pytest.raises(T.TaskError) as info:
        asyncio.run(main())
    assert info.value.args == (5,)
    assert got == [0, 1, 4, 9, 16]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_amap_skip_drops_only_the_failures(backend: str) -> None:
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)

    async def main() -> list[Any]:
        return await plait.amap(fn, range(30), backend=backend, workers=WORKERS, chunksize=4,
                                errors="skip")

    assert asyncio.run(main()) == [x * 10 for x in range(30) if x % 3]


async def _slow_zero_then_fail(x: int) -> int:
    if x == 0:
        await asyncio.sleep(0.05)
        return 0
    raise T.TaskError(x)


@pytest.mark.timeout(30)
def test_amap_results_that_arrive_with_the_end_are_still_yielded() -> None:
    """Item 1 fails at once and stops the run; item 0's result, held back for order, reaches
    the sink with the failure in the run's last turn: it is yielded, then the error raised."""
    got: list[int] = []

    async def main() -> None:
        async for value in plait.amap(_slow_zero_then_fail, range(2), backend="asyncio", workers=2):
            got.append(value)

    with pytest.raises(T.TaskError) as info:
        asyncio.run(main())
    assert info.value.args == (1,)
    assert got == [0]


def test_loop_sink_gives_every_item_before_the_end() -> None:
    """Items put in the same loop turn as the run's end still come out, then the error."""
    from plait._sinks import LoopSink

    async def main() -> tuple[list[int], list[int]]:
        sink: LoopSink[int] = LoopSink(lambda n: None)
        sink.put(1)
        sink.put(2)
        sink.close(T.TaskError(3))
        first = await sink.batch()
        with pytest.raises(T.TaskError):
            await sink.batch()
        clean: LoopSink[int] = LoopSink(lambda n: None)
        clean.put(4)
        clean.close(None)
        return first, [x async for x in clean]

    assert asyncio.run(main()) == ([1, 2], [4])
