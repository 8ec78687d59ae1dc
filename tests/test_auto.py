"""backend="auto": the decision table on its own, then the measured choice on real calls.

The table tests build facts by hand, so they are exact and fast. The end-to-end tests check
the seed's four scenarios, that sampled calls are never run twice, and the edge cases of the
sample (errors, empty and short inputs, infinite and failing generators).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import plait
from plait import _auto, _probe
from plait._auto import Facts, choose
from plait._backends._base import ChunkResult
from plait._options import options as plait_options

# --- the decision table, from hand-made facts --------------------------------------------------


def sample(
    per_call_s: float = 0.01, cpu_share: float = 1.0, calls: int = 8, *, done: int | None = None,
    errors: dict[int, BaseException] | None = None, exhausted: bool = False,
    trial: _probe.Trial | None = None, awaitable: bool = False,
) -> _probe.Sample:
    done = calls if done is None else done
    wall = per_call_s * calls
    head = ChunkResult(list(range(done)), errors, wall)
    return _probe.Sample(
        list(range(done)), head, iter(()), exhausted, calls, wall, wall * cpu_share, per_call_s,
        returned_awaitable=awaitable, trial=trial,
    )


BASE = Facts(cores=2, gil=True)


def decided(facts: Facts) -> plait.Decision:
    verdict = choose(facts)
    assert isinstance(verdict, plait.Decision), f"the table still needs {verdict!r}"
    return verdict


def test_an_explicit_backend_wins_and_nothing_is_measured() -> None:
    d = decided(replace(BASE, backend="process", coroutine=True, kind="io"))
    assert (d.backend, d.workers) == ("process", 2)
    assert "backend='process' was given" in d.reason


def test_a_coroutine_function_goes_to_asyncio_without_a_sample() -> None:
    d = decided(replace(BASE, coroutine=True))
    assert (d.backend, d.workers) == ("asyncio", 100)
    assert "coroutine" in d.reason


def test_kind_hints_decide_without_a_sample() -> None:
    assert decided(replace(BASE, kind="io")).backend == "thread"
    assert choose(replace(BASE, kind="cpu")) == "pickle"
    assert decided(replace(BASE, kind="cpu", pickle_checked=True)).backend == "process"
    no_pickle = replace(BASE, kind="cpu", pickle_checked=True, pickle_problem="the function cannot")
    assert decided(no_pickle).backend == "thread"
    assert decided(replace(BASE, kind="cpu", gil=False)).backend == "thread"


def test_policies_initializers_and_async_input_are_not_sampled() -> None:
    d = decided(replace(BASE, policies=("timeout", "retries")))
    assert d.backend == "thread" and "timeout= and retries= are given" in d.reason
    assert decided(replace(BASE, async_input=True)).backend == "thread"
    assert decided(replace(BASE, initializer=True)).backend == "thread"
    assert decided(replace(BASE, recycle=True)).backend == "process"


def test_otherwise_the_table_asks_for_a_sample() -> None:
    assert choose(BASE) == "sample"


def test_microsecond_calls_run_inline() -> None:
    d = decided(replace(BASE, sample=sample(per_call_s=3e-7, calls=64)))
    assert d.backend == "inline"
    assert "64 calls took 0.3 µs each" in d.reason


def test_waiting_calls_get_threads_sized_by_the_wait_ratio() -> None:
    d = decided(replace(BASE, sample=sample(per_call_s=0.02, cpu_share=0.05, calls=2)))
    assert (d.backend, d.workers) == ("thread", 32)  # 2 cores / 5% CPU = 40, to a power of 2
    assert "20.0 ms" in d.reason and "5%" in d.reason
    pure_wait = decided(replace(BASE, sample=sample(per_call_s=0.02, cpu_share=0.0)))
    assert pure_wait.workers == 256
    some_cpu = decided(replace(BASE, sample=sample(per_call_s=0.02, cpu_share=0.45)))
    assert some_cpu.workers == 4  # 4.4
    # a share measured at 0.9% one run and 1.1% the next: the same count
    counts = {decided(replace(BASE, sample=sample(per_call_s=0.002, cpu_share=share))).workers
              for share in (0.007, 0.009, 0.01)}
    assert counts == {256}
    counts = {decided(replace(BASE, sample=sample(per_call_s=0.002, cpu_share=share))).workers
              for share in (0.012, 0.015, 0.02)}
    assert counts == {128}
    few_left = decided(replace(BASE, length=10, sample=sample(per_call_s=0.02, cpu_share=0.0)))
    assert few_left.workers == 2  # 10 items, 8 already done


def test_cpu_bound_calls_try_threads_then_go_to_processes() -> None:
    facts = replace(BASE, sample=sample(per_call_s=0.012))
    assert choose(facts) == "trial"
    gil_bound = _probe.Trial(threads=2, calls=2, wall_s=0.024, parallel=1.0, overlap=1.0)
    facts = replace(facts, trial_tried=True, sample=sample(per_call_s=0.012, trial=gil_bound))
    assert choose(facts) == "pickle"
    d = decided(replace(facts, pickle_checked=True))
    assert (d.backend, d.workers, d.chunksize) == ("process", 2, None)
    assert "12.0 ms" in d.reason and "1.0 ran at the same time (they hold the GIL)" in d.reason


def test_cpu_work_that_releases_the_gil_stays_in_threads() -> None:
    # a busy machine: the 2 threads had 0.6 of a core, but they ran at the same time
    free = _probe.Trial(threads=2, calls=4, wall_s=0.01, parallel=0.6, overlap=1.9)
    facts = replace(BASE, trial_tried=True, sample=sample(per_call_s=0.003, trial=free))
    d = decided(facts)
    assert d.backend == "thread" and "1.9 ran at the same time (they release" in d.reason


@pytest.mark.parametrize(
    ("threads", "parallel", "overlap", "blocked", "backend"),
    [
        (2, 1.9, 1.0, 0.0, "process"),  # one after another: parallel does not decide
        (2, 0.3, 1.05, 0.0, "process"),
        (2, 0.3, 1.06, 0.0, "thread"),  # at once, on a busy machine
        (2, 1.0, 2.0, 0.24, "thread"),
        (2, 1.0, 2.0, 0.25, "process"),  # at once, but handing the GIL back and forth
        (4, 1.0, 0.9, 0.0, "process"),
        (4, 1.0, 1.3, 0.0, "thread"),
    ],
)
def test_the_gil_thresholds_of_the_trial(
    threads: int, parallel: float, overlap: float, blocked: float, backend: str
) -> None:
    trial = _probe.Trial(threads=threads, calls=8, wall_s=0.03, parallel=parallel,
                         overlap=overlap, blocked=blocked)
    facts = replace(BASE, trial_tried=True, pickle_checked=True,
                    sample=sample(per_call_s=0.01, trial=trial))
    assert decided(facts).backend == backend


def test_an_unpicklable_function_falls_back_to_threads_with_the_reason() -> None:
    facts = replace(BASE, trial_tried=True, pickle_checked=True,
                    pickle_problem="the function cannot be pickled (TypeError: lock)")
    d = decided(replace(facts, sample=sample(per_call_s=0.012)))
    assert d.backend == "thread" and "cannot be pickled" in d.reason


def test_no_gil_or_one_core_never_uses_processes() -> None:
    cpu = sample(per_call_s=0.012)
    assert decided(replace(BASE, gil=False, sample=cpu)).backend == "thread"
    assert decided(replace(BASE, cores=1, sample=cpu)).backend == "inline"


def test_too_little_work_left_for_processes_runs_inline() -> None:
    facts = replace(BASE, length=12, trial_tried=True, sample=sample(per_call_s=0.012))
    d = decided(facts)
    assert d.backend == "inline" and "48.0 ms of work left" in d.reason
    assert choose(replace(facts, length=1000)) == "pickle"


def test_a_failed_sample_call_ends_the_run_when_errors_raise() -> None:
    failed = sample(errors={2: ValueError("x")})
    d = decided(replace(BASE, sample=failed))
    assert d.backend == "inline" and "Call 3 of the sample raised ValueError" in d.reason
    assert choose(replace(BASE, errors="collect", sample=failed)) == "trial"


def test_a_used_up_input_runs_inline() -> None:
    assert decided(replace(BASE, sample=sample(exhausted=True, calls=3))).backend == "inline"
    empty = decided(replace(BASE, sample=sample(exhausted=True, calls=0, per_call_s=0.0)))
    assert empty.reason == "The input is empty: nothing to run."


def test_a_function_returning_awaitables_goes_to_asyncio() -> None:
    assert decided(replace(BASE, sample=sample(calls=0, awaitable=True))).backend == "asyncio"


def test_given_workers_and_chunksize_are_kept() -> None:
    io = replace(BASE, workers=7, chunksize=3, sample=sample(per_call_s=0.02, cpu_share=0.0))
    d = decided(io)
    assert (d.workers, d.chunksize) == (7, 3)


# --- the seed's four scenarios, measured -------------------------------------------------------


def sha256_len(blob: bytes) -> int:
    return len(hashlib.sha256(blob).digest())


def cpu_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def sleep_20ms(x: int) -> int:
    time.sleep(0.02)
    return x


async def api_call(x: int) -> int:
    await asyncio.sleep(0.01)
    return x


def plus_one(x: int) -> int:
    return x + 1


def test_many_api_calls_pick_asyncio() -> None:
    d = plait.explain(api_call, range(1000))
    assert d.backend == "asyncio"


def test_blocking_file_reads_pick_threads(tmp_path: Any) -> None:
    """A slow disk, simulated: each read waits 20 ms (as a network filesystem does)."""
    paths = []
    for i in range(30):
        path = tmp_path / f"f{i}"
        path.write_bytes(os.urandom(1024))
        paths.append(str(path))

    def read_slowly(path: str) -> int:
        time.sleep(0.02)
        with open(path, "rb") as handle:
            return len(handle.read())

    d = plait.explain(read_slowly, paths)
    assert d.backend == "thread" and d.workers >= 4
    assert re.search(r"\d", d.reason)


def test_cpu_heavy_computations_pick_processes() -> None:
    d = plait.explain(cpu_loop, itertools.repeat(100_000, 200))
    expected = "process" if _probe.cores() > 1 else "inline"
    assert d.backend == expected, d.reason


def test_background_style_sleeping_tasks_pick_threads() -> None:
    d = plait.explain(sleep_20ms, range(100))
    assert d.backend == "thread" and d.workers >= 50, d.reason


def test_tiny_calls_pick_inline_and_are_not_much_slower_than_a_loop() -> None:
    d = plait.explain(plus_one, range(200_000))
    assert d.backend == "inline", d.reason
    items = range(200_000)
    loop = min(_timed(lambda: [plus_one(x) for x in items]) for _ in range(3))
    auto = min(_timed(lambda: plait.map(plus_one, items)) for _ in range(3))
    assert auto < 3 * loop + 0.01, (auto, loop)  # the goal is 2x; a noisy machine gets slack


def _timed(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# --- sampled calls count as real work ---------------------------------------------------------


class Counting:
    """Counts calls per input (thread-safe); optionally sleeps or fails."""

    def __init__(self, sleep_s: float = 0.0, fail_on: int | None = None) -> None:
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()
        self.sleep_s = sleep_s
        self.fail_on = fail_on

    def __call__(self, x: int) -> int:
        with self._lock:
            self.calls[x] += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if x == self.fail_on:
            raise ValueError(f"bad {x}")
        return x * 10


@pytest.mark.parametrize("sleep_s", [0.0, 0.002])
def test_each_input_runs_exactly_once(sleep_s: float) -> None:
    fn = Counting(sleep_s)
    assert plait.map(fn, range(300)) == [x * 10 for x in range(300)]
    assert set(fn.calls) == set(range(300)) and max(fn.calls.values()) == 1


def test_each_input_runs_exactly_once_with_imap_and_generators() -> None:
    fn = Counting(0.002)
    assert list(plait.imap(fn, (x for x in range(100)))) == [x * 10 for x in range(100)]
    assert max(fn.calls.values()) == 1 and len(fn.calls) == 100


def pid_of(x: int) -> tuple[int, int]:
    cpu_loop(30_000)
    return x, os.getpid()


def test_sampled_results_come_from_the_sample_not_from_workers() -> None:
    results = plait.map(pid_of, range(400))
    assert [x for x, _ in results] == list(range(400))
    here = [x for x, pid in results if pid == os.getpid()]
    assert here, "the sample ran in this process"
    assert here == list(range(len(here)))  # the first k, each once, kept
    if plait.explain(pid_of, range(400)).backend == "process":
        assert len(here) < 400


def test_a_sample_error_is_raised_and_stops_the_input() -> None:
    fn = Counting(fail_on=2)
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for x in range(1000):
            pulled.append(x)
            yield x

    with pytest.raises(ValueError, match="bad 2"):
        plait.map(fn, source())
    assert sorted(fn.calls) == [0, 1, 2] and len(pulled) == 3


def test_a_sample_error_is_collected_or_skipped_by_policy() -> None:
    fn = Counting(fail_on=2)
    outcomes = plait.map(fn, range(50), errors="collect")
    assert [o.index for o in outcomes] == list(range(50))
    assert [o.index for o in outcomes if not o.ok] == [2]
    assert isinstance(outcomes[2].error, ValueError)
    assert max(fn.calls.values()) == 1
    skipped = plait.map(Counting(fail_on=2), range(50), errors="skip")
    assert skipped == [x * 10 for x in range(50) if x != 2]


def test_empty_and_short_inputs() -> None:
    fn = Counting()
    assert plait.map(fn, []) == [] and not fn.calls
    assert plait.map(fn, iter([])) == []
    assert plait.map(fn, range(3)) == [0, 10, 20] and max(fn.calls.values()) == 1
    assert plait.explain(fn, []).backend == "inline"


def test_an_infinite_generator_is_read_only_as_far_as_the_sample() -> None:
    source = itertools.count()
    results = plait.imap(plus_one, source)
    try:
        assert [next(results) for _ in range(3)] == [1, 2, 3]
        assert next(source) <= _probe.TINY_SAMPLE_CALLS + 1
    finally:
        results.close()  # type: ignore[attr-defined]


def test_an_input_that_fails_is_reported_after_the_sampled_results() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("input broke")

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="input broke"):
        for value in plait.imap(plus_one, source()):
            seen.append(value)
    assert seen == [2, 3]


# --- explain, hints and logging -----------------------------------------------------------------


def test_explain_returns_a_decision_with_numbers() -> None:
    d = plait.explain(sleep_20ms, range(50))
    assert isinstance(d, plait.Decision)
    assert d.backend == "thread" and isinstance(d.workers, int)
    assert re.search(r"\d+(\.\d+)? ms", d.reason), d.reason
    assert str(d).startswith("backend='thread'")


def test_hints_win_and_skip_the_sample() -> None:
    fn = Counting(0.02)  # holds a lock: cannot go to processes
    assert plait.explain(sleep_20ms, range(100), kind="cpu").backend == "process"
    unpicklable = plait.explain(fn, range(100), kind="cpu")
    assert unpicklable.backend == "thread" and "cannot be pickled" in unpicklable.reason
    assert plait.explain(fn, range(100), kind="io").backend == "thread"
    assert plait.explain(fn, range(100), backend="inline").backend == "inline"
    assert plait.explain(cpu_loop, [10] * 100, backend="thread").backend == "thread"
    assert not fn.calls
    assert plait.map(fn, range(5), kind="io") == [0, 10, 20, 30, 40]


def test_an_unpicklable_cpu_function_falls_back_to_threads() -> None:
    lock = threading.Lock()

    def holds_a_lock(n: int) -> int:
        with lock:
            return cpu_loop(n)

    d = plait.explain(holds_a_lock, itertools.repeat(100_000, 200))
    if _probe.cores() > 1:
        assert d.backend == "thread" and "cannot be pickled" in d.reason, d.reason


def test_explain_true_logs_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="plait"):
        assert plait.map(sleep_20ms, range(6), explain=True) == list(range(6))
    decisions = [getattr(r, "plait_decision", None) for r in caplog.records]
    assert any(isinstance(d, plait.Decision) and d.backend == "thread" for d in decisions)


def test_explain_true_prints_when_logging_is_not_set_up(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.Logger, "hasHandlers", lambda self: False)
    _auto.log(plait.Decision("thread", 4, None, "because."))
    assert capsys.readouterr().err == "plait: backend='thread', workers=4: because.\n"


def test_amap_with_a_coroutine_function_uses_asyncio() -> None:
    """The asyncio backend awaits the calls on the caller's own loop and thread; the others
    would run them in pool threads or processes, each on an event loop of its own."""
    seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    async def where(x: int) -> int:
        await asyncio.sleep(0.01)
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        return x

    async def run() -> tuple[list[int], asyncio.AbstractEventLoop]:
        return [r async for r in plait.amap(where, range(20))], asyncio.get_running_loop()

    results, loop = asyncio.run(run())
    assert results == list(range(20))
    assert set(seen) == {(loop, threading.main_thread())}


def test_policies_are_not_sampled() -> None:
    fn = Counting()
    d = plait.explain(fn, range(10), retries=2)
    assert d.backend == "thread" and not fn.calls


# --- the probe's sample and trial ---------------------------------------------------------------


def nap_ms(x: int) -> int:
    time.sleep(0.001)
    return x


def test_the_sample_takes_8_timed_calls_or_64_tiny_ones() -> None:
    s = _probe.take_sample(nap_ms, range(100), stop_on_error=True)
    assert s.calls == 8 and s.head.values == list(range(8)) and next(s.rest) == 8
    tiny = _probe.take_sample(plus_one, range(100), stop_on_error=True)
    assert tiny.calls == 64 and next(tiny.rest) == 64


def test_one_long_call_that_clearly_waits_is_enough() -> None:
    s = _probe.take_sample(sleep_20ms, range(100), stop_on_error=True)
    assert s.calls == 1 and s.cpu_share < 0.05 and s.per_call_s >= 0.02


def test_a_short_input_is_sampled_whole() -> None:
    s = _probe.take_sample(nap_ms, [5, 6], stop_on_error=True)
    assert s.exhausted and s.head.values == [5, 6] and list(s.rest) == []


def test_a_function_returning_coroutines_is_not_sampled_and_runs_on_asyncio() -> None:
    def make_call(x: int) -> Any:
        return api_call(x)

    s = _probe.take_sample(make_call, range(5), stop_on_error=True)
    assert s.returned_awaitable and s.head.values == [] and list(s.rest) == [0, 1, 2, 3, 4]
    assert plait.explain(make_call, range(5)).backend == "asyncio"
    assert plait.map(make_call, range(5)) == [0, 1, 2, 3, 4]


def test_the_thread_trial_keeps_order_and_runs_each_item_once() -> None:
    fn = Counting()
    first = _probe.take_sample(fn, range(200), stop_on_error=True)
    first = replace(first, per_call_s=0.005, cpu_s=0.005 * first.calls)  # 2 calls per thread
    s = _probe.thread_trial(fn, first, threads=2)
    assert s.trial is not None and s.trial.threads == 2 and s.trial.calls == 4
    done = len(s.head.values)
    assert s.head.values == [x * 10 for x in range(done)]
    assert list(s.rest) == list(range(done, 200))
    assert max(fn.calls.values()) == 1


def test_the_trial_tells_gil_bound_from_gil_free_work() -> None:
    """Pure Python holds the GIL; hashing a large buffer releases it. Real calls, real threads:
    with a long switch interval, threads that hold the GIL run one after another, whatever
    the load."""
    s = _probe.take_sample(cpu_loop, itertools.repeat(30_000, 50), stop_on_error=True)
    trial = _probe.thread_trial(cpu_loop, s, threads=2).trial
    assert trial is not None and trial.overlap <= 1.0 + 1e-6  # one after another
    blob = b"x" * (8 << 20)
    s = _probe.take_sample(sha256_len, itertools.repeat(blob, 50), stop_on_error=True)
    trial = _probe.thread_trial(sha256_len, s, threads=2).trial
    assert trial is not None and trial.overlap > _auto.OVERLAP_MIN
    assert sys.getswitchinterval() == pytest.approx(0.005)  # the trial put it back


@pytest.mark.skipif(_probe.cores() < 2, reason="one core: auto runs CPU work inline, no trial")
def test_the_thread_trial_runs_once_per_function() -> None:
    ran_on: list[str] = []

    def spin(n: int) -> int:
        ran_on.append(threading.current_thread().name)
        return sum(range(n))

    def probe_threads() -> int:
        return sum(name.startswith("plait-probe") for name in ran_on)

    first = plait.explain(spin, itertools.repeat(100_000, 60))
    assert probe_threads() >= 2, ran_on  # the trial ran calls on its threads
    assert "ran at the same time" in first.reason and "earlier run" not in first.reason
    ran_on.clear()
    again = plait.explain(spin, itertools.repeat(100_000, 60))
    assert probe_threads() == 0 and ran_on, ran_on  # sampled again, but no trial
    assert "ran at the same time, in an earlier run of this function" in again.reason
    assert again.backend == first.backend

    def other(n: int) -> int:  # another function is measured afresh
        ran_on.append(threading.current_thread().name)
        return sum(range(n))

    ran_on.clear()
    plait.explain(other, itertools.repeat(100_000, 60))
    assert probe_threads() >= 2, ran_on


def test_announce_logs_a_named_backend_without_measuring(caplog: pytest.LogCaptureFixture) -> None:
    fn = Counting()
    with caplog.at_level(logging.INFO, logger="plait"):
        _auto.announce(fn, range(10), plait_options(backend="process", explain=True), 10)
    decisions = [getattr(r, "plait_decision", None) for r in caplog.records]
    assert [d.backend for d in decisions if d is not None] == ["process"] and not fn.calls
