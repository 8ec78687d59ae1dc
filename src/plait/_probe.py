"""Facts for backend="auto", and nothing else: what the function is, what the machine is, and
how the first real calls behave when timed.

The sample runs the user's function on the first items of the input, in the calling thread:

- it stops at 8 calls, or before the calls would pass 50 ms, or once calls that clearly wait
  (under 5% CPU) or clearly compute (over 95%) have taken 20 ms, or one such call took 10 ms;
  microsecond calls continue to at most 64 calls or 1 ms, so that one cold call does not
  decide;
- it pulls one item at a time, so an infinite generator is read only as far as the sample;
- its outcomes, errors included, are kept in ``head`` (a ``ChunkResult`` of items 0..k-1) and
  are never recomputed; ``rest`` is the input after them;
- an error raised by the input itself is raised again when ``rest`` is next pulled, as it
  would have been without the sample.

``thread_trial`` then (only when asked) runs a few more items on 2-4 threads at once, about
10 ms each, to see whether the calls hold the GIL (pure Python does; hashing, compression and
numpy release it). It lengthens the GIL's switch interval meanwhile, so that a thread that
holds the GIL keeps it until its calls end: the threads then run one after another, and calls
that release it let the others start at once.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import math
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ._backends import cpu_count
from ._backends._base import ChunkResult, is_async_callable, reraise_stop

SAMPLE_CALLS = 8  # calls timed when they take more than a few microseconds
SAMPLE_BUDGET_S = 0.05  # the sample stops before its calls would pass this wall time
TINY_SAMPLE_CALLS = 64  # microsecond calls: up to this many ...
TINY_SAMPLE_S = 0.001  # ... or until they have taken this long
CLEAR_CALL_S = 0.01  # calls this long that clearly wait or clearly compute: one is enough,
CLEAR_SPENT_S = 0.02  # and shorter ones, once they have taken this long in all
CLEAR_SHARE = 0.05  # "clearly": under 5% or over 95% of their time on the CPU
TRIAL_THREADS_MAX = 4  # the thread trial uses min(cores, this) threads
TRIAL_S = 0.01  # each trial thread runs calls for about this long
TRIAL_CALLS_MAX = 64  # and at most this many calls


def gil_enabled() -> bool:
    """False only on a free-threaded build running without the GIL (3.13t and later)."""
    check: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def cores() -> int:
    """CPU cores this process may use."""
    return cpu_count()


def is_coroutine(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions (also behind functools.partial)."""
    return is_async_callable(fn)


def is_async_input(items: Any) -> bool:
    return hasattr(items, "__aiter__")


@dataclass(frozen=True, slots=True)
class Trial:
    """The same calls on several threads at once, with a long GIL switch interval.

    ``overlap`` is the sum of the threads' spans over the trial's wall time: at most 1 when
    they ran one after another (each kept the GIL through its calls: they hold it; a thread
    starts only once the one before it has ended), up to ``threads`` when they ran at once
    (the calls release it; a thread queued for a CPU starts late, which lowers it).
    ``blocked`` is the share of the spans the threads spent neither on a CPU nor queued for
    one: waiting, for the GIL when calls that mostly hold it hand it back and forth at a brief
    release (a write, a log line).
    Unlike ``parallel`` (the CPU time of all the threads over the wall time), neither needs
    free cores: on a busy machine threads that release the GIL still run at the same time,
    only slower. Measured at loads of 2.4-7.7 on 2 cores, 2 threads: pure Python and
    json.loads 0.6-1.0; hashing files 1.18-1.99, zlib 1.17-1.96, both blocked under 0.2.
    """

    threads: int
    calls: int
    wall_s: float
    parallel: float
    overlap: float
    blocked: float = 0.0
    earlier: bool = False  # measured by an earlier run of the same function


@dataclass(frozen=True, slots=True)
class Sample:
    """The first calls, timed one by one; their outcomes are in ``head``."""

    inputs: list[Any]  # the sampled items (for the picklability check)
    head: ChunkResult  # outcomes of items 0..k-1, errors included
    rest: Iterator[Any]  # the input after the sampled items
    exhausted: bool  # the input ended (or failed) during the sample
    calls: int  # calls timed one by one
    wall_s: float  # their total wall time
    cpu_s: float  # their total CPU time (this thread, user + system)
    per_call_s: float  # median wall time of one call
    queued_s: float = 0.0  # time the thread waited for a CPU (a busy machine), Linux only
    returned_awaitable: bool = False  # fn returned an awaitable: nothing was kept
    trial: Trial | None = None

    @property
    def cpu_share(self) -> float:
        """Fraction of the calls' wall time spent on the CPU; the rest is waiting (for I/O,
        a lock, a sleep), not counting the time spent queued for a CPU on a busy machine."""
        active = self.wall_s - self.queued_s
        return min(1.0, self.cpu_s / active) if active > 0 else 1.0


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _raising(exc: BaseException) -> Iterator[Any]:
    raise exc
    yield  # pragma: no cover - makes this a generator


class _Recorder:
    """Outcomes in input order, as a ChunkResult is built."""

    def __init__(self) -> None:
        self.inputs: list[Any] = []
        self.values: list[Any] = []
        self.errors: dict[int, BaseException] = {}

    def add(self, item: Any, value: Any, error: BaseException | None) -> None:
        if error is not None:
            self.errors[len(self.values)] = error
        self.inputs.append(item)
        self.values.append(value)

    def result(self, per_call_s: float) -> ChunkResult:
        elapsed = per_call_s * len(self.values)  # serial-equivalent, for the chunk-size learner
        return ChunkResult(self.values, self.errors or None, elapsed)


def _enough(calls: int, spent_s: float) -> bool:
    if calls == 0:
        return False
    if calls >= TINY_SAMPLE_CALLS or spent_s + spent_s / calls > SAMPLE_BUDGET_S:
        return True
    return calls >= SAMPLE_CALLS and spent_s >= TINY_SAMPLE_S


def _clear(calls: int, spent_s: float, cpu_s: float, queued_s: Callable[[], float]) -> bool:
    """Long calls that clearly wait or clearly compute: another would not change the verdict."""
    if calls == 0 or (spent_s < CLEAR_CALL_S * calls and spent_s < CLEAR_SPENT_S):
        return False
    active = spent_s - queued_s()
    share = cpu_s / active if active > 0 else 1.0
    return share < CLEAR_SHARE or share > 1 - CLEAR_SHARE


def _timed_call(
    fn: Callable[[Any], Any], item: Any,
) -> tuple[Any, BaseException | None, float, float]:
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    try:
        value, error = fn(item), None
    except BaseException as exc:  # a task's own error (SystemExit too) is a real outcome
        reraise_stop(exc)  # ... but a Ctrl-C in the main thread stops the run, as inline
        value, error = None, exc
    wall1, cpu1 = time.perf_counter(), time.thread_time()
    return value, error, wall1 - wall0, cpu1 - cpu0


def take_sample(fn: Callable[[Any], Any], items: Iterable[Any], *, stop_on_error: bool) -> Sample:
    """Run and time the first calls (see the module docstring for the limits)."""
    source = iter(items)
    record = _Recorder()
    walls: list[float] = []
    spent_s = cpu_s = 0.0
    queued_at_start = queued_s()
    exhausted = False

    def queued_since() -> float:
        return max(0.0, queued_s() - queued_at_start)

    while not (_enough(len(walls), spent_s) or _clear(len(walls), spent_s, cpu_s, queued_since)):
        try:
            item = next(source)
        except StopIteration:
            exhausted = True
            break
        except Exception as exc:  # the input failed: the run reports it where it would have
            source, exhausted = _raising(exc), True
            break
        value, error, wall, cpu = _timed_call(fn, item)
        if inspect.isawaitable(value):
            return _awaitable_sample(value, item, source, record)
        record.add(item, value, error)
        walls.append(wall)
        spent_s += wall
        cpu_s += cpu
        if error is not None and stop_on_error:
            break
    per_call = _median(walls)
    return Sample(
        record.inputs, record.result(per_call), source, exhausted, len(walls), spent_s, cpu_s,
        per_call, queued_since(),
    )


def queued_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat; else 0)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _awaitable_sample(value: Any, item: Any, source: Iterator[Any], record: _Recorder) -> Sample:
    """``fn`` returns awaitables: not ours to await here. The item goes back to the input."""
    close = getattr(value, "close", None)
    if callable(close):
        close()  # a coroutine that never ran: no side effect, no "never awaited" warning
    rest = itertools.chain(record.inputs, [item], source)
    empty = ChunkResult([], None, 0.0)
    return Sample([], empty, rest, False, 0, 0.0, 0.0, 0.0, returned_awaitable=True)


def thread_trial(fn: Callable[[Any], Any], sample: Sample, threads: int) -> Sample:
    """Run a few more items on ``threads`` threads at once; outcomes join the sample's head.

    Each thread runs a block of about ``TRIAL_S`` of CPU time in calls, all released at once.
    """
    # sized by CPU time: on a busy machine the wall time of a call is mostly time queued
    cpu_per_call = sample.cpu_s / sample.calls if sample.calls else sample.per_call_s
    per_thread = max(1, min(TRIAL_CALLS_MAX, math.ceil(TRIAL_S / max(cpu_per_call, 1e-9))))
    pulled, rest, exhausted = _pull(sample.rest, threads * per_thread)
    if len(pulled) < 2:  # nothing to compare: put the item back, uncomputed
        return replace(sample, rest=itertools.chain(pulled, rest), exhausted=exhausted)
    blocks = [pulled[i : i + per_thread] for i in range(0, len(pulled), per_thread)]
    outcomes, trial = _run_blocks(fn, blocks)
    record = _Recorder()
    record.inputs, record.values = list(sample.inputs), list(sample.head.values)
    record.errors = dict(sample.head.errors or {})
    for item, (value, error) in zip(pulled, outcomes, strict=True):
        record.add(item, value, error)
    return replace(
        sample, inputs=record.inputs, head=record.result(sample.per_call_s), rest=rest,
        exhausted=exhausted, trial=trial,
    )


def _pull(source: Iterator[Any], count: int) -> tuple[list[Any], Iterator[Any], bool]:
    pulled: list[Any] = []
    try:
        for item in source:
            pulled.append(item)
            if len(pulled) >= count:
                return pulled, source, False
    except Exception as exc:
        return pulled, _raising(exc), True
    return pulled, source, True


def _run_blocks(
    fn: Callable[[Any], Any], blocks: list[list[Any]],
) -> tuple[list[tuple[Any, BaseException | None]], Trial]:
    """Each block on its own thread, all released at once: the outcomes, and what the trial
    saw (its wall time is from the first start to the last end)."""
    results: list[list[tuple[Any, BaseException | None]]] = [[] for _ in blocks]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(blocks)
    cpu = [0.0] * len(blocks)
    queued = [0.0] * len(blocks)
    barrier = threading.Barrier(len(blocks))

    def work(index: int) -> None:
        queued0 = queued_s()  # reading it releases the GIL: not within the span
        barrier.wait()
        start, cpu0 = time.perf_counter(), time.thread_time()
        for item in blocks[index]:
            value, error, _, _ = _timed_call(fn, item)
            results[index].append((value, error))
        cpu[index] = time.thread_time() - cpu0
        spans[index] = (start, time.perf_counter())
        queued[index] = queued_s() - queued0

    workers = [
        threading.Thread(target=work, args=(i,), name=f"plait-probe-{i}", daemon=True)
        for i in range(len(blocks))
    ]
    with _long_switch_interval():
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    busy_s = sum(end - start for start, end in spans)
    blocked_s = max(0.0, busy_s - sum(cpu) - sum(queued))
    trial = Trial(
        threads=len(blocks), calls=sum(map(len, blocks)), wall_s=wall,
        parallel=sum(cpu) / wall if wall > 0 else 1.0,
        overlap=busy_s / wall if wall > 0 else 1.0,
        blocked=blocked_s / busy_s if busy_s > 0 else 0.0,
    )
    return [outcome for block in results for outcome in block], trial


TRIAL_SWITCH_S = 1.0  # the GIL's switch interval during a trial (5 ms otherwise)
_switch_lock = threading.Lock()  # one trial at a time changes it, and puts it back


@contextlib.contextmanager
def _long_switch_interval() -> Iterator[None]:
    """Other threads of the program may wait for the GIL up to the trial's length (a few tens
    of ms, as when the calling thread runs the calls itself)."""
    with _switch_lock:
        before = sys.getswitchinterval()
        sys.setswitchinterval(TRIAL_SWITCH_S)
        try:
            yield
        finally:
            sys.setswitchinterval(before)


def pickle_problem(fn: Callable[..., Any], inputs: list[Any], values: list[Any]) -> str | None:
    """Why the function, an input or a result cannot travel to a process; None if all can."""
    cloudpickle = importlib.import_module("cloudpickle")  # as the process backend sends it
    for what, obj, dumps in (
        ("the function", fn, cloudpickle.dumps),
        ("an input", inputs, pickle.dumps),
        ("a result", values, pickle.dumps),
    ):
        try:
            dumps(obj)
        except Exception as exc:
            return f"{what} cannot be pickled ({type(exc).__name__}: {exc})"
    return None
