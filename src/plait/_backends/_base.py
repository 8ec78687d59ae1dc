"""What every backend shares: the chunk result, the loop that runs a chunk, the protocol.

A backend only knows how to run a chunk of calls somewhere and hand back a ``ChunkResult``;
ordering, windows, chunk sizes and error policies live in the scheduler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio


class ChunkResult:
    """Outcomes of one chunk: ``values[i]`` or ``errors[i]`` for the i-th item."""

    __slots__ = ("attempts", "elapsed_s", "errors", "values")

    def __init__(
        self, values: list[Any], errors: dict[int, BaseException] | None, elapsed_s: float
    ) -> None:
        self.values = values
        self.errors = errors
        self.elapsed_s = elapsed_s
        self.attempts: dict[int, int] | None = None  # items that took more than one attempt


class Backend(Protocol):
    """Runs chunks of calls. ``prepare`` once per function, then ``run`` per chunk."""

    name: str
    workers: int

    def prepare(self, fn: Callable[..., Any]) -> Any:
        """Turn ``fn`` into the handle that ``run`` takes (checks it can be sent)."""
        ...

    async def run(
        self, handle: Any, items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        """Run ``handle(item)`` for each item; never raises for a task's own error.

        With ``timeout_s`` (chunks of one item), a task that runs longer fails with TaskTimeout.
        """
        ...

    def close(self, *, cancel: bool = False, wait: bool | float = True) -> None:
        """Release the workers; ``cancel`` drops queued work and stops running work.

        ``wait``: True waits for the workers to finish, False does not, a number waits that long.
        """
        ...


def run_chunk(fn: Callable[[Any], Any], items: Sequence[Any], *, stops: bool = True) -> ChunkResult:
    """Call ``fn`` on each item, catching each task's error on its own.

    Whatever a task raises is its outcome, ``SystemExit`` and ``StopIteration`` included; only a
    Ctrl-C in the main thread stops the run (the inline backend runs there). ``stops=False``
    (a process worker): nothing a task raises stops the run.
    """
    values: list[Any] = []
    errors: dict[int, BaseException] | None = None
    append = values.append
    start = time.perf_counter()
    for item in items:
        try:
            append(fn(item))
        except BaseException as exc:  # a task's own error is data, not a crash
            if stops:
                reraise_stop(exc)
            if errors is None:
                errors = {}
            errors[len(values)] = exc
            append(None)
    return ChunkResult(values, errors, time.perf_counter() - start)


def reraise_stop(exc: BaseException) -> None:
    """Re-raise ``exc`` if it means "stop the run" rather than "this task failed".

    That is a Ctrl-C in the main thread (where the inline backend and ``amap`` run), or the
    cancellation of the running asyncio task. A coroutine may raise ``CancelledError`` of its
    own (say, from a future someone else cancelled): that is the task's error.
    """
    if isinstance(exc, KeyboardInterrupt):
        if threading.current_thread() is threading.main_thread():
            raise exc
        return
    import asyncio

    if isinstance(exc, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: a thread or process worker
            return
        if task is not None and task.cancelling():
            raise exc


def all_failed(count: int, error: BaseException, elapsed_s: float = 0.0) -> ChunkResult:
    """A chunk whose every item failed with ``error`` (it did not run, or not to the end)."""
    return ChunkResult([None] * count, dict.fromkeys(range(count), error), elapsed_s)


def around_failed(
    count: int, bad: dict[int, BaseException], good: list[int], sub: ChunkResult | None
) -> ChunkResult:
    """A chunk of ``count`` items whose ``bad`` ones failed before running (they cannot be
    pickled, say) and whose ``good`` ones ran as ``sub``, in that order."""
    values: list[Any] = [None] * count
    errors: dict[int, BaseException] = dict(bad)
    for position, i in enumerate(good):
        assert sub is not None
        values[i] = sub.values[position]
        if sub.errors and position in sub.errors:
            errors[i] = sub.errors[position]
    return ChunkResult(values, errors, sub.elapsed_s if sub else 0.0)


def concat(parts: list[ChunkResult]) -> ChunkResult:
    """One chunk's result from the results of its parts, run one after another."""
    values: list[Any] = []
    errors: dict[int, BaseException] = {}
    for part in parts:
        for i, error in (part.errors or {}).items():
            errors[len(values) + i] = error
        values.extend(part.values)
    return ChunkResult(values, errors or None, sum(p.elapsed_s for p in parts))


def timed_out(count: int, timeout_s: float, how: str) -> ChunkResult:
    """A chunk whose every item ran past its timeout."""
    from .._exceptions import TaskTimeout

    error = TaskTimeout(f"the task ran longer than its timeout of {timeout_s:g} s; {how}")
    return all_failed(count, error, timeout_s)


class RunCoroutine:
    """Makes a coroutine function callable from a thread or process: one loop per thread."""

    _local = threading.local()

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            import asyncio

            runner = self._local.runner = asyncio.Runner()
        return runner.run(self.fn(item))


def close_thread_runner() -> None:
    """Close this thread's event loop for coroutine tasks, if it made one (call at thread end)."""
    runner = getattr(RunCoroutine._local, "runner", None)
    if runner is not None:
        RunCoroutine._local.runner = None
        runner.close()


class StarCall:
    """Adapts ``fn(*args, **kwargs)`` to the one-item calling convention: item=(args, kwargs)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, item: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        args, kwargs = item
        return self.fn(*args, **kwargs)


def unwrapped(fn: Any) -> Any:
    """The user's function behind ``functools.partial`` and ``StarCall``. Only those two are
    looked through: an object that makes up its attributes (a ``unittest.mock.Mock``) has a
    ``func`` of its own at every level."""
    import functools

    while isinstance(fn, StarCall | functools.partial):
        fn = fn.fn if isinstance(fn, StarCall) else fn.func
    return fn


def is_async_callable(fn: Any) -> bool:
    """True for coroutine functions, also behind functools.partial or a StarCall."""
    import inspect

    fn = unwrapped(fn)
    try:
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
        )
    except Exception:  # an attribute that raises (inspect reads several): not a coroutine one
        return False


def blocking_callable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a thread or process worker calls: coroutine functions run to completion."""
    return RunCoroutine(fn) if is_async_callable(fn) else fn
