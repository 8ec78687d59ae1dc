"""Learned chunk sizes: each backend's target time per chunk, growth of at most 64x per
measurement, and a cap of len/(4 x workers) (4096 when the length is unknown), so that a long
input still spreads over every worker and the read-ahead stays small."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import _tasks as T
import pytest
from conftest import wait_until

import plait
from plait._chunks import MAX_GROWTH, TARGET_CHUNK_S, UNKNOWN_LENGTH_CAP, Chunker, Source


def test_the_documented_figures() -> None:
    assert TARGET_CHUNK_S == {"process": 0.05, "thread": 0.002, "dask": 0.05}
    assert (MAX_GROWTH, UNKNOWN_LENGTH_CAP) == (64, 4096)


@pytest.mark.parametrize(
    ("backend", "per_item_s", "size"),
    [
        ("process", 0.001, 50),  # 50 ms of work in a chunk
        ("process", 0.0004, 125),
        ("thread", 0.0001, 20),  # 2 ms
        ("thread", 0.01, 1),  # slower than the target: one item a chunk, never zero
        ("process", 0.5, 1),
    ],
)
def test_a_chunk_aims_at_the_backends_target_time(
    backend: str, per_item_s: float, size: int
) -> None:
    chunker = Chunker(backend, 2, None, 0)
    chunker.learn(4, 4 * per_item_s)
    chunker.learn(4, 4 * per_item_s)  # past the growth cap from 1
    assert chunker.size == size


def test_a_chunk_grows_at_most_64_times_per_measurement() -> None:
    chunker = Chunker("process", 2, None, 0)
    sizes = []
    for _ in range(3):
        chunker.learn(chunker.size, 1e-9 * chunker.size)  # as fast as can be measured
        sizes.append(chunker.size)
    assert sizes == [64, 4096, 4096]  # then the cap for an input of unknown length


def test_a_known_length_caps_a_chunk_at_a_quarter_of_each_workers_share() -> None:
    chunker = Chunker("process", 2, None, 100)
    assert chunker.cap == 13  # ceil(100 / (4 x 2))
    for _ in range(3):
        chunker.learn(1, 1e-9)
    assert chunker.size == 13
    assert Chunker("thread", 8, None, 10).cap == 1  # never below one item


def test_the_last_chunks_of_a_known_length_shrink_to_a_share_of_what_is_left() -> None:
    # 64 items of ~12.5 ms on 2 workers: chunks of 4 (50 ms), then at most a quarter of each
    # worker's share of what is left, so that both finish together
    chunker = Chunker("process", 2, None, 64)
    chunker.learn(1, 0.0125)
    assert chunker.size == 4
    assert [chunker.size_at(i) for i in (0, 48, 52, 56, 58, 60, 62, 63)] == [4, 4, 3, 2, 2, 1, 1, 1]
    assert chunker.size_at(64) == 4  # past a length hint that fell short: the learned size
    assert Chunker("process", 2, None, 0).size_at(10**6) == 1  # no length: no share


def test_the_last_chunks_shrink_no_further_than_a_quarter_of_the_target() -> None:
    # tiny tasks: chunks of 1000 (the cap) take 1 ms, far below the target; shrinking them near
    # the end would only add round trips (the Dask test of chunking counts them)
    chunker = Chunker("process", 2, None, 8000)
    for _ in range(2):
        chunker.learn(1000, 0.001)  # 64 x 1, then the cap
    assert chunker.size == 1000
    assert chunker.size_at(7990) == 1000
    chunker.learn(1, 0.001)  # 1 ms an item: 50 a chunk, never below 12 (a quarter)
    assert [chunker.size_at(i) for i in (0, 7900, 7950, 7990)] == [50, 25, 13, 12]


def test_a_fixed_chunksize_stays_fixed_to_the_end() -> None:
    assert Chunker("process", 2, 8, 64).size_at(60) == 8


def test_the_input_is_pulled_in_shrinking_chunks_near_its_end() -> None:
    chunker = Chunker("process", 2, None, 40)
    chunker.learn(1, 0.0125)  # size 4
    source = Source(list(range(40)), chunker)

    async def pull() -> list[int]:
        sizes = []
        while (chunk := await source.take()) is not None:
            sizes.append(len(chunk[1]))
        return sizes

    sizes = asyncio.run(pull())
    assert sizes == [4, 4, 4, 4, 4, 4, 4, 3, 3, 2, 1, 1, 1, 1]
    assert sum(sizes) == 40


@pytest.mark.parametrize("backend", ["inline", "asyncio"])
def test_backends_without_round_trips_keep_one_item_chunks(backend: str) -> None:
    chunker = Chunker(backend, 4, None, 1000)
    chunker.learn(1, 1e-9)
    assert chunker.size == 1


def test_a_fixed_chunksize_is_never_learned_over() -> None:
    chunker = Chunker("process", 2, 7, 1000)
    chunker.learn(7, 1e-9)
    chunker.learn(7, 10.0)
    assert chunker.size == 7


def test_an_empty_chunk_teaches_nothing() -> None:
    chunker = Chunker("process", 2, None, 0)
    chunker.learn(0, 0.0)
    assert chunker.size == 1


# --- end to end -----------------------------------------------------------------------------


class Counted:
    def __init__(self, source: Any) -> None:
        self._it = iter(source)
        self.pulled = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> Any:
        value = next(self._it)
        self.pulled += 1
        return value



class Counted800(Counted):
    """An 800-item input that says its length, as a list or a range would."""

    def __length_hint__(self) -> int:
        return 800 - self.pulled


def test_a_fast_task_over_a_known_length_reads_at_most_the_window_of_capped_chunks() -> None:
    # 800 items on 2 workers: chunks of at most 100 (800 / (4 x 2)), 4 of them in the window.
    # Without the cap the third learned chunk would take all the rest at once.
    source = Counted800(range(800))
    stream = plait.imap(T.square, source, backend="process", workers=2)
    try:
        assert next(stream) == 0
        assert wait_until(lambda: source.pulled >= 66, 10), source.pulled
        time.sleep(0.3)  # the consumer stalls: what was read stays what the window allows
        pulled = source.pulled
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert pulled <= 4 * 100, f"read {pulled} of 800 items ahead of a stalled consumer"


def test_learned_chunks_keep_every_result_in_order() -> None:
    items = list(range(3000))
    assert plait.map(T.square, items, backend="process", workers=2) == [x * x for x in items]
    assert plait.map(T.square, iter(items), backend="thread", workers=3) == [
        x * x for x in items
    ]


def test_an_endless_input_still_gets_chunks_capped_at_4096() -> None:
    source = Counted(itertools.count())
    stream = plait.imap(T.square, source, backend="process", workers=1)
    try:
        assert next(stream) == 0
        time.sleep(0.3)
        pulled = source.pulled
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert pulled <= 2 * 4096  # a window of 2 chunks of at most 4096


class EndsOnce:
    """Five items, then the end; a call after the end is counted (and would give more)."""

    def __init__(self) -> None:
        self.given = 0
        self.after_end = 0

    def __iter__(self) -> EndsOnce:
        return self

    def __next__(self) -> int:
        if self.given == 5:
            self.given += 1
            raise StopIteration
        if self.given > 5:
            self.after_end += 1
            if self.after_end > 20:  # a broken reader is caught, not run forever
                raise StopIteration
            return 99
        self.given += 1
        return self.given - 1


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
@pytest.mark.parametrize("chunksize", [1, 2])
def test_the_input_is_not_read_again_after_its_end(backend: str, chunksize: int) -> None:
    source = EndsOnce()
    fn = T.asquare if backend == "asyncio" else T.square
    assert plait.map(fn, source, backend=backend, workers=4, chunksize=chunksize) == [
        0, 1, 4, 9, 16
    ]
    assert source.after_end == 0


class FailsOnce:
    """Items 0-4, then an error; a call after the error is counted (and would give more)."""

    def __init__(self) -> None:
        self.given = 0
        self.after_error = 0

    def __iter__(self) -> FailsOnce:
        return self

    def __next__(self) -> int:
        if self.given == 5:
            self.given += 1
            raise T.TaskError("input broke")
        if self.given > 5:
            self.after_error += 1
            if self.after_error > 20:  # a broken reader is caught, not run forever
                raise StopIteration
        self.given += 1
        return self.given - 1


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_the_input_is_not_read_again_after_it_failed(backend: str) -> None:
    source = FailsOnce()
    fn = T.asquare if backend == "asyncio" else T.square
    got = []
    with pytest.raises(T.TaskError, match="input broke"):
        for value in plait.imap(fn, source, backend=backend, workers=4, chunksize=1):
            got.append(value)
    assert got == [0, 1, 4, 9, 16]
    assert source.after_error == 0
