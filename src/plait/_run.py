"""Running a plan: the sync driver (private loop thread) and the async driver (caller's loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import operator
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _backends
from ._backends._base import Backend, ChunkResult, is_async_callable
from ._backends._early import start_early
from ._backends._pool import QueuePool
from ._bridge import LoopThread, give_back, in_thread, lease_loop
from ._chunks import Chunker, Source
from ._options import Options, policies_given
from ._policies import Policies
from ._progress import Bar, NoProgress, progress
from ._results import expand
from ._scheduler import Entry, Scheduler, Window
from ._sinks import ListSink, LoopSink, Sink, ThreadSink

_CANCEL_WAIT_S = 2.0


@dataclass(slots=True)
class Plan:
    fn: Callable[..., Any]
    items: Any
    length: int
    options: Options
    backend: Backend
    owned: bool
    handle: Any
    chunksize: int | None = None
    head: ChunkResult | None = None  # results of the items that backend="auto" sampled
    decision: Any = None  # backend="auto": its Decision (what it chose, and why)


def make_plan(fn: Callable[..., Any], items: Any, options: Options, pool: Backend | None) -> Plan:
    length = operator.length_hint(items, 0) if not hasattr(items, "__aiter__") else 0
    if pool is not None:
        plan = Plan(fn, items, length, options, pool, False, None, options.chunksize)
    elif options.backend == "auto":
        from ._auto import decide

        auto = decide(fn, items, options, length)
        name = auto.backend
        if _needs_stoppable(fn, options) and not _backends.info(name).stops_tasks:
            name = "thread"
        backend = create_backend(name, auto.workers, options, shared=True)
        plan = Plan(
            fn, auto.items, length, options, backend, True, None, auto.chunksize, auto.head,
            auto.decision,
        )
    else:
        if _needs_stoppable(fn, options) and not _backends.info(options.backend).stops_tasks:
            raise ValueError(_cannot_stop(options.backend))
        if options.explain:
            from ._auto import announce

            announce(fn, items, options, length)
        backend = create_backend(options.backend, options.workers, options, shared=True)
        plan = Plan(fn, items, length, options, backend, True, None, options.chunksize)
    try:
        plan.handle = plan.backend.prepare(fn)
    except BaseException:
        if plan.owned:
            plan.backend.close()
        raise
    return plan


def _needs_stoppable(fn: Callable[..., Any], options: Options) -> bool:
    return options.timeout is not None and not is_async_callable(fn)


def _cannot_stop(name: str) -> str:
    return (
        f"timeout needs a backend that can stop a task: use {_backends_with('stops_tasks')} "
        f"(the {name} backend cannot stop a running one)"
    )


def _backends_with(capability: str) -> str:
    """The backends that have ``capability``, as a hint: "backend='thread' or 'process'"."""
    names = [repr(n) for n, info in _backends.REGISTRY.items() if getattr(info, capability)]
    return "backend=" + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def create_backend(
    name: str,
    workers: int | None,
    options: Options,
    *,
    shared: bool = False,
    **backend_options: Any,
) -> Backend:
    """``shared``: a run of its own (``plait.map``), whose process workers may be shared with
    the program's other runs (see _backends/_reuse); a Pool's are its own.
    ``backend_options``: what only this backend takes (dask: ``address=``, ``client=``)."""
    setup = {
        key: value
        for key, value in (
            ("initializer", options.initializer),
            ("max_tasks_per_worker", options.max_tasks_per_worker),
        )
        if value is not None
    }
    described = _backends.info(name)
    if "initializer" in setup and not described.initializer:
        raise ValueError(f"initializer needs {_backends_with('initializer')}, not {name!r}")
    if "max_tasks_per_worker" in setup and not described.recycles:
        raise ValueError(
            f"max_tasks_per_worker recycles worker processes: use {_backends_with('recycles')}"
        )
    start_early(name)  # the template process boots while the process backend's modules load
    if shared and name == "process" and not setup:
        return _backends.create(name, workers, shared=True)
    return _backends.create(name, workers, **setup, **backend_options)


def _policies(options: Options) -> Policies:
    return Policies(
        timeout_s=options.timeout,
        deadline_s=options.deadline,
        retries=options.retries,
        retry_on=options.retry_on,
        rate=options.rate,
        burst=options.burst,
        concurrency=options.concurrency,
        limit_key=options.limit_key,
        clock=options.clock,
    )


def _scheduler(
    plan: Plan, sink_for: Callable[[Window], Sink[Entry]], loop: asyncio.AbstractEventLoop
) -> Scheduler:
    opts = plan.options
    window = Window(max(2, 2 * plan.backend.workers), loop)
    policies = _policies(opts)
    one_by_one = policies.per_task or opts.max_tasks_per_worker is not None
    chunksize = 1 if one_by_one else plan.chunksize
    chunker = Chunker(plan.backend.name, plan.backend.workers, chunksize, plan.length)
    source = Source(plan.items, chunker)
    if plan.head is not None:
        source.next_index = len(plan.head.values)
        chunker.learn(len(plan.head.values), plan.head.elapsed_s)
    return Scheduler(
        plan.backend,
        plan.handle,
        source,
        sink_for(window),
        window,
        ordered=opts.ordered,
        stop_on_error=opts.errors == "raise",
        policies=policies,
    )


def _runs_inline(plan: Plan) -> bool:
    return (
        plan.backend.name == "inline"
        and not policies_given(plan.options)
        and not is_async_callable(plan.fn)
        and not hasattr(plan.items, "__aiter__")
    )


def _refuse_to_block_the_backends_loop(plan: Plan) -> None:
    """A sync call on the thread of the event loop the backend itself needs would deadlock."""
    if not getattr(plan.backend, "needs_callers_loop", False):
        return
    if plan.owned:
        _close(plan.backend, None)
    raise RuntimeError(
        "this call would block the event loop that its asynchronous Dask client runs on: "
        "use plait.amap here (`async for x in plait.amap(...)` or `await plait.amap(...)`), "
        "or run the sync call on a thread (`await asyncio.to_thread(plait.map, ...)`)"
    )


def run_sync(plan: Plan) -> Iterator[Any]:
    _refuse_to_block_the_backends_loop(plan)
    if _runs_inline(plan):
        return _run_inline(plan)
    return _run_on_loop(plan)


def _run_on_loop(plan: Plan) -> Iterator[Any]:
    lease = lease_loop(fast=plan.backend.name == "asyncio")
    try:
        yield from _stream_on(lease, plan)
    finally:
        give_back(lease)


def _stream_on(lease: LoopThread, plan: Plan) -> Iterator[Any]:
    loop = lease.loop
    sinks: list[ThreadSink[Entry]] = []

    def sink_for(window: Window) -> ThreadSink[Entry]:
        sinks.append(ThreadSink(loop, window.release))
        return sinks[0]

    scheduler = _scheduler(plan, sink_for, loop)
    future = asyncio.run_coroutine_threadsafe(scheduler.run(), loop)
    bar = progress(plan.options.progress, plan.length, "plait")
    interrupted: BaseException | None = None
    try:
        for entry in _with_head(plan, sinks[0]):
            values, error = consume(entry, plan.options.errors, bar)
            yield from values
            if error is not None:
                raise error
    except BaseException as exc:
        interrupted = exc
        raise
    finally:
        bar.close()
        _finish(plan, future, interrupted)


def consume(
    entry: Entry, errors: str, bar: NoProgress | Bar
) -> tuple[list[Any], BaseException | None]:
    """The one step every driver takes per chunk: count it, then turn it into what the caller
    asked for (values, outcomes, or the values before the error to raise)."""
    start, result = entry
    if result.errors:
        bar.update(len(result.values), failed=len(result.errors))
    else:
        bar.update(len(result.values))
    return expand(start, result, errors)


def _with_head(plan: Plan, entries: Iterable[Entry]) -> Iterator[Entry]:
    if plan.head is not None:
        yield 0, plan.head
    yield from entries


def _finish(
    plan: Plan, future: concurrent.futures.Future[None], interrupted: BaseException | None
) -> None:
    """Stop the scheduler if it still runs, then release the workers."""
    if not future.done():
        future.cancel()
        with contextlib.suppress(BaseException):  # it was cancelled: its outcome is moot
            future.result(timeout=_CANCEL_WAIT_S)
    if plan.owned:
        _close(plan.backend, interrupted)


def _run_inline(plan: Plan) -> Iterator[Any]:
    """The inline backend in the caller's thread, with no scheduler in between."""
    if not _fast_inline(plan):
        for values, error in _inline_steps(plan):
            yield from values
            if error is not None:
                raise error
        return
    values, error = _head(plan)
    yield from values
    if error is not None:
        raise error
    fn = plan.fn
    for item in plan.items:
        yield fn(item)


def _collect_inline(plan: Plan) -> tuple[list[Any], BaseException | None]:
    """``_run_inline`` for plait.map: a plain loop, so a task's StopIteration stays one."""
    results: list[Any] = []
    if not _fast_inline(plan):
        for values, error in _inline_steps(plan):
            results.extend(values)
            if error is not None:
                return results, error
        return results, None
    values, error = _head(plan)
    results.extend(values)
    if error is not None:
        return results, error
    fn, append = plan.fn, results.append
    for item in plan.items:
        append(fn(item))
    return results, None


def _fast_inline(plan: Plan) -> bool:
    """Nothing to count or catch: the bare loop, as fast as the caller's own."""
    return plan.options.errors == "raise" and not plan.options.progress


def _head(plan: Plan) -> tuple[list[Any], BaseException | None]:
    """The results of the items that backend="auto" sampled, if any."""
    return ([], None) if plan.head is None else expand(0, plan.head, plan.options.errors)


def _inline_steps(plan: Plan) -> Iterator[tuple[list[Any], BaseException | None]]:
    from ._backends._base import run_chunk

    fn, errors = plan.fn, plan.options.errors
    bar = progress(plan.options.progress, plan.length, "plait")
    try:
        first = 0
        if plan.head is not None:
            first = len(plan.head.values)
            yield consume((0, plan.head), errors, bar)
        for index, item in enumerate(plan.items, first):
            yield consume((index, run_chunk(fn, [item])), errors, bar)
    finally:
        bar.close()


async def run_async_planned_on_thread(
    fn: Callable[..., Any], items: Any, options: Options
) -> AsyncIterator[Any]:
    """``amap`` on a backend that starts slowly (Dask: connecting to the cluster or starting
    the embedded one): the run is planned on a thread while the caller's loop goes on."""
    setup = in_thread(lambda: make_plan(fn, items, options, None), "plait-setup")
    try:
        plan: Plan = await asyncio.shield(setup)
    except asyncio.CancelledError:
        setup.add_done_callback(_close_unused_plan)
        raise
    async with contextlib.aclosing(run_async(plan)) as run:
        async for value in run:
            yield value


def _close_unused_plan(setup: asyncio.Future[Plan]) -> None:
    """The caller left while its run was being planned: release what the plan started."""
    if not setup.cancelled() and setup.exception() is None and setup.result().owned:
        _close(setup.result().backend, asyncio.CancelledError())


async def run_async(plan: Plan) -> AsyncGenerator[Any, None]:
    loop = asyncio.get_running_loop()
    sinks: list[LoopSink[Entry]] = []

    def sink_for(window: Window) -> LoopSink[Entry]:
        sinks.append(LoopSink(window.release))
        return sinks[0]

    task = loop.create_task(_scheduler(plan, sink_for, loop).run())
    closer = _Closer(plan.backend)
    if plan.owned:  # also when this generator is dropped unclosed and its loop shuts down
        task.add_done_callback(closer.on_scheduler_done)
    bar = progress(plan.options.progress, plan.length, "plait")
    interrupted: BaseException | None = None
    try:
        if plan.head is not None:
            values, error = consume((0, plan.head), plan.options.errors, bar)
            for value in values:
                yield value
            if error is not None:
                raise error
        # the sink's chunks as values, one batch per loop turn, with no generator in between
        sink, taken, plain = sinks[0], sinks[0].taken, plan.options.errors != "collect"
        while entries := await sink.batch():
            for entry in entries:
                if plain and not entry[1].errors:  # amap's hot path: the values as they are
                    bar.update(len(entry[1].values))
                    for value in entry[1].values:
                        yield value
                else:
                    values, error = consume(entry, plan.options.errors, bar)
                    for value in values:
                        yield value
                    if error is not None:
                        raise error
                taken(1)  # its last value is taken: free the chunk's window slot
    except BaseException as exc:
        interrupted = exc
        raise
    finally:
        bar.close()
        if plan.owned:
            await closer.close(interrupted)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


_ABANDON = (KeyboardInterrupt, SystemExit, asyncio.CancelledError)
_ABANDON_GRACE_S = 0.5  # how long a Ctrl-C waits for running threads to notice
_SHUTDOWN_JOIN_S = 5.0  # a cancelled close kills processes and waits _ABANDON_GRACE_S for threads


def _close(backend: Backend, interrupted: BaseException | None) -> None:
    """Release the workers now. Stopped early, queued work is dropped and worker processes are
    killed; only a Ctrl-C or a cancellation skips waiting for running threads (they cannot be
    killed), so the caller gets control back at once."""
    abandon = isinstance(interrupted, _ABANDON)
    backend.close(cancel=interrupted is not None, wait=_ABANDON_GRACE_S if abandon else True)


class _Closer:
    """Closes a run's backend once, on a thread of its own, for ``amap``: it runs on the
    caller's loop, which other work shares, so joining threads or reaping processes must not
    happen there. Whoever asks first starts it; every coroutine that asks waits for it."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def start(self, interrupted: BaseException | None) -> threading.Thread:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._close, args=(interrupted,), name="plait-close", daemon=True
                )
                self._thread.start()
            return self._thread

    def _close(self, interrupted: BaseException | None) -> None:
        try:
            _close(self._backend, interrupted)
        finally:
            with self._lock:
                self._done = True
                waiters, self._waiters = self._waiters, []
            for loop, waiter in waiters:
                with contextlib.suppress(RuntimeError):  # that loop is gone: nobody waits
                    loop.call_soon_threadsafe(_set_done, waiter)

    async def close(self, interrupted: BaseException | None) -> None:
        if not isinstance(self._backend, QueuePool):  # nothing to join or reap
            _close(self._backend, interrupted)
            return
        thread = self.start(interrupted)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._done:
                self._waiters.append((loop, waiter))
            else:
                waiter.set_result(None)
        cancelled = False
        while not waiter.done():
            try:
                await asyncio.shield(waiter)
            except asyncio.CancelledError:
                # e.g. asyncio.run cancelling the abandoned generator's aclose() at exit: finish
                # closing first (bounded by the close's grace period), so nothing is left running
                cancelled = True
        thread.join()  # it has finished its work: this returns at once
        if cancelled:
            raise asyncio.CancelledError

    def on_scheduler_done(self, task: asyncio.Task[None]) -> None:
        """The loop cancelled the run without closing the generator (it was dropped)."""
        if not task.cancelled():
            return
        if isinstance(self._backend, QueuePool):
            # Only a loop shutting down (asyncio.run cancelling what is left) gets here: the
            # generator's own aclose() may never run, so wait for the close here, boundedly.
            self.start(asyncio.CancelledError()).join(_SHUTDOWN_JOIN_S)
        else:
            _close(self._backend, asyncio.CancelledError())


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def collect(plan: Plan) -> list[Any]:
    """plait.map: the whole run on a loop of its own, one hand-off at the end."""
    _refuse_to_block_the_backends_loop(plan)
    if _runs_inline(plan):
        values, error = _collect_inline(plan)
    else:
        lease = lease_loop(fast=plan.backend.name == "asyncio")
        try:
            values, error = _collect_on(lease, plan)
        finally:
            give_back(lease)
    if error is not None:
        raise error  # here, not in a coroutine or generator: a StopIteration stays one
    return values


def _collect_on(lease: LoopThread, plan: Plan) -> tuple[list[Any], BaseException | None]:
    finished = threading.Event()

    async def collect_and_signal() -> tuple[list[Any], BaseException | None]:
        try:
            return await collect_async(plan)
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(collect_and_signal(), lease.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        finished.wait(_CANCEL_WAIT_S)
        raise


async def collect_async(plan: Plan) -> tuple[list[Any], BaseException | None]:
    """The results, and the error that stopped the run (returned: raising a StopIteration from
    a coroutine would turn it into a RuntimeError)."""
    loop = asyncio.get_running_loop()
    bar = progress(plan.options.progress, plan.length, "plait")
    errors = plan.options.errors
    sinks: list[ListSink] = []

    def step(entry: Entry) -> tuple[list[Any], BaseException | None]:
        return consume(entry, errors, bar)

    def sink_for(window: Window) -> ListSink:
        sinks.append(ListSink(window.release, bar, errors != "collect", step))
        return sinks[0]

    scheduler = _scheduler(plan, sink_for, loop)
    sink = sinks[0]
    task: asyncio.Task[None] | None = None
    interrupted: BaseException | None = None
    try:
        if plan.head is not None:
            sink.put((0, plan.head), took_slot=False)
        if sink.error is None:
            task = loop.create_task(scheduler.run())
            sink.on_error = task.cancel  # errors="raise": stop at once, as imap would
            await asyncio.wait({task})
    except BaseException as exc:
        interrupted = exc
        if task is not None:
            task.cancel()
        raise
    finally:
        bar.close()
        if plan.owned:
            _close(plan.backend, interrupted or sink.error)
    return sink.values, sink.error
