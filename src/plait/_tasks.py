"""Background tasks: ``plait.spawn`` returns a ``TaskHandle``, a ``concurrent.futures.Future``.

Each task is a one-item ``plait.amap`` run on a driver thread of its own, so it gets the
backend's real stop (process: the worker is killed; asyncio: the coroutine is cancelled;
thread: ``plait.cancelled()`` turns true and the task is abandoned after a short grace) and
the per-task policies (timeout, retries) for free. Driver threads are not daemons: at exit
Python waits for them as for any thread, unless the task asked ``on_exit="cancel"`` or the
program ends on a Ctrl-C, when an exit hook cancels them first.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, Literal

from ._backends._base import is_async_callable

OnExit = Literal["wait", "cancel"]
_CANCELLED_STATES = ("CANCELLED", "CANCELLED_AND_NOTIFIED")

_token: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "plait_cancel_token", default=None
)
_logger = logging.getLogger("plait")
_numbers = itertools.count(1)


def cancelled() -> bool:
    """True inside a spawned task once its handle was cancelled: a thread task polls this to
    stop early (threads cannot be killed). False outside a task, and in process tasks (they
    are killed instead)."""
    token = _token.get()
    return token is not None and token.is_set()


class _Call:
    """The task's call, shaped as the one-item function ``amap`` runs; it sets the cancel token
    ``cancelled()`` reads (in-process backends only: an Event does not cross to a process)."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        token: threading.Event | None,
    ) -> None:
        self.fn, self.args, self.kwargs, self.token = fn, args, kwargs, token

    def __call__(self, _item: object) -> Any:
        reset = _token.set(self.token)
        try:
            return self.fn(*self.args, **self.kwargs)
        finally:
            _token.reset(reset)


class _AsyncCall(_Call):
    async def __call__(self, _item: object) -> Any:
        reset = _token.set(self.token)
        try:
            return await self.fn(*self.args, **self.kwargs)
        finally:
            _token.reset(reset)


def make_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              backend: str, token: threading.Event) -> _Call:
    kind = _AsyncCall if is_async_callable(fn) else _Call
    return kind(fn, args, kwargs, None if backend == "process" else token)


def pick_backend(fn: Callable[..., Any], backend: str) -> str:
    """``auto`` for one call: a coroutine function awaits on a loop, anything else gets a thread
    (one call gives nothing to measure, and sampling would run it outside its backend)."""
    if backend != "auto":
        return backend
    return "asyncio" if is_async_callable(fn) else "thread"


class TaskHandle(concurrent.futures.Future[Any]):
    """A running background task: a ``concurrent.futures.Future`` with a ``name``.

    ``cancel()`` also stops a task that already runs (unlike a plain future): the handle is
    cancelled at once and the backend stops the call as it can. An exception nobody retrieved
    (``result()``, ``exception()``) is logged when the handle is collected or at exit.
    """

    def __init__(self, name: str, on_exit: OnExit) -> None:
        super().__init__()
        self.name = name
        self.on_exit = on_exit
        self.token = threading.Event()
        self.finished = threading.Event()  # the driver is done: the workers are released
        self.pool: Any = None  # the task's own one-worker Pool (thread and process backends)
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._retrieved = False
        self._reported = False

    def __repr__(self) -> str:
        return f"<plait.TaskHandle {self.name!r} {self._state.lower()}>"

    def cancel(self) -> bool:
        with self._condition:
            if self._state == "FINISHED":
                return False
            if self._state in _CANCELLED_STATES:
                return True
            if self._state == "RUNNING":  # a plain Future refuses here; a task stops
                self._state = "CANCELLED_AND_NOTIFIED"
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            else:
                self._state = "CANCELLED"
            self._condition.notify_all()
        self._stop()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _stop(self) -> None:
        self.token.set()
        if self.pool is not None:
            self.pool.stop_now()  # process workers are killed now; no thread is waited for
        with self._lock:
            task, loop = self._task, self._loop
        if task is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nothing to stop
                loop.call_soon_threadsafe(task.cancel)

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The driver's task, which ``cancel()`` cancels (at once if that already happened)."""
        with self._lock:
            self._task, self._loop = task, task.get_loop()
        if self.token.is_set():
            task.cancel()

    def result(self, timeout: float | None = None) -> Any:
        self._retrieved = True
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._retrieved = True
        return super().exception(timeout)

    def settle(self, value: Any, error: BaseException | None) -> None:
        """The outcome, unless the handle was cancelled meanwhile (that wins)."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if error is not None:
                self.set_exception(error)
                _failed.add(self)
            else:
                self.set_result(value)

    def report_unretrieved(self) -> None:
        error = self._exception
        if self._retrieved or self._reported or error is None or self.cancelled():
            return
        self._reported = True
        with contextlib.suppress(Exception):  # at interpreter teardown logging may be gone
            _logger.error(
                "plait task %r failed and nobody retrieved its exception", self.name,
                exc_info=(type(error), error, error.__traceback__),
            )

    def __del__(self) -> None:
        self.report_unretrieved()


_running: set[TaskHandle] = set()
_running_lock = threading.Lock()
_failed: weakref.WeakSet[TaskHandle] = weakref.WeakSet()
_hooks_installed = False


def spawn(
    fn: Callable[..., Any],
    /,
    *args: Any,
    backend: str = "auto",
    name: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    on_exit: OnExit = "wait",
    **kwargs: Any,
) -> TaskHandle:
    """Run ``fn(*args, **kwargs)`` in the background and return its handle at once.

    ``backend``: "thread", "process", "asyncio", "inline" or "auto" (a coroutine function on
    asyncio, anything else on a thread). ``timeout`` and ``retries`` are plait's per-task
    policies. At interpreter exit a running task is waited for (``on_exit="wait"``) or
    cancelled (``on_exit="cancel"``); a Ctrl-C cancels every task.
    """
    options = _check(fn, backend, on_exit, timeout=timeout, retries=retries)
    handle = TaskHandle(name or f"{getattr(fn, '__name__', 'task')}-{next(_numbers)}", on_exit)
    chosen = pick_backend(fn, options.pop("backend"))
    call = make_call(fn, args, kwargs, chosen, handle.token)
    handle.pool = task_pool(chosen, on_exit, handle.finished)
    # The run is planned here, in the caller's thread: at interpreter exit a driver thread
    # could no longer import a backend's modules.
    start(handle, _outcome(_plan_call(call, chosen, options, handle.pool)))
    return handle


def _check(fn: Callable[..., Any], backend: str, on_exit: str, **policies: Any) -> dict[str, Any]:
    from ._options import check_backend, check_callable, options

    check_callable(fn)
    if on_exit not in ("wait", "cancel"):
        raise ValueError(f"on_exit must be 'wait' or 'cancel', not {on_exit!r}")
    options(backend=check_backend(backend), **policies)  # the same checks as plait.map's
    return {"backend": backend, **policies}


def _plan_call(call: _Call, backend: str, options: dict[str, Any], pool: Any) -> Any:
    """One call as a one-item ``amap`` run (not started yet): on the task's pool, or, for
    asyncio and inline, on the driver's own loop."""
    if pool is not None:
        return pool.amap(call, [None], errors="collect", **options)
    from ._api import amap

    opts = {"errors": "collect", "workers": 1, "backend": backend, **options}
    return amap(call, [None], **opts)


def _noop() -> None:
    pass


def task_pool(backend: str, on_exit: OnExit, finished: threading.Event) -> Any:
    """A one-worker pool for a thread or process task, its worker started now, from the
    caller's thread (from 3.12 no thread can start once the interpreter exits, and a task
    spawned just before the end must still run)."""
    if backend not in ("thread", "process"):
        return None
    from ._executor import Pool
    from ._lifetime import exiting

    class TaskPool(Pool):
        """At exit plait shuts its pools down (waiting for their work) or stops them (Ctrl-C):
        this one follows its task's ``on_exit``, and waits for the task itself (its run may
        not have reached the pool yet); the task's driver closes it."""

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            if not exiting():
                super().shutdown(wait, cancel_futures=cancel_futures)
            elif on_exit == "cancel":
                self.stop_now()
            else:
                finished.wait()

    pool = TaskPool(backend, workers=1)
    pool.submit(_noop)
    return pool


async def _outcome(results: Any) -> Any:
    """The call's value or error, with its backend released afterwards however it ends."""
    async with contextlib.aclosing(results):
        async for outcome in results:
            return outcome.unwrap()
    raise RuntimeError("plait ran no call")  # pragma: no cover - one item gives one outcome


def start(handle: TaskHandle, work: Any) -> None:
    """Run the coroutine ``work`` for ``handle`` on a driver thread of its own."""
    _install_hooks()
    with _running_lock:
        _running.add(handle)
    thread = threading.Thread(
        target=_drive, args=(handle, work), name=f"plait-task-{handle.name}", daemon=False
    )
    try:
        thread.start()
    except BaseException:
        work.close()
        _forget(handle)
        raise


def _drive(handle: TaskHandle, work: Any) -> None:
    try:
        handle.set_running_or_notify_cancel()  # if cancelled, the run starts cancelled: its
        try:  # backend, made already, is released as the run ends
            value = asyncio.run(_bound(handle, work))
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError) or not handle.cancelled():
                handle.settle(None, exc)
        else:
            handle.settle(value, None)
    finally:
        _release(handle)
        _forget(handle)


_CANCEL_GRACE_S = 0.5  # a cancelled thread task gets this long to notice plait.cancelled()


def _release(handle: TaskHandle) -> None:
    """Its pool's workers, joined here on the driver thread (no new thread is needed)."""
    if handle.pool is None:
        return
    if handle.cancelled():
        handle.pool._close(wait=_CANCEL_GRACE_S, cancel_queued=True, cancel=True)
    else:
        handle.pool._close(wait=True, cancel_queued=False, cancel=False)


async def _bound(handle: TaskHandle, work: Any) -> Any:
    task = asyncio.current_task()
    assert task is not None
    handle.bind(task)
    return await work


def _forget(handle: TaskHandle) -> None:
    with _running_lock:
        _running.discard(handle)
    handle.finished.set()


def _install_hooks() -> None:
    """At exit: cancel what must not be waited for (before Python joins the driver threads),
    then report the exceptions nobody retrieved (after every task ended)."""
    global _hooks_installed
    with _running_lock:
        if _hooks_installed:
            return
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(_cancel_at_exit)
            except RuntimeError as exc:  # the interpreter already exits
                raise RuntimeError("cannot spawn a task after interpreter shutdown") from exc
        atexit.register(_report_at_exit)
        _hooks_installed = True


_EXIT_GRACE_S = 1.5  # a Ctrl-C gives cancelled tasks this long to release their workers


def _cancel_at_exit() -> None:
    from ._lifetime import _ending_on_ctrl_c

    interrupted = _ending_on_ctrl_c()
    with _running_lock:
        handles = list(_running)
    stopped = [h for h in handles if interrupted or h.on_exit == "cancel"]
    for handle in stopped:
        handle.cancel()
    for handle in stopped:
        handle.finished.wait(_EXIT_GRACE_S)


def _report_at_exit() -> None:
    for handle in list(_failed):
        handle.report_unretrieved()


def every(
    seconds: float,
    fn: Callable[..., Any],
    /,
    *args: Any,
    backend: str = "auto",
    name: str | None = None,
    timeout: float | None = None,
    clock: Any = None,
    **kwargs: Any,
) -> TaskHandle:
    """Call ``fn(*args, **kwargs)`` now and then every ``seconds`` until the handle is
    cancelled. A tick that runs late delays the next (two ticks of one job never overlap);
    a tick that fails is logged with its traceback and the schedule goes on. Cancelled at exit.
    ``clock`` (a ``plait.testing.FakeClock``) replaces real time in tests."""
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"every needs a positive, finite number of seconds, not {seconds!r}")
    options = _check(fn, backend, "cancel", timeout=timeout)
    handle = TaskHandle(name or f"every-{getattr(fn, '__name__', 'job')}-{next(_numbers)}",
                        "cancel")
    chosen = pick_backend(fn, options.pop("backend"))
    call = make_call(fn, args, kwargs, chosen, handle.token)
    handle.pool = task_pool(chosen, "cancel", handle.finished)
    start(handle, _ticks(handle, seconds, call, chosen, options, clock))
    return handle


async def _ticks(
    handle: TaskHandle, seconds: float, call: _Call, backend: str, options: dict[str, Any],
    clock: Any,
) -> None:
    from ._clock import REAL_CLOCK

    clock = clock or REAL_CLOCK
    due = clock.now()
    while True:
        try:
            await _outcome(_plan_call(call, backend, options, handle.pool))
        except Exception:  # a failed tick is reported; the schedule goes on
            if handle.token.is_set():
                return  # cancelled meanwhile (its pool is already stopped): not a failure
            _logger.exception("plait: a tick of %r failed", handle.name)
        due = max(due + seconds, clock.now())  # late: the next tick starts now, never two
        await clock.sleep(due - clock.now())
