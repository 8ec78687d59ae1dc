"""plait.ThreadPoolExecutor and plait.ProcessPoolExecutor: the stdlib's executors, on plait's
backends.

Same names, signatures and semantics as ``concurrent.futures``: futures go PENDING -> RUNNING
-> FINISHED, ``map`` is a lazy iterator, ``shutdown(cancel_futures=True)`` cancels only what
has not started, work left in an executor runs at interpreter exit, and an unreferenced
executor lets its threads and processes go. What plait adds: a worker process that dies fails
only its own task (``plait.WorkerCrashed``, also a ``BrokenProcessPool``) and is replaced, the
pool goes on; and an optional per-task ``timeout=``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.thread import ThreadPoolExecutor as _StdThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._dropin_worker import AuthKey, dumps, initialize, process_chunk, run_pickled
from ._executor import FutureReply
from ._lifetime import exiting, watch

if TYPE_CHECKING:
    from ._backends._base import ChunkResult
    from ._backends._pool import QueuePool

_executor_ids = itertools.count()


def _cpu_count() -> int:
    count: Callable[[], int | None] = getattr(os, "process_cpu_count", os.cpu_count)
    return count() or 1


def _check_workers(max_workers: int) -> int:
    if max_workers <= 0:
        raise ValueError("max_workers must be greater than 0")
    return max_workers


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return timeout


class _Raised:
    """A BaseException that is not an Exception (SystemExit...), carried back as a value."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Reply(FutureReply):
    """Settles a task's future from the pool thread, as the stdlib's worker threads do."""

    def put(self, future: Future[Any], result: ChunkResult) -> None:
        if result.errors:
            future.set_exception(self.error(result.errors[0]))
            return
        value = result.values[0]
        if type(value) is _Raised:
            future.set_exception(value.error)
        else:
            future.set_result(value)

    def fail(self, future: Future[Any], error: BaseException | None) -> None:
        super().fail(future, None if error is None else self.error(error))

    def broken(self) -> type[concurrent.futures.BrokenExecutor]:
        return concurrent.futures.BrokenExecutor

    def error(self, error: BaseException) -> BaseException:
        """A broken plait pool raises the stdlib's error of this kind of executor."""
        broken = self.broken()
        if isinstance(error, concurrent.futures.BrokenExecutor) and not isinstance(error, broken):
            translated = broken(str(error))
            translated.__cause__ = error.__cause__
            return translated
        return error


class _Executor(concurrent.futures.Executor):
    """What both drop-ins share: submit into a plait pool, shut it down, release it."""

    _reply: _Reply

    def __init__(self, backend: QueuePool[Any], handle: Any, timeout: float | None) -> None:
        self._backend = backend
        self._handle = handle
        self._timeout = timeout
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        watch(self, functools.partial(backend.close, wait=False))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._check_open()
        future: Future[Any] = Future()
        try:
            item = self._item(fn, args, kwargs)
        except Exception as exc:  # e.g. an argument that cannot be pickled: as the stdlib
            future.set_exception(exc)
            return future
        with self._shutdown_lock:
            self._check_open()
            try:
                self._backend.send(future, self._reply, self._handle, [item], self._timeout)
            except concurrent.futures.BrokenExecutor as exc:
                raise self._reply.error(exc) from exc.__cause__
            return future

    submit.__doc__ = concurrent.futures.Executor.submit.__doc__

    def _check_open(self) -> None:
        if self._backend._broken is not None:
            raise self._reply.error(self._backend._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def _item(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._shutdown_lock:
            self._shutdown = True
        self._backend.close(wait=wait, cancel_queued=cancel_futures)

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__

    def stop_now(self) -> None:
        """At exit after a Ctrl-C: queued work dropped, worker processes killed, no thread
        waited for (plait's workers do not get the signal, unlike the stdlib's processes)."""
        with self._shutdown_lock:
            self._shutdown = True
        self._backend.close(cancel=True, wait=False, cancel_queued=True)

    @property
    def _broken(self) -> str | bool:
        """As the stdlib's: False, or why the pool cannot run tasks."""
        broken = self._backend._broken
        return False if broken is None else str(broken)


# --- threads ---------------------------------------------------------------------------------


def _call(item: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> Any:
    fn, args, kwargs = item
    try:
        return fn(*args, **kwargs)
    except Exception:
        raise
    except BaseException as exc:  # the stdlib hands SystemExit & co to the future too
        return _Raised(exc)


class _ThreadReply(_Reply):
    def broken(self) -> type[concurrent.futures.BrokenExecutor]:
        from concurrent.futures.thread import BrokenThreadPool

        return BrokenThreadPool


# The stdlib's private attributes (_threads, _broken) are read-only views here: type: ignore.
class ThreadPoolExecutor(_Executor, _StdThreadPoolExecutor):  # type: ignore[misc]
    """``concurrent.futures.ThreadPoolExecutor`` on plait's thread backend.

    Same signature and behaviour; ``timeout=`` (seconds) is a plait extra: a task that runs
    longer fails with ``plait.TaskTimeout`` (a thread cannot be killed, so it is abandoned).
    It is also an instance of the stdlib's class, which some clients check (asyncio's
    ``set_default_executor``); every method of that class is plait's own.
    """

    _counter = itertools.count().__next__
    _reply = _ThreadReply()

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        timeout: float | None = None,
    ) -> None:
        from ._backends._thread import ThreadBackend

        if max_workers is None:
            max_workers = min(32, _cpu_count() + 4)  # the stdlib's default
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = _check_workers(max_workers)
        self._thread_name_prefix = thread_name_prefix or (
            f"plait-ThreadPoolExecutor-{self._counter()}"
        )
        setup = (
            None if initializer is None else functools.partial(initialize, initializer, initargs)
        )
        backend = ThreadBackend(max_workers, initializer=setup)
        backend.thread_prefix = f"{self._thread_name_prefix}_"
        super().__init__(backend, backend.prepare(_call), _check_timeout(timeout))

    @property
    def _threads(self) -> set[threading.Thread]:  # type: ignore[override]
        """The worker threads started so far (the stdlib's attribute, read by some tools)."""
        return set(self._backend._threads)


# --- processes -------------------------------------------------------------------------------


def _authkey() -> AuthKey | None:
    """Only where the program uses multiprocessing (without it there are no proxies to pass)."""
    module = sys.modules.get("multiprocessing.process")
    if module is None:
        return None
    return AuthKey(bytes(module.current_process().authkey))


def _chunks(iterables: tuple[Iterable[Any], ...], size: int) -> Iterator[list[tuple[Any, ...]]]:
    rows = zip(*iterables, strict=False)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def _flatten(lists: Iterator[list[Any]]) -> Iterator[Any]:
    for values in lists:
        values.reverse()
        while values:  # popped, so the iterator keeps no reference to what it yielded
            yield values.pop()


class _ProcessReply(_Reply):
    def broken(self) -> type[concurrent.futures.BrokenExecutor]:
        from concurrent.futures.process import BrokenProcessPool

        return BrokenProcessPool

    def put(self, future: Future[Any], result: ChunkResult) -> None:
        if result.errors:
            future.set_exception(self.error(result.errors[0]))
            return
        try:
            ok, value = pickle.loads(result.values[0])
        except BaseException as exc:  # the result cannot be rebuilt here
            future.set_exception(exc)
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class ProcessPoolExecutor(_Executor):
    """``concurrent.futures.ProcessPoolExecutor`` on plait's process backend.

    Same signature and behaviour, with these differences:

    - ``mp_context`` is accepted and ignored: workers are fresh interpreters (never forked), so
      every start method behaves like ``spawn`` without re-importing your ``__main__``;
      multiprocessing objects that only travel by inheritance (``Queue``, ``Lock``) cannot be
      passed, ``Manager()`` proxies can.
    - A worker that dies fails only its own task with ``plait.WorkerCrashed`` (a
      ``BrokenProcessPool``) and is replaced; the pool goes on.
    - Functions, arguments and results travel with cloudpickle (lambdas work).
    - ``timeout=`` (seconds) is a plait extra: a task that runs longer fails with
      ``plait.TaskTimeout`` and its worker is killed and replaced.
    """

    _counter = itertools.count().__next__
    _reply = _ProcessReply()

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        timeout: float | None = None,
    ) -> None:
        from ._backends._process import ProcessBackend

        self._max_workers = _check_workers(_cpu_count() if max_workers is None else max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        _check_max_tasks(max_tasks_per_child, mp_context)
        setup = (
            None
            if initializer is None
            else functools.partial(initialize, initializer, initargs, _authkey())
        )
        backend = ProcessBackend(
            self._max_workers, initializer=setup, max_tasks_per_worker=max_tasks_per_child
        )
        backend.thread_prefix = f"plait-ProcessPoolExecutor-{self._counter()}_"
        super().__init__(backend, backend.prepare(run_pickled), _check_timeout(timeout))

    def _item(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return dumps((_authkey(), fn, args, kwargs))

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """As the stdlib's: ``chunksize`` items travel to a worker together."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        chunks = super().map(
            functools.partial(process_chunk, fn), _chunks(iterables, chunksize), timeout=timeout
        )
        return _flatten(chunks)


def _check_max_tasks(max_tasks: int | None, mp_context: Any) -> None:
    """The stdlib's checks, kept so that code written for it behaves the same."""
    if max_tasks is None:
        return
    if type(max_tasks) is not int:
        raise TypeError("max_tasks_per_child must be an integer")
    if max_tasks <= 0:
        raise ValueError("max_tasks_per_child must be >= 1")
    if mp_context is not None and mp_context.get_start_method(allow_none=False) == "fork":
        raise ValueError(
            "max_tasks_per_child is incompatible with the 'fork' multiprocessing start "
            "method; supply a different mp_context."
        )
