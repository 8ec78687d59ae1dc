"""Process backend: each pool thread owns one worker process and proxies chunks to it.

Functions travel with cloudpickle (lambdas and closures work), arguments and results with
pickle. A worker that dies fails only the task it ran (``WorkerCrashed``) and is replaced; a
chunk that was running is re-run item by item so that only the item that kills its worker
fails. Workers are plain ``python -c`` children, see ``_process_worker``.
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .._exceptions import SerializationError, WorkerCrashed, describe_exit
from ._base import ChunkResult, blocking_callable, timed_out
from ._pool import QueuePool
from ._process_worker import decode_error

_fn_ids = itertools.count(1)
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")


@dataclass(frozen=True, slots=True)
class FunctionHandle:
    fn_id: int
    blob: bytes


class _Died(Exception):
    pass


class _Unreadable(Exception):
    """The worker's results could not be unpickled here."""


class WorkerProcess:
    """One child process, its socket and its lifeline."""

    def __init__(self, initializer: bytes | None) -> None:
        parent_sock, child_sock = socket.socketpair()
        lifeline_r, self._lifeline_w = os.pipe()
        child_fd = child_sock.fileno()
        self.popen = subprocess.Popen(
            [
                sys.executable,
                _BOOT,
                str(child_fd),
                str(lifeline_r),
            ],
            pass_fds=(child_fd, lifeline_r),
            start_new_session=True,  # Ctrl-C reaches the parent only; it stops the workers
        )
        child_sock.close()
        os.close(lifeline_r)
        self.conn = Connection(parent_sock.detach())
        self.known: set[int] = set()
        self.ready = False
        self.conn.send_bytes(pickle.dumps({"sys_path": sys.path, "initializer": initializer}))

    def call(
        self, handle: FunctionHandle, payload: bytes, count: int, timeout_s: float | None
    ) -> ChunkResult | None:
        """The chunk's results, or None if it ran past ``timeout_s`` (the worker is killed)."""
        blob = None if handle.fn_id in self.known else handle.blob
        message = pickle.dumps((handle.fn_id, blob, payload, count), protocol=5)
        try:
            if not self.ready:
                self.conn.recv_bytes()  # the worker has started and run its initializer
                self.ready = True
            self.conn.send_bytes(message)
            self.known.add(handle.fn_id)
            if timeout_s is not None and not self.conn.poll(timeout_s):
                self.kill()
                return None
            blob, records, elapsed = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise _Died from exc
        try:
            values = pickle.loads(blob)
        except Exception as exc:
            raise _Unreadable(f"{type(exc).__name__}: {exc}") from exc
        errors = {i: decode_error(record) for i, record in records.items()}
        return ChunkResult(values, errors or None, elapsed)

    def alive(self) -> bool:
        if self.popen.poll() is not None:
            return False
        # A killed worker is a zombie a few ms before it can be reaped (its threads are still
        # exiting); /proc sees that first, so a task is not sent to a worker already dead.
        try:
            with open(f"/proc/{self.popen.pid}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            return True
        return state not in (b"Z", b"X")

    def exitcode(self) -> int | None:
        try:
            return self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def stop(self) -> None:
        """Ask the worker to leave (socket closed), then make sure it has."""
        self.conn.close()
        os.close(self._lifeline_w)
        try:
            self.popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class _Slot:
    """The worker a pool thread owns; replaced when it dies."""

    def __init__(self, initializer: bytes | None) -> None:
        self.initializer = initializer
        self.process = WorkerProcess(initializer)
        self.tasks = 0

    def replace(self) -> None:
        self.process.stop()
        self.process = WorkerProcess(self.initializer)
        self.tasks = 0


class ProcessBackend(QueuePool[_Slot]):
    name = "process"

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[[], Any] | None = None,
        max_tasks_per_worker: int | None = None,
    ) -> None:
        super().__init__(workers)
        self._max_tasks = max_tasks_per_worker
        self._initializer = (
            None if initializer is None else _dumps_function(initializer, "initializer")
        )
        self._slots: list[_Slot] = []

    def prepare(self, fn: Callable[..., Any]) -> FunctionHandle:
        return FunctionHandle(next(_fn_ids), _dumps_function(blocking_callable(fn), "function"))

    def _open_worker(self) -> _Slot:
        slot = _Slot(self._initializer)
        with self._lock:
            self._slots.append(slot)
        return slot

    def _close_worker(self, worker: _Slot) -> None:
        worker.process.stop()

    def _stop_running(self) -> None:
        """On cancel every worker is killed and reaped now, so none outlives the call."""
        with self._lock:
            processes = [slot.process for slot in self._slots]
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
            worker.replace()  # recycle a worker that may leak
        return worker, result

    def _run_isolated(
        self, slot: _Slot, handle: FunctionHandle, items: Sequence[Any], timeout_s: float | None
    ) -> ChunkResult:
        payload, bad = _dumps_items(items)
        if bad:
            return _merge_bad(self, slot, handle, items, bad, timeout_s)
        try:
            return self._call(slot, handle, payload, len(items), timeout_s)
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
                return ChunkResult(
                    [None] * len(items), dict.fromkeys(range(len(items)), error), 0.0
                )
            # Re-run one by one, so that only the item at fault fails.
            parts = [self._run_isolated(slot, handle, [item], timeout_s) for item in items]
            return _concat(parts)

    def _call(
        self,
        slot: _Slot,
        handle: FunctionHandle,
        payload: bytes,
        count: int,
        timeout_s: float | None,
    ) -> ChunkResult:
        if not slot.process.alive():  # died while idle (killed from outside): not this task
            slot.replace()
        try:
            result = slot.process.call(handle, payload, count, timeout_s)
            if result is None:
                slot.replace()
                return timed_out(
                    count, timeout_s or 0.0, "its worker process was killed and replaced"
                )
            return result
        except _Died:
            code = slot.process.exitcode()
            if not self._cancelled:
                slot.replace()
            message = f"the worker process running this task died ({describe_exit(code)})"
            raise WorkerCrashed(message + "; it was replaced", code) from None


def _dumps_function(fn: Callable[..., Any], what: str) -> bytes:
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(fn, protocol=5))
    except Exception as exc:
        raise SerializationError(
            f"the {what} cannot be pickled for the process backend ({type(exc).__name__}: {exc}); "
            "define it at module level without unpicklable state, or use backend='thread'"
        ) from exc


def _dumps_items(items: Sequence[Any]) -> tuple[bytes, dict[int, BaseException]]:
    """Pickle a chunk; on failure find which items cannot be pickled."""
    try:
        return pickle.dumps(list(items), protocol=5), {}
    except Exception:
        pass
    bad: dict[int, BaseException] = {}
    for i, item in enumerate(items):
        try:
            pickle.dumps(item, protocol=5)
        except Exception as exc:
            bad[i] = SerializationError(
                f"argument {type(item).__name__} cannot be pickled for the process backend "
                f"({type(exc).__name__}: {exc}); pass plain data or use backend='thread'"
            )
    return b"", bad


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
    values: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = dict(bad)
    for position, i in enumerate(good):
        assert sub is not None
        values[i] = sub.values[position]
        if sub.errors and position in sub.errors:
            errors[i] = sub.errors[position]
    return ChunkResult(values, errors, sub.elapsed_s if sub else 0.0)


def _concat(parts: list[ChunkResult]) -> ChunkResult:
    values: list[Any] = []
    errors: dict[int, BaseException] = {}
    for part in parts:
        for i, error in (part.errors or {}).items():
            errors[len(values) + i] = error
        values.extend(part.values)
    return ChunkResult(values, errors or None, sum(p.elapsed_s for p in parts))
