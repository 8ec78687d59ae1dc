"""backend="auto": measure a few real calls, then read the answer off a decision table.

``choose(facts)`` is the table: a pure function from facts to a ``Decision``. When it needs a
fact that costs something to learn (a timed sample of real calls, a thread trial, a pickle
check) it returns the name of that fact instead, ``decide`` has ``_probe`` measure it, and asks
again. Each fact is measured at most once, and only when the table gets to it.

Contract with ``_run.make_plan``: ``decide`` returns an ``AutoPlan`` whose ``head`` holds the
outcomes of the sampled items 0..k-1 (kept and yielded first, never recomputed) and whose
``items`` is the rest of the input.
"""

from __future__ import annotations

import contextlib
import math
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ._backends import default_workers
from ._backends._base import ChunkResult
from ._decision import Decision
from ._options import Options, check_callable, check_iterable, options, policies_given

if TYPE_CHECKING:
    from typing import Unpack

    from . import _probe
    from ._options import RunOptions

Need = Literal["sample", "trial", "pickle"]

# The thresholds of the table, set from measurements on a 2-core machine (CPython 3.11).
TINY_CALL_S = 20e-6  # below this a call costs less than handing it to a thread or process
IO_CPU_SHARE = 0.5  # calls that use the CPU less than half of their time mostly wait
THREADS_MIN, THREADS_MAX = 4, 256  # worker bounds for threads sized from the wait ratio
IO_HINT_THREADS = 64  # kind="io" without a measurement
OVERLAP_MIN = 1.05  # trial threads whose spans overlap more ran at once (GIL-bound ones: <= 1) ...
BLOCKED_MAX = 0.25  # ... and if blocked less than this, the calls release the GIL
PROCESS_START_S = 0.1  # starting the worker processes (2 workers: ~0.1 s measured)


@dataclass(frozen=True, slots=True)
class Facts:
    """What ``choose`` reads: the caller's options, the function, the machine, measurements."""

    backend: str = "auto"
    workers: int | None = None
    chunksize: int | None = None
    kind: str | None = None
    errors: str = "raise"
    coroutine: bool = False
    async_input: bool = False
    gil: bool = True
    cores: int = 1
    length: int = 0  # length hint of the whole input; 0 when unknown
    policies: tuple[str, ...] = ()  # per-task policies given (timeout, retries, rate...)
    initializer: bool = False  # workers run an initializer first
    recycle: bool = False  # max_tasks_per_worker: worker processes are replaced
    sample: _probe.Sample | None = None  # None: not measured yet
    trial_tried: bool = False
    pickle_checked: bool = False
    pickle_problem: str | None = None


@dataclass(slots=True)
class AutoPlan:
    backend: str
    workers: int | None
    chunksize: int | None
    items: Any
    head: ChunkResult | None = None
    decision: Decision | None = None  # what was chosen and why (explain, pipelines)


def choose(facts: Facts) -> Decision | Need:
    """The decision table. Rules are tried in order; the first that applies decides."""
    f = facts
    # 1. The caller named a backend: it wins, nothing is measured.
    if f.backend != "auto":
        return _given(f, f.backend, f"backend={f.backend!r} was given, so plait did not measure.")
    # 2. Recycling workers is a process feature; an initializer needs pool workers.
    if f.recycle:
        return _given(f, "process", "max_tasks_per_worker recycles worker processes: processes.")
    if f.initializer and f.kind != "cpu":
        return _given(f, "thread", "An initializer was given, so calls are not sampled outside "
                                   "the workers it sets up: threads (kind='cpu' for processes).")
    # 3. Coroutine functions wait on an event loop: asyncio, many at once on one thread.
    if f.coroutine:
        return _asyncio(f, "fn is a coroutine function")
    # 4. The caller's hint: kind="io" -> threads, kind="cpu" -> processes (no sample taken).
    if f.kind == "io":
        workers = f.workers or IO_HINT_THREADS
        return Decision("thread", workers, f.chunksize, f"kind='io' was given: {workers} threads.")
    if f.kind == "cpu":
        return _cpu_hinted(f)
    # 5. Not sampled: an async iterable (it must be awaited), or calls that policies govern
    #    (a sample would run them without their timeout, retries or rate limit).
    if f.async_input or f.policies:
        why = "The input is an async iterable" if f.async_input else _given_names(f.policies)
        workers = f.workers or default_workers("thread")
        return Decision("thread", workers, f.chunksize,
                        f"{why}, so plait does not sample the calls: {workers} threads "
                        "(pass kind='cpu' for processes).")
    # 6. Everything below rests on a timed sample of the first calls.
    if f.sample is None:
        return "sample"
    return _measured(f, f.sample)


def _measured(f: Facts, s: _probe.Sample) -> Decision | Need:
    calls = _took(s)
    # 7. A plain function that returned awaitables: they need an event loop.
    if s.returned_awaitable:
        return _asyncio(f, "fn returns awaitables")
    # 8. errors="raise" and a sampled call failed: the run ends at that error, inline.
    if s.head.errors and f.errors == "raise":
        first = min(s.head.errors)
        error = type(s.head.errors[first]).__name__
        return _inline(f, f"Call {first + 1} of the sample raised {error} and errors='raise', "
                          "so the run stops there; nothing more runs.")
    # 9. The sample used up the input.
    if s.exhausted:
        if not s.head.values:
            return _inline(f, "The input is empty: nothing to run.")
        return _inline(f, f"All {len(s.head.values)} items ran during the sample "
                          f"({_fmt(s.per_call_s)} each); nothing was left to run.")
    # 10. Overhead-bound: microsecond calls lose more to a hand-off than parallelism gives back.
    if s.per_call_s < TINY_CALL_S:
        return _inline(f, f"{calls}, less than the ~{_fmt(TINY_CALL_S)} a hand-off to a thread "
                          "or process costs, so they run inline in the calling thread.")
    share = f"{_percent(s.cpu_share)} of it on the CPU"
    if s.queued_s > 0.1 * s.wall_s:
        share += f" (not counting {_fmt(s.queued_s)} queued for a busy CPU)"
    # 11. Mostly waiting (blocking I/O): threads, as many as the wait ratio keeps busy.
    if s.cpu_share < IO_CPU_SHARE:
        workers = f.workers or _io_threads(f, s)
        return Decision("thread", workers, f.chunksize,
                        f"{calls}, only {share}: they mostly wait, so they run in threads, "
                        f"{workers} at once ({f.cores} cores / CPU share, to a power of 2, within "
                        f"{THREADS_MIN}-{THREADS_MAX} and the items left).")
    return _cpu_bound(f, s, f"{calls}, {share}")


def _cpu_bound(f: Facts, s: _probe.Sample, measured: str) -> Decision | Need:
    # 12. CPU-bound on one core: nothing runs faster in parallel.
    if f.cores == 1:
        return _inline(f, f"{measured}, and this machine has 1 core: they run inline.")
    # 13. No GIL (free-threaded build): threads run Python in parallel without process costs.
    if not f.gil:
        return _cpu_threads(f, s, f"{measured}, and the GIL is off: they run in threads")
    # 14. Do the calls release the GIL (C code: hashing, compression, numpy)? Try it.
    if not f.trial_tried:
        return "trial"
    trial = s.trial
    if trial is not None and _releases_gil(trial):
        return _cpu_threads(f, s, f"{measured}; {_on_threads(trial)} (they release the GIL), "
                                  "so they run in threads")
    if trial is not None:
        measured += f"; {_on_threads(trial)} (they hold the GIL)"
    # 15. Too little work left to pay for starting processes.
    left = _left(f, s)
    if left is not None and left * (1 - 1 / f.cores) < PROCESS_START_S:
        return _inline(f, f"{measured}. The {_fmt(left)} of work left would not pay back "
                          f"starting processes (~{_fmt(PROCESS_START_S)}), so it runs inline.")
    # 16. Processes, if the function, inputs and results can travel there.
    if not f.pickle_checked:
        return "pickle"
    if f.pickle_problem is not None:
        return _cpu_threads(f, s, f"{measured}. Processes would suit them, but "
                                  f"{f.pickle_problem}, so they run in threads")
    workers = f.workers or _processes(f, s)
    return Decision("process", workers, f.chunksize, f"{measured}: they run in {workers} "
                                                     "processes, in chunks sized as they run.")


def _releases_gil(trial: _probe.Trial) -> bool:
    return trial.overlap > OVERLAP_MIN and trial.blocked < BLOCKED_MAX


def _on_threads(trial: _probe.Trial) -> str:
    """What the trial saw: how many of its threads ran at the same time, and how freely."""
    seen = f"started on {trial.threads} threads at once, {trial.overlap:.1f} ran at the same time"
    if trial.blocked >= BLOCKED_MAX:
        seen += f" but waited for the GIL {_percent(trial.blocked)} of the time"
    return f"{seen}, in an earlier run of this function" if trial.earlier else seen


def _cpu_hinted(f: Facts) -> Decision | Need:
    if not f.gil:
        return _cpu_threads(f, None, "kind='cpu' was given and the GIL is off: threads")
    if not f.pickle_checked:
        return "pickle"
    if f.pickle_problem is not None:
        return _cpu_threads(f, None, f"kind='cpu' was given, but {f.pickle_problem}: threads")
    workers = f.workers or f.cores
    return Decision("process", workers, f.chunksize, f"kind='cpu' was given: {workers} processes.")


def _given(f: Facts, backend: str, reason: str) -> Decision:
    return Decision(backend, f.workers or default_workers(backend), f.chunksize, reason)


def _inline(f: Facts, reason: str) -> Decision:
    return Decision("inline", 1, f.chunksize, reason)


def _asyncio(f: Facts, what: str) -> Decision:
    workers = f.workers or default_workers("asyncio")
    return Decision("asyncio", workers, f.chunksize,
                    f"{what}: calls wait on one event loop, up to {workers} at once (asyncio).")


def _cpu_threads(f: Facts, s: _probe.Sample | None, reason: str) -> Decision:
    workers = f.workers or (_io_threads(f, s) if s is not None else max(THREADS_MIN, f.cores))
    return Decision("thread", workers, f.chunksize, f"{reason}, {workers} at once.")


def _io_threads(f: Facts, s: _probe.Sample) -> int:
    """Threads that keep the cores busy while the others wait: cores / CPU share, to the
    nearest power of two (a share of a few percent is measured to within a factor of two only:
    1% one run, 2% the next), bounded."""
    wanted = f.cores / max(s.cpu_share, 1e-6)
    rounded = 1 << max(0, round(math.log2(wanted)))
    workers = max(THREADS_MIN, min(THREADS_MAX, rounded))
    left = _left_items(f, s)
    return workers if left is None else max(1, min(workers, left))


def _processes(f: Facts, s: _probe.Sample) -> int:
    """One per core; a little more when the calls also wait, at most two per core."""
    return min(2 * f.cores, max(f.cores, round(f.cores / max(s.cpu_share, 1e-6))))


def _left_items(f: Facts, s: _probe.Sample) -> int | None:
    if f.length <= 0:
        return None
    return max(0, f.length - len(s.head.values))


def _left(f: Facts, s: _probe.Sample) -> float | None:
    items = _left_items(f, s)
    return None if items is None else items * s.per_call_s


def _given_names(names: tuple[str, ...]) -> str:
    verb = "is" if len(names) == 1 else "are"
    return " and ".join(f"{name}=" for name in names) + f" {verb} given"


def _percent(share: float) -> str:
    return f"{share:.1%}" if share < 0.01 else f"{share:.0%}"


def _took(s: _probe.Sample) -> str:
    if s.calls == 1:
        return f"The first call took {_fmt(s.per_call_s)}"
    return f"The first {s.calls} calls took {_fmt(s.per_call_s)} each"


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def initial_facts(fn: Callable[..., Any], items: Any, opts: Options, length: int) -> Facts:
    """The facts that cost nothing to learn."""
    from . import _probe

    return Facts(
        backend=opts.backend, workers=opts.workers, chunksize=opts.chunksize, kind=opts.kind,
        errors=opts.errors, coroutine=_probe.is_coroutine(fn),
        async_input=_probe.is_async_input(items), gil=_probe.gil_enabled(),
        cores=_probe.cores(), length=length, policies=policies_given(opts),
        initializer=opts.initializer is not None, recycle=opts.max_tasks_per_worker is not None,
    )


def gather(need: Need, fn: Callable[..., Any], items: Any, facts: Facts) -> Facts:
    """Measure the one fact ``choose`` asked for."""
    from . import _probe

    if need == "sample":
        sample = _probe.take_sample(fn, items, stop_on_error=facts.errors == "raise")
        return replace(facts, sample=sample)
    if need == "trial":
        assert facts.sample is not None
        trial = _earlier_trial(fn)
        if trial is not None:
            return replace(facts, sample=replace(facts.sample, trial=trial), trial_tried=True)
        threads = min(facts.cores, _probe.TRIAL_THREADS_MAX)
        sample = _probe.thread_trial(fn, facts.sample, threads)
        _remember_trial(fn, sample.trial)
        return replace(facts, sample=sample, trial_tried=True)
    s = facts.sample
    inputs, values = (s.inputs, s.head.values) if s is not None else ([], [])
    problem = _probe.pickle_problem(fn, inputs, values)
    return replace(facts, pickle_checked=True, pickle_problem=problem)


# Whether a function holds the GIL is a property of its code, not of one run: the thread
# trial (tens of ms of calls one after another) runs once per function and program. The
# sample, which says whether the calls wait or compute, is taken on every run.
_trials: weakref.WeakKeyDictionary[Any, _probe.Trial] = weakref.WeakKeyDictionary()


def _earlier_trial(fn: Callable[..., Any]) -> _probe.Trial | None:
    try:
        trial = _trials.get(fn)
    except Exception:  # not weakly referable, unhashable, an odd __eq__: measured each time
        return None
    return None if trial is None else replace(trial, earlier=True)


def _remember_trial(fn: Callable[..., Any], trial: _probe.Trial | None) -> None:
    if trial is not None:
        with contextlib.suppress(Exception):
            _trials[fn] = trial


def measure(
    fn: Callable[..., Any], items: Any, opts: Options, length: int,
) -> tuple[Decision, Facts]:
    """Ask the table, measure what it needs, ask again: the decision and the facts it read."""
    facts = initial_facts(fn, items, opts, length)
    for _ in range(4):  # each fact is gathered at most once
        verdict = choose(facts)
        if isinstance(verdict, Decision):
            return _with_cluster(verdict, facts), facts
        facts = gather(verdict, fn, items, facts)
    raise AssertionError("the decision table asked for a fact twice")  # pragma: no cover


def _with_cluster(decision: Decision, facts: Facts) -> Decision:
    """backend="dask" names its cluster; auto never picks one, but says when one is configured."""
    from ._backends import _dask_cluster

    if decision.backend == "dask":
        threads, line = _dask_cluster.summary()
        return replace(decision, workers=facts.workers or _dask_cluster.in_flight(threads),
                       reason=f"{decision.reason} {line}.")
    hint = _dask_cluster.available()
    return replace(decision, reason=f"{decision.reason} {hint}") if hint else decision


def decide(fn: Callable[..., Any], items: Any, opts: Options, length: int) -> AutoPlan:
    decision, facts = measure(fn, items, opts, length)
    if opts.explain:
        log(decision)
    s = facts.sample
    if s is None:
        return AutoPlan(
            decision.backend, decision.workers, decision.chunksize, items, decision=decision
        )
    head = s.head if s.head.values else None
    return AutoPlan(
        decision.backend, decision.workers, decision.chunksize, s.rest, head, decision
    )


def announce(fn: Callable[..., Any], items: Any, opts: Options, length: int) -> None:
    """``explain=True`` with a named backend: log that choice too (nothing is measured)."""
    facts = initial_facts(fn, items, opts, length)
    decision = choose(facts)
    if isinstance(decision, Decision):
        log(_with_cluster(decision, facts))


def log(decision: Decision) -> None:
    """``explain=True``: the decision to the "plait" logger, or to stderr if none listens."""
    import logging

    logger = logging.getLogger("plait")
    if logger.hasHandlers():
        logger.info("plait chose %s", decision, extra={"plait_decision": decision})
    else:
        print(f"plait: {decision}", file=sys.stderr)


def explain(fn: Callable[..., Any], items: Any, /, **opts: Unpack[RunOptions]) -> Decision:
    """What ``plait.map(fn, items, **opts)`` would choose, and why.

    This measures as ``map`` does: it calls ``fn`` on the first items (for about 50 ms, or
    up to 64 microsecond calls; CPU-bound calls then also run a few more on 2-4 threads, the
    first time for a function), so a generator passed here is consumed that far. The results
    are dropped.
    """
    check_callable(fn)
    check_iterable(items)
    decision, _ = measure(fn, items, options(**opts), _length(items))
    return decision


def _length(items: Any) -> int:
    import operator

    return 0 if hasattr(items, "__aiter__") else operator.length_hint(items, 0)
