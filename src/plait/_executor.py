"""plait.Pool: reusable workers across calls, and a real concurrent.futures.Executor."""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from ._backends._base import Backend, StarCall
from ._options import Options, check_backend, check_callable, check_iterable, options

_POOL_SETTINGS = ("backend", "workers", "initializer", "max_tasks_per_worker")


class Pool(concurrent.futures.Executor):
    """Workers kept across calls: ``with plait.Pool(backend="process", workers=4) as pool``.

    ``pool.map`` / ``pool.imap`` / ``pool.amap`` take the same options as ``plait.map``
    (except ``backend`` and ``workers``); ``pool.submit`` returns a standard future.
    Leaving the ``with`` block normally waits for submitted work; leaving it by an exception
    cancels what is pending and stops what runs.
    """

    def __init__(
        self,
        backend: str = "thread",
        workers: int | None = None,
        *,
        initializer: Callable[[], Any] | None = None,
        max_tasks_per_worker: int | None = None,
    ) -> None:
        name = check_backend(backend)
        if name == "auto":
            raise ValueError(
                "a Pool needs a concrete backend: 'thread', 'process', 'asyncio' or 'inline'"
            )
        from ._run import create_backend

        setup = options(
            backend=name,
            workers=workers,
            initializer=initializer,
            max_tasks_per_worker=max_tasks_per_worker,
        )
        self._backend: Backend = create_backend(name, setup.workers, setup)
        self._submit_handles: dict[int, tuple[Callable[..., Any], Any]] = {}
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._shutdown = False

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def workers(self) -> int:
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

    def amap(self, fn: Callable[..., Any], items: Any, /, **opts: Any) -> AsyncIterator[Any]:
        check_callable(fn)
        check_iterable(items)
        from ._run import make_plan, run_async

        return run_async(make_plan(fn, items, self._options(opts), self._live()))

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        import asyncio

        from ._bridge import background_loop

        check_callable(fn)
        self._live()
        coroutine = self._run_one(self._handle_for(fn), (args, kwargs))
        future = asyncio.run_coroutine_threadsafe(coroutine, background_loop())
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    async def _run_one(self, handle: Any, item: Any) -> Any:
        result = await self._backend.run(handle, [item])
        if result.errors:
            raise result.errors[0]
        return result.values[0]

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
        return self._backend

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        elif wait:
            concurrent.futures.wait(pending)
        self._backend.close(cancel=cancel_futures, wait=wait)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        self.shutdown(
            wait=not issubclass(exc_type, KeyboardInterrupt) if exc_type else True,
            cancel_futures=failed,
        )
