"""One conformance suite: every semantic of the core, on every registered backend (inline,
thread, process, asyncio, ...). A backend meant for coroutines (asyncio) gets coroutine functions
(plain ones are checked too); the others get plain functions (coroutine functions are checked to
run to completion there too).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import _policy_tasks as P
import _tasks as T
import pytest
from _tasks import TaskError
from conftest import (
    assert_no_leaks_now,
    non_daemon_threads,
    pool_threads,
    subprocess_env,
    wait_until,
)

import plait
from plait._backends import REGISTRY

WORKERS = 2
WINDOW = 2 * WORKERS  # chunks read ahead of the consumer, as documented


def pick(
    backend: str, plain: Callable[..., Any], coroutine: Callable[..., Any]
) -> Callable[..., Any]:
    """The asyncio backend gets the coroutine function, the others the plain one."""
    return coroutine if REGISTRY[backend].coroutines_only else plain


class Counted:
    """An iterator over ``source`` that counts how many items were pulled from it."""

    def __init__(self, source: Any) -> None:
        self._it = iter(source)
        self.pulled = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        value = next(self._it)
        self.pulled += 1
        return value


def snapshot() -> tuple[set[threading.Thread], set[int]]:
    from conftest import children

    return pool_threads() | non_daemon_threads(), children()


# --- ordering ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "coroutine"])
def test_map_keeps_input_order(backend: str, kind: str) -> None:
    fn = T.reverse_sleep if kind == "plain" else T.areverse_sleep
    result = plait.map(fn, range(20), backend=backend, workers=4, chunksize=1)
    assert result == [x * x for x in range(20)]


def test_map_auto_chunks_keeps_order(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    assert plait.map(fn, range(500), backend=backend, workers=WORKERS) == [
        x * x for x in range(500)
    ]


def test_ordered_waits_for_a_slow_first_item(backend: str) -> None:
    fn = pick(backend, T.first_is_slow, T.afirst_is_slow)
    assert plait.map(fn, range(6), backend=backend, workers=WORKERS, chunksize=1) == list(range(6))


def test_unordered_returns_the_same_multiset(backend: str) -> None:
    fn = pick(backend, T.reverse_sleep, T.areverse_sleep)
    result = plait.map(fn, range(20), backend=backend, workers=4, chunksize=1, ordered=False)
    assert sorted(result) == [x * x for x in range(20)]
    assert len(result) == 20


def test_unordered_yields_in_completion_order(backend: str) -> None:
    fn = pick(backend, T.first_is_slow, T.afirst_is_slow)
    result = plait.map(fn, range(6), backend=backend, workers=WORKERS, chunksize=1, ordered=False)
    if backend == "inline":  # one call at a time: completion order is input order
        assert result == list(range(6))
    else:  # item 0 takes 0.4 s on one worker while the other finishes items 1..5
        assert sorted(result) == list(range(6))
        assert result[-1] == 0, result


def test_empty_input(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    assert plait.map(fn, [], backend=backend) == []
    assert plait.map(fn, iter(()), backend=backend, errors="collect") == []


# --- lazy, bounded input -------------------------------------------------------------------


def test_infinite_generator_with_imap(backend: str) -> None:
    before = snapshot()
    fn = pick(backend, T.square, T.asquare)
    stream = plait.imap(fn, itertools.count(), backend=backend, workers=WORKERS)
    taken = list(itertools.islice(stream, 30))
    stream.close()  # type: ignore[attr-defined]
    assert taken == [x * x for x in range(30)]
    assert_no_leaks_now(*before)


def test_break_out_of_imap_over_infinite_input(backend: str) -> None:
    before = snapshot()
    fn = pick(backend, T.square, T.asquare)
    seen = []
    for value in plait.imap(fn, itertools.count(), backend=backend, workers=WORKERS, chunksize=2):
        seen.append(value)
        if len(seen) == 5:
            break
    assert seen == [0, 1, 4, 9, 16]
    # CPython closes the abandoned generator at once (refcount); that must release everything.
    assert_no_leaks_now(*before)


def read_ahead(backend: str, chunksize: int | None, taken: int) -> int:
    """Items plait may have read once the consumer took ``taken`` results and stalled: the
    window of chunks, plus the chunks it has taken whole (a chunk's slot is freed when the
    consumer asks for the next one). Chunks hold one item on the asyncio backend, and on the
    others with a task too slow to grow an automatic chunk; the inline backend, with no
    scheduler, reads only what it runs."""
    if backend == "inline":
        return taken
    size = 1 if backend == "asyncio" else chunksize or 1
    return (WINDOW + (taken - 1) // size) * size


@pytest.mark.parametrize("chunksize", [1, 3, None], ids=["chunksize=1", "chunksize=3", "auto"])
def test_stalled_consumer_reads_ahead_exactly_the_window(
    backend: str, chunksize: int | None
) -> None:
    source = Counted(itertools.count())
    fn = pick(backend, T.sleep_then_square, T.asleep_then_square)
    # 25 ms a call: longer than the process backend's 20 ms target, so auto keeps chunks of 1
    fn = functools.partial(fn, seconds=0.025)
    stream = plait.imap(fn, source, backend=backend, workers=WORKERS, chunksize=chunksize)
    taken = 2 * (chunksize or 1) + 1  # two whole chunks, and one result of the third
    expected = read_ahead(backend, chunksize, taken)
    try:
        assert list(itertools.islice(stream, taken)) == [x * x for x in range(taken)]
        assert wait_until(lambda: source.pulled >= expected, 10), source.pulled
        time.sleep(0.3)  # the consumer stalls on: nothing more may be read
        pulled = source.pulled
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert pulled == expected, f"read {pulled} items ahead of a stalled consumer"


@pytest.mark.parametrize("backend", ["thread", "process", "asyncio"])  # inline: one at a time
def test_workers_run_at_once_throughout_the_run(backend: str, tmp_path: Path) -> None:
    """Three waves of 4 tasks that each wait (up to 5 s) until 4 run at once: every wave
    meets, so the window keeps all 4 workers busy after the first results are taken."""
    fn = pick(backend, P.running_peak_of, P.arunning_peak_of)
    items = [(str(tmp_path), 4)] * 12
    peaks = list(plait.imap(fn, items, backend=backend, workers=4, chunksize=1))
    assert peaks == [4] * 12


def test_slow_consumer_gets_everything(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    got = []
    for value in plait.imap(fn, range(40), backend=backend, workers=WORKERS, chunksize=2):
        got.append(value)
        if len(got) % 10 == 0:
            time.sleep(0.02)
    assert got == [x * x for x in range(40)]


# --- errors="raise" ------------------------------------------------------------------------


def test_raise_gives_the_task_exception_with_its_traceback(backend: str) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)
    with pytest.raises(TaskError) as info:
        plait.map(fn, range(20), backend=backend, workers=WORKERS, chunksize=1)
    exc = info.value
    assert type(exc) is TaskError
    assert exc.args == (5,)
    text = "".join(traceback.format_exception(exc))
    assert fn.__name__ in text, text
    if backend == "process":
        assert exc.__cause__ is not None, "the worker traceback must be attached as __cause__"
        remote = str(exc.__cause__)
        assert "Traceback" in remote and fn.__name__ in remote, remote


def test_raise_yields_the_results_before_the_error(backend: str) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)
    got = []
    with pytest.raises(TaskError):
        for value in plait.imap(fn, range(20), backend=backend, workers=WORKERS, chunksize=1):
            got.append(value)
    assert got == [0, 1, 4, 9, 16]


def test_raise_stops_pulling_new_input(backend: str) -> None:
    source = Counted(range(10_000))
    fn = pick(backend, T.fail_on_five, T.afail_on_five)
    with pytest.raises(TaskError):
        plait.map(fn, source, backend=backend, workers=WORKERS, chunksize=1)
    # items 0-5, and at most the rest of the window past item 5 (held back, in order, behind it)
    bound = 6 if backend == "inline" else 5 + WINDOW
    assert source.pulled <= bound, f"pulled {source.pulled} items after the failure at item 5"


def test_raise_starts_nothing_after_the_first_error(backend: str) -> None:
    source = Counted(range(100))
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    with pytest.raises(TaskError):
        plait.map(fn, source, backend=backend, workers=1, chunksize=1)
    assert source.pulled == 1  # item 0 failed: nothing more was read, nothing more ran


def test_asyncio_awaits_what_a_plain_function_returns() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    def plain(x: int) -> Any:  # not a coroutine function, but it returns an awaitable
        return double(x)

    assert plait.map(plain, range(5), backend="asyncio") == [0, 2, 4, 6, 8]


def test_a_failing_input_iterable_is_reported(backend: str) -> None:
    def broken() -> Iterator[int]:
        yield from range(5)
        raise TaskError("input broke")

    fn = pick(backend, T.square, T.asquare)
    got = []
    with pytest.raises(TaskError, match="input broke"):
        for value in plait.imap(fn, broken(), backend=backend, workers=WORKERS, chunksize=1):
            got.append(value)
    assert got == [x * x for x in range(5)]


_SYSTEM_EXIT = """
import asyncio, plait
def task(x):
    if x == 3:
        raise SystemExit(7)
    return x
async def atask(x):
    await asyncio.sleep(0)
    return task(x)
plait.map(atask if {backend!r} == "asyncio" else task, range(10), backend={backend!r}, workers=2)
"""
@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["inline", "thread", "process", "asyncio"])
def test_a_task_raising_system_exit_ends_the_call_with_it(backend: str) -> None:
    # in a child interpreter: a loop thread that dies must not take this test session with it
    done = subprocess.run(
        [sys.executable, "-c", _SYSTEM_EXIT.format(backend=backend)], env=subprocess_env(),
        capture_output=True, text=True, timeout=20,
    )
    assert done.returncode == 7, done.stderr


# --- errors="collect" and "skip" -----------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("chunksize", [None, 4], ids=["auto", "chunksize=4"])
def test_collect_gives_one_outcome_per_input(
    backend: str, ordered: bool, chunksize: int | None
) -> None:
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    outcomes = plait.map(
        fn,
        range(20),
        backend=backend,
        workers=WORKERS,
        errors="collect",
        ordered=ordered,
        chunksize=chunksize,
    )
    assert all(isinstance(o, plait.Outcome) for o in outcomes)
    indices = [o.index for o in outcomes]
    if ordered:
        assert indices == list(range(20))
    assert sorted(indices) == list(range(20))
    for outcome in outcomes:
        i = outcome.index
        if i % 3 == 0:
            assert not outcome.ok
            assert outcome.value is None
            assert type(outcome.error) is TaskError and outcome.error.args == (i,)
        else:
            assert outcome.ok
            assert outcome.error is None
            assert outcome.value == i * 10


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_skip_yields_only_successes(backend: str, ordered: bool) -> None:
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    result = plait.map(
        fn, range(20), backend=backend, workers=WORKERS, errors="skip", ordered=ordered
    )
    expected = [i * 10 for i in range(20) if i % 3]
    assert (result if ordered else sorted(result)) == expected


# --- kinds of functions --------------------------------------------------------------------


def test_coroutine_function_runs_to_completion(backend: str) -> None:
    result = plait.map(T.asquare, range(10), backend=backend, workers=WORKERS)
    assert result == [x * x for x in range(10)]
    assert not any(asyncio.iscoroutine(r) for r in result)


def test_plain_function_on_any_backend(backend: str) -> None:
    assert plait.map(T.square, range(10), backend=backend, workers=WORKERS) == [
        x * x for x in range(10)
    ]


def test_lambda_and_closure(backend: str) -> None:
    offset = 7

    def scaled(x: int) -> int:
        return x * offset

    assert plait.map(lambda x: x + offset, range(10), backend=backend, workers=WORKERS) == [
        x + 7 for x in range(10)
    ]
    assert plait.map(scaled, range(10), backend=backend, workers=WORKERS) == [
        x * 7 for x in range(10)
    ]


# Chunks are round trips to a pool worker; inline has one worker and asyncio no round trip.
@pytest.mark.parametrize("backend", ["thread", "process"])
@pytest.mark.parametrize("chunksize", [2, 5])
def test_explicit_chunksize_is_honoured(backend: str, chunksize: int) -> None:
    fn = T.worker_identity
    n = 4 * chunksize
    result = plait.map(fn, range(n), backend=backend, workers=2, chunksize=chunksize)
    assert [r[0] for r in result] == list(range(n))
    who = [r[1:] for r in result]
    for i in range(1, n):
        if i % chunksize:
            assert who[i] == who[i - 1], (
                f"items {i - 1} and {i} of one chunk ran on different workers"
            )
    # The first two chunks run at the same time on the two workers: a chunk is not larger.
    assert who[0] != who[chunksize], "the first two chunks ran on the same worker"


# --- amap ----------------------------------------------------------------------------------


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [value async for value in stream]


async def _agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_amap_inside_asyncio_run(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    result = asyncio.run(_collect(plait.amap(fn, range(30), backend=backend, workers=WORKERS)))
    assert result == [x * x for x in range(30)]


def test_amap_with_async_generator_input(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    result = asyncio.run(_collect(plait.amap(fn, _agen(30), backend=backend, workers=WORKERS)))
    assert result == [x * x for x in range(30)]


def test_amap_unordered_with_async_generator_input(backend: str) -> None:
    fn = pick(backend, T.reverse_sleep, T.areverse_sleep)
    stream = plait.amap(fn, _agen(20), backend=backend, workers=4, chunksize=1, ordered=False)
    assert sorted(asyncio.run(_collect(stream))) == [x * x for x in range(20)]


def test_amap_raises_the_task_exception(backend: str) -> None:
    fn = pick(backend, T.fail_on_five, T.afail_on_five)
    with pytest.raises(TaskError) as info:
        asyncio.run(
            _collect(plait.amap(fn, range(20), backend=backend, workers=WORKERS, chunksize=1))
        )
    assert info.value.args == (5,)
    assert fn.__name__ in "".join(traceback.format_exception(info.value))


def test_amap_collect(backend: str) -> None:
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    outcomes = asyncio.run(_collect(plait.amap(fn, _agen(12), backend=backend, errors="collect")))
    assert [o.index for o in outcomes] == list(range(12))
    assert [o.ok for o in outcomes] == [i % 3 != 0 for i in range(12)]


def test_amap_break_early_over_infinite_async_input(backend: str) -> None:
    async def endless() -> AsyncIterator[int]:
        for i in itertools.count():
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        seen = []
        async for value in plait.amap(
            pick(backend, T.square, T.asquare), endless(), backend=backend, workers=WORKERS
        ):
            seen.append(value)
            if len(seen) == 5:
                break
        return seen

    before = snapshot()
    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert_no_leaks_now(*before)  # asyncio.run closes the abandoned async generator


def test_amap_closed_with_aclosing(backend: str) -> None:
    async def main() -> list[int]:
        seen = []
        stream = plait.amap(
            pick(backend, T.square, T.asquare), itertools.count(), backend=backend, workers=WORKERS
        )
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for value in stream:
                seen.append(value)
                if len(seen) == 5:
                    break
        return seen

    before = snapshot()
    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert_no_leaks_now(*before)


def test_amap_consumer_cancelled_by_a_timeout(backend: str) -> None:
    async def main() -> None:
        fn = pick(backend, T.sleep_then_square, T.asleep_then_square)
        async with asyncio.timeout(0.3):
            async for _ in plait.amap(
                fn, itertools.count(), backend=backend, workers=WORKERS, chunksize=1
            ):
                pass

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    # running 5 ms tasks may finish on their own; the leak fixture gives them a short grace


# --- where the sync API can be called from --------------------------------------------------


def test_sync_api_inside_a_running_event_loop(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)

    async def main() -> list[int]:
        return plait.map(fn, range(10), backend=backend, workers=WORKERS)

    assert asyncio.run(main()) == [x * x for x in range(10)]


def test_sync_api_from_threads(backend: str) -> None:
    fn = pick(backend, T.square, T.asquare)
    results: dict[int, Any] = {}

    def call(n: int) -> None:
        try:
            results[n] = plait.map(fn, range(n), backend=backend, workers=WORKERS)
        except BaseException as exc:  # reported below
            results[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in (5, 10, 15)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {n: [x * x for x in range(n)] for n in (5, 10, 15)}


def test_sync_api_inside_a_thread_task() -> None:
    def inner(n: int) -> int:
        return sum(plait.map(T.square, range(n), backend="thread", workers=2))

    assert plait.map(inner, range(5), backend="thread", workers=2) == [
        sum(x * x for x in range(n)) for n in range(5)
    ]


# --- progress ------------------------------------------------------------------------------


def test_progress_bar_on_stderr(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    fn = pick(backend, T.square, T.asquare)
    result = plait.map(fn, range(30), backend=backend, workers=WORKERS, progress=True)
    assert result == [x * x for x in range(30)]
    captured = capsys.readouterr()
    assert "30/30" in captured.err, captured.err
    assert captured.out == ""


def test_progress_with_collect_unchanged(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    fn = pick(backend, T.fail_on_multiple_of_three, T.afail_on_multiple_of_three)
    quiet = plait.map(fn, range(12), backend=backend, errors="collect")
    shown = plait.map(fn, range(12), backend=backend, errors="collect", progress=True)
    assert [(o.index, o.value, o.ok) for o in shown] == [(o.index, o.value, o.ok) for o in quiet]
    assert capsys.readouterr().err


# --- nothing left behind -------------------------------------------------------------------


def test_no_leak_after_map_returns(backend: str) -> None:
    before = snapshot()
    plait.map(pick(backend, T.square, T.asquare), range(50), backend=backend, workers=WORKERS)
    assert_no_leaks_now(*before)


def test_no_leak_after_map_raises(backend: str) -> None:
    before = snapshot()
    with pytest.raises(TaskError):
        plait.map(
            pick(backend, T.fail_on_five, T.afail_on_five),
            range(50),
            backend=backend,
            workers=WORKERS,
        )
    assert_no_leaks_now(*before)


def test_no_leak_after_imap_closed_early(backend: str) -> None:
    before = snapshot()
    stream = plait.imap(
        pick(backend, T.sleep_then_square, T.asleep_then_square),
        range(100),
        backend=backend,
        workers=WORKERS,
        chunksize=1,
    )
    assert next(stream) == 0
    stream.close()  # type: ignore[attr-defined]
    assert_no_leaks_now(*before)


def test_no_leak_after_a_started_imap_is_dropped(backend: str) -> None:
    """An imap that has started (workers, threads, processes, tasks in flight) and is then
    dropped without close(): CPython closes the generator at once, and that stops everything."""
    import gc

    before = snapshot()
    stream = plait.imap(
        pick(backend, T.sleep_then_square, T.asleep_then_square),
        range(100),
        backend=backend,
        workers=WORKERS,
        chunksize=1,
    )
    assert next(stream) == 0
    if backend in ("thread", "process"):
        assert pool_threads() - before[0], "the run did not start its workers"
    del stream
    gc.collect()
    assert_no_leaks_now(*before)
