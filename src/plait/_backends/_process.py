"""Process backend: each pool thread owns one worker process and proxies chunks to it.

Functions travel with cloudpickle (lambdas and closures work). Arguments, results and errors
travel with pickle, the fast path for plain data, and with cloudpickle when pickle cannot carry
them: what the user's ``__main__`` defines (a script, ``python -c``, a notebook) goes by value,
and cloudpickle's class tracker hands the parent back its own classes, so ``except MyError`` and
``isinstance`` hold. Pickle names such a class by reference without complaint, and only the
worker finds that its ``__main__`` lacks it: it asks for the chunk again (``RESEND``), and this
pool sends arguments with cloudpickle from then on.

A worker that dies fails only the task it ran (``WorkerCrashed``) and is replaced; a chunk that
was running is re-run item by item so that only the item that kills its worker fails. Each
worker leads its own process group: a timeout, a cancel or Ctrl-C kills the worker and whatever
its task started. Workers are plain ``python _boot.py`` children, see ``_process_worker``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import SerializationError, describe_exit
from .._worker_crashed import WorkerCrashed
from . import _reuse, _template
from ._base import ChunkResult, all_failed, around_failed, blocking_callable, concat, timed_out
from ._pool import QueuePool
from ._wire import (
    CONTEXT,
    INIT_FAILED,
    MAX_CACHED_FUNCTIONS,
    READY,
    RESEND,
    Call,
    context,
    decode_error,
    decode_result,
    dumps,
    encode_call,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

_fn_ids = itertools.count(1)
_ABANDON_CHECK_S = 0.05  # how often a running chunk checks that its run still wants it
_HAVE_PROC = os.path.isdir("/proc/self")  # Linux: a pid missing there has ended


@dataclass(frozen=True, slots=True)
class FunctionHandle:
    fn_id: int
    blob: bytes


# A chunk on the wire: (pickled items, how many, whether cloudpickle made the pickle).
Payload = tuple[bytes, int, bool]


class _Died(Exception):
    pass


class _Unreadable(Exception):
    """The worker's results could not be unpickled here."""


class _Resend(Exception):
    """The worker could not unpickle the arguments: send them again with cloudpickle."""


class _StartFailed(Exception):
    """The worker could not start: its initializer raised, or it died before it was ready."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class WorkerProcess:
    """One child process, its socket and its lifeline. It leads its own process group, which
    holds whatever its tasks start."""

    def __init__(self, initializer: bytes | None) -> None:
        parent_sock, child_sock = socket.socketpair()
        lifeline_r, self._lifeline_w = os.pipe()
        child_fd = child_sock.fileno()
        try:
            self.popen: subprocess.Popen[bytes] | _template.Forked = (
                _template.start_worker(child_fd, lifeline_r) or _spawn(child_fd, lifeline_r)
            )
        finally:
            child_sock.close()
            os.close(lifeline_r)
        from multiprocessing.connection import Connection  # here: after the template's start

        self.conn: Connection = Connection(parent_sock.detach())
        self.known: OrderedDict[int, None] = OrderedDict()  # the worker's function cache
        self.ready = False
        self._stopped = False
        self._context = context()
        setup = {"context": self._context, "initializer": initializer}
        self.conn.send_bytes(pickle.dumps(setup))

    def refresh(self) -> None:
        """A reused worker takes the parent's sys.path, directory and environment as now."""
        now = context()
        if now != self._context:
            self._context = now
            with contextlib.suppress(OSError):  # died meanwhile: its next call finds out
                self.conn.send_bytes(CONTEXT + pickle.dumps(now))

    def _remember(self, fn_id: int) -> None:
        """Mirror the worker's LRU cache of functions, so a function evicted there is sent
        again."""
        self.known[fn_id] = None
        self.known.move_to_end(fn_id)
        if len(self.known) > MAX_CACHED_FUNCTIONS:
            self.known.popitem(last=False)

    def call(
        self,
        handle: FunctionHandle,
        chunk: Payload,
        timeout_s: float | None,
        abandoned: Callable[[], bool] | None = None,
    ) -> ChunkResult | None:
        """The chunk's results, or None if it ran past ``timeout_s`` or was ``abandoned()``
        while it ran (the worker is killed then)."""
        blob = None if handle.fn_id in self.known else handle.blob
        call: Call = (handle.fn_id, blob, *chunk)
        try:
            if not self.ready:
                self._wait_ready()
            self.conn.send_bytes(encode_call(call))
            self._remember(handle.fn_id)
            if not self._reply_comes(timeout_s, abandoned):
                self.kill()
                return None
            reply = self.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise _Died from exc
        if reply == RESEND:
            raise _Resend
        blob, records, elapsed = decode_result(reply)
        try:
            values = pickle.loads(blob)
        except Exception as exc:
            raise _Unreadable(f"{type(exc).__name__}: {exc}") from exc
        errors = {i: decode_error(record) for i, record in records.items()}
        return ChunkResult(values, errors or None, elapsed)

    def _reply_comes(self, timeout_s: float | None, abandoned: Callable[[], bool] | None) -> bool:
        """Wait for the reply: False past the timeout, or once nobody wants it (checked every
        ``_ABANDON_CHECK_S``, so a stopped run frees its workers at once)."""
        if abandoned is None:
            return timeout_s is None or self.conn.poll(timeout_s)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = _ABANDON_CHECK_S if deadline is None else deadline - time.monotonic()
            if self.conn.poll(max(0.0, min(left, _ABANDON_CHECK_S))):
                return True
            if abandoned() or (deadline is not None and time.monotonic() >= deadline):
                return False

    def _wait_ready(self) -> None:
        """The worker has started and run its initializer (timeouts count from here)."""
        try:
            reply = self.conn.recv_bytes()
        except (EOFError, OSError):
            code = self.exitcode()
            message = f"the worker process died while starting ({describe_exit(code)})"
            raise _StartFailed(WorkerCrashed(message, code)) from None
        if reply.startswith(INIT_FAILED):
            error = decode_error(pickle.loads(reply[len(INIT_FAILED) :]))
            error.add_note(
                "raised by the process backend's initializer: its workers cannot start, "
                "so every task of this pool fails with this error"
            )
            raise _StartFailed(error)
        assert reply == READY, reply
        self.ready = True

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        if self._stopped or self.popen.poll() is not None:
            return False
        # A killed worker is a zombie a few ms before it can be reaped (its threads are still
        # exiting); /proc sees that first, so a task is not sent to a worker already dead.
        try:
            with open(f"/proc/{self.popen.pid}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except FileNotFoundError:  # gone: the template may reap it before it reports the exit
            return not _HAVE_PROC
        except (OSError, IndexError):
            return True
        return state not in (b"Z", b"X")

    def exitcode(self) -> int | None:
        """Reap the worker, after killing what its task may have left in its group."""
        self.kill()
        try:
            return self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the worker and every process in its group (what its task started)."""
        # Only while the worker is not reaped: until then its pid cannot be reused.
        if self.popen.returncode is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:  # forked a moment ago: not yet its own group's leader
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.popen.pid, signal.SIGKILL)
            except PermissionError:
                pass

    def stop(self) -> None:
        """Ask the worker to leave (socket closed), then make sure it has. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if not self.ready:  # still starting, or dead: nothing of the user's runs there yet
            self.kill()
        self.conn.close()
        try:
            self.popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
        finally:
            # Closed last: it tells the worker its parent is gone, which kills the whole group.
            os.close(self._lifeline_w)


class _Slot:
    """The worker a pool thread owns; replaced when it dies."""

    def __init__(self, process: WorkerProcess) -> None:
        self.process = process
        self.tasks = 0


class ProcessBackend(QueuePool[_Slot]):
    name = "process"

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[[], Any] | None = None,
        max_tasks_per_worker: int | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(workers)
        self._max_tasks = max_tasks_per_worker
        # Borrow idle workers of earlier runs and give them back (see _reuse): for plait.map,
        # never with an initializer or recycling (their workers are this pool's own).
        self._shared = shared and initializer is None and max_tasks_per_worker is None
        self._initializer = (
            None if initializer is None else _dumps_function(initializer, "initializer")
        )
        self._live: set[WorkerProcess] = set()
        self._spawn_lock = threading.Lock()  # a cancel sees every worker started before it
        self._by_value = False  # arguments go with cloudpickle (they named the user's __main__)
        _template.prestart()  # boots while this run pickles its function and starts its threads

    def prepare(self, fn: Callable[..., Any]) -> FunctionHandle:
        blob = _dumps_function(blocking_callable(fn), "function")
        _template.need_for(blob, fn)  # the workers forked next have what unpickling it imports
        return FunctionHandle(next(_fn_ids), blob)

    def close(
        self, *, cancel: bool = False, wait: bool | float = True, cancel_queued: bool = False
    ) -> None:
        super().close(cancel=cancel, wait=wait, cancel_queued=cancel_queued)
        if wait is not False:
            _template.after_run()  # the cores are free: the template may import meanwhile

    def _spawn(self) -> WorkerProcess:
        return self._adopt(WorkerProcess(self._initializer))

    def _borrow(self) -> WorkerProcess:
        """An idle shared worker if there is one, else a new one."""
        process = _reuse.take() if self._shared else None
        if not isinstance(process, WorkerProcess):
            return self._spawn()
        process.refresh()
        return self._adopt(process)

    def _adopt(self, process: WorkerProcess) -> WorkerProcess:
        with self._spawn_lock:
            self._live.add(process)
            cancelled = self._cancelled
        if cancelled:  # started while the run was being stopped: it gets no task
            process.kill()
        return process

    def _retire(self, process: WorkerProcess) -> None:
        process.stop()
        with self._spawn_lock:
            self._live.discard(process)

    def _replace(self, slot: _Slot) -> None:
        self._retire(slot.process)
        slot.process = self._spawn()
        slot.tasks = 0

    def _open_worker(self) -> _Slot:
        return _Slot(self._borrow())

    def _close_worker(self, worker: _Slot) -> None:
        process = worker.process
        if self._shared and not self._cancelled and self._broken is None and process.alive():
            # Idle and clean: a worker that crashed or timed out was replaced already, and a
            # stopped run (cancelled) kills its workers rather than hand them on.
            with self._spawn_lock:
                self._live.discard(process)
            if _reuse.give(process):
                return
        self._retire(process)

    def _stop_running(self) -> None:
        """On cancel every worker and what its task started is killed and reaped now, so none
        outlives the call and the threads waiting on them return at once."""
        with self._spawn_lock:
            processes = list(self._live)
        for process in processes:
            process.kill()
        for process in processes:
            process.exitcode()

    def _execute(
        self, worker: _Slot, handle: Any, items: Sequence[Any], timeout_s: float | None
    ) -> tuple[_Slot, ChunkResult]:
        result = self._run_isolated(worker, handle, items, timeout_s)
        worker.tasks += len(items)
        if self._max_tasks is not None and worker.tasks >= self._max_tasks and not self._closed:
            self._replace(worker)  # recycle a worker that may leak
        return worker, result

    def _run_isolated(
        self, slot: _Slot, handle: FunctionHandle, items: Sequence[Any], timeout_s: float | None
    ) -> ChunkResult:
        if self._broken is not None:
            return all_failed(len(items), self._broken)
        try:
            return self._send(slot, handle, items, timeout_s)
        except _StartFailed as failure:
            if self._cancelled:
                return all_failed(len(items), failure.error)
            # No restart loop: this pool's workers cannot start. As a thread initializer that
            # fails, it breaks the pool with a BrokenExecutor whose cause is the real error.
            error = failure.error
            if not isinstance(error, concurrent.futures.BrokenExecutor):  # WorkerCrashed is one
                error = self._break(error)
            with self._lock:
                self._broken = self._broken or error
            return all_failed(len(items), error)
        except (WorkerCrashed, _Unreadable) as failure:
            if len(items) == 1 or self._cancelled:
                error = (
                    failure
                    if isinstance(failure, WorkerCrashed)
                    else SerializationError(
                        f"the task's result cannot be unpickled in the parent ({failure}); "
                        "return plain data"
                    )
                )
                return all_failed(len(items), error)
            # Re-run one by one, so that only the item at fault fails.
            parts = [self._run_isolated(slot, handle, [item], timeout_s) for item in items]
            return concat(parts)

    def _send(
        self, slot: _Slot, handle: FunctionHandle, items: Sequence[Any], timeout_s: float | None
    ) -> ChunkResult:
        chunk, bad = _dumps_items(items, self._by_value)
        if bad:
            return _merge_bad(self, slot, handle, items, bad, timeout_s)
        try:
            return self._call(slot, handle, chunk, timeout_s)
        except _Resend:
            self._by_value = True
            return self._send(slot, handle, items, timeout_s)

    def _call(
        self, slot: _Slot, handle: FunctionHandle, chunk: Payload, timeout_s: float | None
    ) -> ChunkResult:
        if slot.process.ready and not slot.process.alive() and not self._cancelled:
            self._replace(slot)  # died while idle (killed from outside): not this task
        # (one that died before it was ready failed to start: call() reports it, no restart)
        count = chunk[1]
        try:
            result = slot.process.call(handle, chunk, timeout_s, self.abandoned)
        except _Died:
            code = slot.process.exitcode()
            if self._cancelled:
                raise WorkerCrashed("the run was stopped: its workers were killed", code) from None
            self._replace(slot)
            message = f"the worker process running this task died ({describe_exit(code)})"
            raise WorkerCrashed(message + "; it was replaced", code) from None
        if result is None:
            if not self._cancelled:
                self._replace(slot)
            if self.abandoned():  # nobody reads this result: its run was stopped
                stopped = WorkerCrashed("the run was stopped: its worker was killed")
                return all_failed(count, stopped)
            return timed_out(count, timeout_s or 0.0, "its worker process was killed and replaced")
        return result


def _dumps_function(fn: Callable[..., Any], what: str) -> bytes:
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(fn, protocol=5))
    except Exception as exc:
        raise SerializationError(
            f"the {what} cannot be pickled for the process backend ({type(exc).__name__}: {exc}); "
            "define it at module level without unpicklable state, or use backend='thread'"
        ) from exc


def _spawn(child_fd: int, lifeline_r: int) -> subprocess.Popen[bytes]:
    """A worker as a fresh interpreter: where the template cannot fork one."""
    return subprocess.Popen(
        [sys.executable, _template.BOOT, str(child_fd), str(lifeline_r)],
        pass_fds=(child_fd, lifeline_r),
        start_new_session=True,  # Ctrl-C reaches the parent only; a new group to kill
    )


def _dumps_items(items: Sequence[Any], by_value: bool) -> tuple[Payload, dict[int, BaseException]]:
    """Pickle a chunk; on failure find which items cannot be pickled."""
    try:
        blob, cloudpickled = dumps(list(items), by_value)
        return (blob, len(items), cloudpickled), {}
    except Exception:
        pass
    bad: dict[int, BaseException] = {}
    for i, item in enumerate(items):
        try:
            dumps(item, by_value)
        except Exception as exc:
            bad[i] = SerializationError(
                f"argument {type(item).__name__} cannot be pickled for the process backend "
                f"({type(exc).__name__}: {exc}); pass plain data or use backend='thread'"
            )
    return (b"", 0, False), bad


def _merge_bad(
    backend: ProcessBackend,
    slot: _Slot,
    handle: FunctionHandle,
    items: Sequence[Any],
    bad: dict[int, BaseException],
    timeout_s: float | None,
) -> ChunkResult:
    """Run the picklable items of a chunk; the others fail with their SerializationError."""
    good = [i for i in range(len(items)) if i not in bad]
    sub = backend._run_isolated(slot, handle, [items[i] for i in good], timeout_s) if good else None
    return around_failed(len(items), bad, good, sub)

