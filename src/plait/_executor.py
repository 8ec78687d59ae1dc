"""plait.Pool: reusable workers across calls, and a real concurrent.futures.Executor."""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._backends import NAMES
from ._backends._base import Backend, StarCall
from ._backends._early import start_early
from ._lifetime import exiting, watch
from ._options import Options, check_backend, check_callable, check_iterable, options
from ._stream import AsyncResults

if TYPE_CHECKING:
    from ._backends._base import ChunkResult
    from ._submit_loop import SubmitLoop

_POOL_SETTINGS = ("backend", "workers", "initializer", "max_tasks_per_worker")


class FutureReply:
    """Settles a submitted task's future from the pool thread that ran it: the future goes
    RUNNING when a worker picks the task up, and its done-callbacks run there, on no loop."""

    settles_on_thread = True

    def start(self, future: Future[Any]) -> bool:
        return future.set_running_or_notify_cancel()

    def put(self, future: Future[Any], result: ChunkResult) -> None:
        if result.errors:
            future.set_exception(result.errors[0])
        else:
            future.set_result(result.values[0])

    def fail(self, future: Future[Any], error: BaseException | None) -> None:
        if error is None:
            future.cancel()
        if future.set_running_or_notify_cancel():  # if cancelled, this wakes wait() callers
            future.set_exception(error or concurrent.futures.CancelledError())

    def abandoned(self, future: Future[Any]) -> bool:
        return False  # a running future cannot be cancelled: its task runs to the end


_REPLY = FutureReply()


class Pool(concurrent.futures.Executor):
    """Workers kept across calls: ``with plait.Pool(backend="process", workers=4) as pool``.

    ``pool.map`` / ``pool.imap`` / ``pool.amap`` take the same options as ``plait.map``
    (except ``backend`` and ``workers``); ``pool.submit`` returns a standard future.
    Options of one backend go to it: ``Pool(backend="dask", address="tcp://...")`` or
    ``client=`` picks the Dask cluster.
    Leaving the ``with`` block normally waits for submitted work; leaving it by an exception
    cancels what is pending and stops what runs. A pool never shut down finishes its submitted
    work at interpreter exit; an unreferenced one releases its workers.
    """

    def __init__(
        self,
        backend: str = "thread",
        workers: int | None = None,
        *,
        initializer: Callable[[], Any] | None = None,
        max_tasks_per_worker: int | None = None,
        **backend_options: Any,
    ) -> None:
        name = check_backend(backend)
        if name == "auto":
            raise ValueError(f"a Pool needs a concrete backend: {', '.join(map(repr, NAMES))}")
        start_early(name)
        from ._run import create_backend

        setup = options(
            backend=name,
            workers=workers,
            initializer=initializer,
            max_tasks_per_worker=max_tasks_per_worker,
        )
        self._backend: Backend = create_backend(name, setup.workers, setup, **backend_options)
        self._submit_handles: dict[int, tuple[Callable[..., Any], Any]] = {}
        self._shutdown = False
        self._lock = threading.Lock()
        self._loop: SubmitLoop | None = None
        if not hasattr(self._backend, "send"):  # asyncio and inline: submits run on a loop
            from ._submit_loop import SubmitLoop

            self._loop = SubmitLoop(self._backend)
        watch(self, functools.partial(_release, self._backend, self._loop))

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def workers(self) -> int:
        return self._backend.workers

    @property
    def _max_workers(self) -> int:
        """The stdlib executors' name for it, which clients read (Dask's local scheduler)."""
        return self._backend.workers

    def imap(self, fn: Callable[..., Any], items: Iterable[Any], /, **opts: Any) -> Iterator[Any]:
        check_callable(fn)
        check_iterable(items)
        from ._run import make_plan, run_sync

        return run_sync(make_plan(fn, items, self._options(opts), self._live()))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        **opts: Any,
    ) -> list[Any]:
        """Like ``plait.map``; several iterables are zipped and their items passed as arguments.

        As in ``Executor.map``, ``timeout`` bounds the whole call (plait's ``deadline``); the
        per-task timeout of ``plait.map`` is ``pool.imap(..., timeout=)`` here.
        """
        if timeout is not None:
            opts = {**opts, "deadline": timeout}
        if len(iterables) != 1:
            rows: Iterator[tuple[tuple[Any, ...], dict[str, Any]]] = (
                ((*args,), {}) for args in zip(*iterables, strict=False)
            )
            fn, iterables = StarCall(fn), (rows,)
        check_callable(fn)
        check_iterable(iterables[0])
        from ._run import collect, make_plan

        plan = make_plan(
            fn, iterables[0], self._options({**opts, "chunksize": chunksize}), self._live()
        )
        return collect(plan)

    def amap(self, fn: Callable[..., Any], items: Any, /, **opts: Any) -> AsyncResults[Any]:
        """As ``plait.amap`` on this pool's workers: ``async for`` the results, or ``await``
        the list."""
        check_callable(fn)
        check_iterable(items)
        from ._run import make_plan, run_async

        return AsyncResults(run_async(make_plan(fn, items, self._options(opts), self._live())))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """A future that goes RUNNING when a worker starts the call; its callbacks run in
        the pool's own thread (never on a loop that other work shares)."""
        check_callable(fn)
        handle = self._handle_for(fn)
        future: Future[Any] = Future()
        with self._lock:
            self._live()
            if self._loop is not None:
                self._loop.submit(future, handle, (args, kwargs))
            else:
                self._backend.send(future, _REPLY, handle, [(args, kwargs)])  # type: ignore[attr-defined]
        return future

    def _handle_for(self, fn: Callable[..., Any]) -> Any:
        cached = self._submit_handles.get(id(fn))
        if cached is None or cached[0] is not fn:
            if len(self._submit_handles) > 256:
                self._submit_handles.clear()
            cached = (fn, self._live().prepare(StarCall(fn)))
            self._submit_handles[id(fn)] = cached
        return cached[1]

    def _options(self, opts: dict[str, Any]) -> Options:
        fixed = [name for name in _POOL_SETTINGS if name in opts]
        if fixed:
            raise TypeError(
                f"{', '.join(fixed)} belong to the Pool itself: plait.Pool({fixed[0]}=...)"
            )
        return options(backend=self.backend, **opts)

    def _live(self) -> Backend:
        if self._shutdown:
            raise RuntimeError("this plait.Pool is shut down; create a new one")
        if exiting():
            raise RuntimeError("cannot schedule new work after interpreter shutdown")
        return self._backend

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``: ``cancel_futures`` cancels what has not started yet."""
        self._close(wait=wait, cancel_queued=cancel_futures, cancel=False)

    def stop_now(self) -> None:
        """What a Ctrl-C does: queued work dropped, worker processes killed, no thread waited."""
        self._close(wait=False, cancel_queued=True, cancel=True)

    def _close(self, *, wait: bool, cancel_queued: bool, cancel: bool) -> None:
        with self._lock:
            self._shutdown = True
        if self._loop is not None:
            self._loop.close(wait=wait, cancel_queued=cancel_queued, cancel=cancel)
            self._backend.close(cancel=cancel, wait=wait)
        else:
            self._backend.close(  # type: ignore[call-arg]
                cancel=cancel, wait=wait, cancel_queued=cancel_queued
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        self._close(
            wait=not issubclass(exc_type, KeyboardInterrupt) if exc_type else True,
            cancel_queued=failed,
            cancel=failed,
        )


def _release(backend: Backend, loop: SubmitLoop | None) -> None:
    """An unreferenced pool: queued work still runs, then the workers go (nothing waits)."""
    if loop is not None:
        loop.close(wait=False, cancel_queued=False, cancel=False)
    backend.close(wait=False)
