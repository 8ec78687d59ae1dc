"""Dask backend: each chunk is one task on a Dask distributed cluster.

Dask is the engine (scheduler, workers, data transfer, rescheduling the tasks of a worker that
died); plait keeps what it does everywhere (chunking, lazy input with a bounded window,
retries, timeouts, rate limits, error modes). The cluster is found in Dask's order
(``_dask_cluster``); a chunk is ``run_remote`` in ``_dask_task``, submitted with its arguments
pickled here, so that a bad argument fails only its item.

``run`` awaits a chunk on the scheduler's loop without blocking it: the Dask future is watched by
a coroutine on the Client's own loop, whose outcome comes back through a concurrent future.

- A task past ``timeout``: its Dask future is released and the task fails with TaskTimeout.
  Dask cannot interrupt a running task: the worker thread finishes it and drops the result.
- A worker that dies: Dask reruns its tasks elsewhere. A chunk that kills every worker it lands
  on (Dask's ``KilledWorker``) is rerun item by item, so that only the item at fault fails
  with WorkerCrashed.
- A chunk that Dask cancels by itself (every future of a client that lost its scheduler
  connection, say) is submitted once more; cancelled again, its items fail with WorkerCrashed
  giving Dask's reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import SerializationError
from .._worker_crashed import WorkerCrashed
from ._base import ChunkResult, all_failed, around_failed, blocking_callable, concat, timed_out
from ._dask_cluster import connect, in_flight, on_its_loop, replace, total_threads
from ._dask_task import decode, dumps, run_remote

_run_ids = itertools.count(1)


class DaskBackend:
    name = "dask"
    sizes_itself = True  # workers=None: as many as the cluster's threads

    def __init__(
        self, workers: int | None, *, address: str | None = None, client: Any = None
    ) -> None:
        self.client = connect(address, client)
        # an asynchronous client on this thread's loop: only the async API (amap) can use it,
        # as a sync call would block the loop the client runs on
        self.needs_callers_loop = on_its_loop(self.client)
        self.threads = total_threads(self.client)
        self.workers = workers or in_flight(self.threads)  # chunks on the cluster at once
        self._timed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._suspects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )  # second tries after KilledWorker run one at a time: never beside another suspect
        self._lock = threading.Lock()
        self._running: set[Any] = set()  # Dask futures of chunks not yet back
        self._cancelled = False

    def prepare(self, fn: Callable[..., Any]) -> tuple[str, bytes]:
        import cloudpickle

        try:
            blob = bytes(cloudpickle.dumps(blocking_callable(fn), protocol=5))
        except Exception as exc:
            raise SerializationError(
                f"the function cannot be pickled for the Dask cluster ({type(exc).__name__}: "
                f"{exc}); define it at module level without unpicklable state"
            ) from exc
        return f"{os.getpid()}-{uuid.uuid4().hex}", blob

    async def run(
        self, handle: tuple[str, bytes], items: Sequence[Any], timeout_s: float | None = None
    ) -> ChunkResult:
        payload, bad = _dumps_items(items)
        if bad:
            return await self._run_picklable(handle, items, bad, timeout_s)
        if self._cancelled:
            return all_failed(len(items), _stopped())
        reply = await self._submit_again_if_dask_cancels(handle, payload, timeout_s)
        if isinstance(reply, _Cancelled) and self._cancelled:
            reply = _stopped()
        if len(items) == 1 and _crashed(reply) and not self._cancelled:
            # Dask also counts a worker's death against the tasks that merely ran beside the
            # one that killed it: one more try, away from the other suspects, tells such a
            # bystander from the culprit.
            async with self._suspect_turn():
                reply = await self._submit(handle, payload, timeout_s)
        if isinstance(reply, bytes):
            try:
                return ChunkResult(*decode(reply))
            except Exception as exc:
                reply = _Unreadable(
                    f"the task's result cannot be unpickled here ({type(exc).__name__}: {exc}); "
                    "return plain data"
                )
        if reply is None:
            return timed_out(len(items), timeout_s or 0.0, _ABANDONED)
        if len(items) > 1 and _crashed(reply, _SPLIT) and not self._cancelled:
            # Rerun one by one, so that only the item that kills its workers fails.
            parts = [await self.run(handle, [item], timeout_s) for item in items]
            return concat(parts)
        if isinstance(reply, _Unreadable):
            reply = SerializationError(str(reply))
        elif isinstance(reply, _Cancelled):  # twice: the client is suspect, the next run
            replace(self.client)  # connects afresh
            reply = WorkerCrashed(str(reply))
        return all_failed(len(items), reply)

    async def _submit_again_if_dask_cancels(
        self, handle: tuple[str, bytes], payload: bytes, timeout_s: float | None
    ) -> bytes | BaseException | None:
        """The chunk's reply. A chunk that Dask cancelled by itself (the client lost its
        scheduler connection, say: Dask cancels every future then) is submitted once more."""
        for _ in range(2):
            if timeout_s is None:
                reply = await self._submit(handle, payload, timeout_s)
            else:  # at most one per thread, so that a timed task does not wait behind another
                async with self._timed_slot():
                    reply = await self._submit(handle, payload, timeout_s)
            if not isinstance(reply, _Cancelled) or self._cancelled:
                break
        return reply

    def _suspect_turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lock:
            turn = self._suspects.get(loop)
            if turn is None:
                turn = self._suspects[loop] = asyncio.Lock()
            return turn

    def _timed_slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            slot = self._timed.get(loop)
            if slot is None:
                slot = self._timed[loop] = asyncio.Semaphore(self.threads)
            return slot

    async def _submit(
        self, handle: tuple[str, bytes], payload: bytes, timeout_s: float | None
    ) -> bytes | BaseException | None:
        """The chunk's reply, the error that stopped it, or None past ``timeout_s``."""
        fn_id, blob = handle
        key = f"plait-{fn_id}-{next(_run_ids)}"
        future = self.client.submit(run_remote, fn_id, blob, payload, key=key, pure=False)
        with self._lock:
            self._running.add(future)
        watch = asyncio.run_coroutine_threadsafe(_outcome(self.client, future), _loop(self.client))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(watch), timeout_s)
        except TimeoutError:
            return None
        finally:
            watch.cancel()
            with self._lock:
                self._running.discard(future)
            future.release()  # Dask forgets the task: not started, it never runs

    async def _run_picklable(
        self,
        handle: tuple[str, bytes],
        items: Sequence[Any],
        bad: dict[int, BaseException],
        timeout_s: float | None,
    ) -> ChunkResult:
        """Run the items that can be pickled; the others fail with their SerializationError."""
        good = [i for i in range(len(items)) if i not in bad]
        sub = await self.run(handle, [items[i] for i in good], timeout_s) if good else None
        return around_failed(len(items), bad, good, sub)

    def close(self, *, cancel: bool = False, wait: bool | float = True) -> None:
        """The cluster is not ours to stop; ``cancel`` drops the chunks still on it."""
        if not cancel:
            return
        with self._lock:
            self._cancelled = True
            running = list(self._running)
        if running:
            self.client.cancel(running)


class _Cancelled(WorkerCrashed):
    """Dask cancelled a chunk that plait did not stop (its reason in the message)."""


class _Unreadable(SerializationError):
    """A chunk's reply that cannot be unpickled here: rerun item by item to find the culprit."""


_SPLIT = (WorkerCrashed, _Unreadable)  # a chunk that failed as a whole: find the item at fault
_ABANDONED = "Dask cannot stop a running task: plait released it, the worker drops its result"


def _crashed(
    reply: object, kinds: type[BaseException] | tuple[type[BaseException], ...] = WorkerCrashed
) -> bool:
    """A chunk that failed as a whole on the cluster, not one that Dask or plait cancelled."""
    return isinstance(reply, kinds) and not isinstance(reply, _Cancelled)


def _stopped() -> WorkerCrashed:
    return WorkerCrashed("the run was stopped: its chunks on the Dask cluster were cancelled")


def _loop(client: Any) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop
    return loop


async def _outcome(client: Any, future: Any) -> bytes | BaseException:
    """Runs on the Client's loop: the chunk's reply, or what Dask raised instead."""
    from distributed import KilledWorker

    try:
        # Wait for the task first: cancelling a gather that waits leaves Dask's inner task to
        # fail unseen ("Task exception was never retrieved") once the future is released.
        state = getattr(future, "_state", None)
        if state is not None:
            await state.wait()
        # Shielded: a gather cancelled in flight can cancel the gather task that Dask's client
        # shares among its gathers before it starts, and the client keeps it: every later
        # gather of the program then fails at once with CancelledError.
        reply: bytes = await asyncio.shield(client.gather(future, asynchronous=True))
        return reply
    except KilledWorker as exc:
        return WorkerCrashed(
            f"the task killed every Dask worker it ran on ({exc}); the cluster replaced them"
        )
    except (asyncio.CancelledError, concurrent.futures.CancelledError) as exc:
        if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise
        return _Cancelled(f"Dask cancelled the chunk's task: {str(exc) or type(exc).__name__}")
    except Exception as exc:  # the cluster failed this chunk (a lost scheduler, say)
        return exc


def _dumps_items(items: Sequence[Any]) -> tuple[bytes, dict[int, BaseException]]:
    """Pickle a chunk; on failure find which items cannot be pickled."""
    try:
        return dumps(list(items)), {}
    except Exception:
        pass
    bad: dict[int, BaseException] = {}
    for i, item in enumerate(items):
        try:
            dumps(item)
        except Exception as exc:
            bad[i] = SerializationError(
                f"argument {type(item).__name__} cannot be pickled for the Dask cluster "
                f"({type(exc).__name__}: {exc}); pass plain data"
            )
    return b"", bad

