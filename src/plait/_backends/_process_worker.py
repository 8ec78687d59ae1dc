"""The child side of the process backend: a loop that runs chunks sent over a socket.

Started as ``python _boot.py`` (not multiprocessing), so a user's ``__main__`` is never
re-imported and no fork happens in a threaded parent. It exits when its socket closes, quietly
even in the middle of its start-up and without the interpreter's teardown (atexit handlers do
not run, as in multiprocessing's children), and at once, with its whole process group (what its
tasks started), when the lifeline pipe from its parent closes (the parent died), even mid-task.

Anything a task raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is that task's error:
the worker goes on. An initializer that raises is reported to the parent, which stops starting
workers for that pool.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from collections import OrderedDict
from typing import Any

from .._exceptions import SerializationError
from ._base import ChunkResult, all_failed, blocking_callable, run_chunk

_MAX_CACHED_FUNCTIONS = 64
READY = b"ready"  # the worker's first message: started, initializer run
INIT_FAILED = b"init-failed:"  # ...or this, then the initializer's ErrorRecord
RESEND = b"resend"  # the arguments did not unpickle: send them by value (never a pickle's start)


class RemoteTraceback(Exception):
    """Carries the worker's formatted traceback; attached as ``__cause__`` of the task error."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _rebuild(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class _WithTraceback:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.tb = '\n"""\n' + "".join(traceback.format_exception(exc)) + '"""'

    def __reduce__(self) -> tuple[Any, tuple[BaseException, str]]:
        return _rebuild, (self.exc, self.tb)


ErrorRecord = tuple[bytes | None, str, str, str]  # (pickled error, type, message, traceback)


def dumps(obj: Any) -> bytes:
    """pickle; cloudpickle for what pickle cannot carry, such as the classes and functions
    that came from the user's ``__main__`` by value (this process's ``__main__`` is an empty
    module, see _boot.py). cloudpickle tags such classes, so the parent gets its own class back,
    not a copy."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:
        pass
    import cloudpickle

    return bytes(cloudpickle.dumps(obj, protocol=5))


def encode_result(result: ChunkResult) -> bytes:
    """(values, {i: ErrorRecord}, elapsed): values as one pickle, each error on its own, so
    the parent can still report an error it cannot rebuild."""
    errors = {i: _error_record(e) for i, e in (result.errors or {}).items()}
    values = result.values
    try:
        blob = dumps(values)
    except Exception:
        values = list(values)
        for i, value in enumerate(values):
            if i not in errors and not _picklable(value):
                values[i] = None
                message = f"the task's result ({type(value).__name__}) cannot be pickled back "
                errors[i] = _error_record(
                    SerializationError(message + "to the parent; return plain data")
                )
        blob = dumps(values)
    return pickle.dumps((blob, errors, result.elapsed_s), protocol=5)


def _error_record(exc: BaseException) -> ErrorRecord:
    wrapped = _WithTraceback(exc)
    try:
        blob: bytes | None = dumps(wrapped)
    except Exception:
        blob = None
    return blob, type(exc).__qualname__, str(exc), wrapped.tb


def decode_error(record: ErrorRecord) -> BaseException:
    """The task's own exception, or a SerializationError that names it if it cannot be rebuilt."""
    blob, type_name, message, tb = record
    problem = "it cannot be pickled"
    if blob is not None:
        try:
            error: BaseException = pickle.loads(blob)
            return error
        except Exception as exc:
            problem = f"it cannot be rebuilt in the parent: {type(exc).__name__}: {exc}"
    return _rebuild(SerializationError(f"the task raised {type_name}: {message} ({problem})"), tb)


def _picklable(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


def _watch_parent(lifeline_fd: int) -> None:
    while os.read(lifeline_fd, 1):
        pass
    # The parent is gone: leave at once, even mid-task, and take along what the task started
    # (this worker leads its process group).
    try:
        if os.getpgid(0) == os.getpid():  # never the group of whoever started us otherwise
            os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(70)


def _failed_chunk(n: int, message: str, exc: BaseException) -> ChunkResult:
    error = SerializationError(f"{message}: {type(exc).__name__}: {exc}")
    return all_failed(n, error)


class _Functions:
    def __init__(self) -> None:
        self._cache: OrderedDict[int, Any] = OrderedDict()

    def get(self, fn_id: int, blob: bytes | None) -> Any:
        if blob is not None:
            self._cache[fn_id] = blocking_callable(pickle.loads(blob))
            if len(self._cache) > _MAX_CACHED_FUNCTIONS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(fn_id)
        return self._cache[fn_id]


def _handle(message: bytes, functions: _Functions) -> ChunkResult | None:
    """Run one chunk; None asks the parent to resend it by value."""
    fn_id, blob, payload, count, by_value = pickle.loads(message)
    try:
        fn = functions.get(fn_id, blob)
    except Exception as exc:
        hint = "the function could not be loaded in the worker (define it in an importable module)"
        return _failed_chunk(count, hint, exc)
    try:
        items = pickle.loads(payload)
    except Exception as exc:
        if not by_value:  # say, a class of the user's __main__ named by reference
            return None
        return _failed_chunk(count, "the arguments could not be unpickled in the worker", exc)
    # Whatever a task raises here is its error, even SystemExit or KeyboardInterrupt (SIGINT
    # is ignored in a worker: only the task itself can raise it).
    return run_chunk(fn, items, stops=False)


def serve(conn: Any, lifeline_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    threading.Thread(target=_watch_parent, args=(lifeline_fd,), daemon=True).start()
    try:
        if _start(conn):
            _loop(conn)
    except (EOFError, OSError):  # the parent closed our socket (BrokenPipeError...): leave
        return


def _start(conn: Any) -> bool:
    """Set up and run the initializer; say to the parent whether it worked."""
    setup = pickle.loads(conn.recv_bytes())
    sys.path[:] = setup["sys_path"]
    if setup["initializer"] is not None:
        try:
            pickle.loads(setup["initializer"])()
        except BaseException as exc:  # sys.exit() too: reported, not a crash
            conn.send_bytes(INIT_FAILED + pickle.dumps(_error_record(exc), protocol=5))
            return False
    conn.send_bytes(READY)  # timeouts count from here, not from the interpreter's start
    return True


def _loop(conn: Any) -> None:
    functions = _Functions()
    while True:
        result = _handle(conn.recv_bytes(), functions)
        conn.send_bytes(RESEND if result is None else encode_result(result))


class FdConnection:
    """The wire format of ``multiprocessing.connection.Connection`` (the parent's side), on a
    raw descriptor: a 4-byte big-endian length (-1, then 8 bytes, for huge messages), then the
    bytes. Importing multiprocessing would add a quarter to a worker's start-up."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def recv_bytes(self) -> bytes:
        (size,) = struct.unpack("!i", self._read(4))
        if size == -1:
            (size,) = struct.unpack("!Q", self._read(8))
        return self._read(size)

    def send_bytes(self, data: bytes) -> None:
        size = len(data)
        header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
        self._write(header + data if size <= 65536 else header)
        if size > 65536:
            self._write(data)

    def _read(self, size: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = os.read(self.fd, min(size, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]


def main() -> None:
    conn_fd, lifeline_fd = int(sys.argv[1]), int(sys.argv[2])
    serve(FdConnection(conn_fd), lifeline_fd)
    # Leave without the interpreter's teardown, as multiprocessing's children do: the pool's
    # close waits for its workers, and a teardown is milliseconds of CPU for each.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
