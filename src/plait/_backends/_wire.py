"""The process backend's wire format, shared by the parent (``_process``) and the worker
(``_process_worker``), so that what one side writes the other reads from one definition.

A message is a frame (``FdConnection``: the framing of ``multiprocessing.connection``). Parent
to worker: first ``SETUP`` (pickled ``{"context": ..., "initializer": ...}``), then calls
(``encode_call``) and, between calls, ``CONTEXT`` updates (a reused worker gets the parent's
``sys.path``, working directory and environment as they are now). Worker to parent: ``READY`` or
``INIT_FAILED`` + an ``ErrorRecord``, then per call one result (``encode_result``) or ``RESEND``
(the arguments named something of the user's ``__main__``: send them by value).

Pickle first, cloudpickle when pickle cannot carry an object: what the user's ``__main__``
defines goes by value, and cloudpickle's class tracker hands the parent back its own classes.
This module is imported in every worker: it must stay light (no multiprocessing).
"""

from __future__ import annotations

import os
import pickle
import struct
import traceback
from typing import Any

READY = b"ready"  # the worker's first message: started, initializer run
INIT_FAILED = b"init-failed:"  # ...or this, then the initializer's ErrorRecord
RESEND = b"resend"  # the arguments did not unpickle: send them by value (never a pickle's start)
CONTEXT = b"context:"  # then a pickled context (never a pickle's start, as RESEND)
MAX_CACHED_FUNCTIONS = 64  # functions a worker keeps; the parent mirrors the worker's LRU

ErrorRecord = tuple[bytes | None, str, str, str]  # (pickled error, type, message, traceback)
# A call on the wire: (function id, its cloudpickle or None if the worker has it, pickled
# items, how many, whether cloudpickle made the items' pickle).
Call = tuple[int, bytes | None, bytes, int, bool]


def context() -> dict[str, Any]:
    """What a worker takes over from the parent at each use: where to import from (relative
    ``sys.path`` entries made absolute against plait's start directory, as multiprocessing
    does), the working directory, the environment."""
    import sys

    from . import START_DIR

    path = [
        os.path.abspath(os.path.join(START_DIR, entry))
        if isinstance(entry, str) and not os.path.isabs(entry)
        else entry
        for entry in sys.path
    ]
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # deleted: the worker keeps its own
        cwd = None
    return {"sys_path": path, "cwd": cwd, "environ": dict(os.environ)}


def dumps(obj: Any, by_value: bool = False) -> tuple[bytes, bool]:
    """The pickle of ``obj``, and whether cloudpickle made it: pickle first (plain data pays
    nothing more), cloudpickle when pickle fails or when ``by_value``."""
    if not by_value:
        try:
            return pickle.dumps(obj, protocol=5), False
        except Exception:
            pass
    import cloudpickle

    return bytes(cloudpickle.dumps(obj, protocol=5)), True


def encode_call(call: Call) -> bytes:
    return pickle.dumps(call, protocol=5)


def decode_call(message: bytes) -> Call:
    call: Call = pickle.loads(message)
    return call


def encode_result(values: list[Any], errors: dict[int, BaseException], elapsed_s: float) -> bytes:
    """(values, {i: ErrorRecord}, elapsed): values as one pickle, each error on its own, so
    the parent can still report an error it cannot rebuild. A value that cannot be pickled
    becomes that item's error."""
    from .._exceptions import SerializationError

    records = {i: error_record(e) for i, e in errors.items()}
    try:
        blob = dumps(values)[0]
    except Exception:
        values = list(values)
        for i, value in enumerate(values):
            if i not in records and not _picklable(value):
                values[i] = None
                message = f"the task's result ({type(value).__name__}) cannot be pickled back "
                records[i] = error_record(
                    SerializationError(message + "to the parent; return plain data")
                )
        blob = dumps(values)[0]
    return pickle.dumps((blob, records, elapsed_s), protocol=5)


def decode_result(reply: bytes) -> tuple[bytes, dict[int, ErrorRecord], float]:
    """The values' pickle (unpickled by the caller: it may fail), the error records, the time."""
    blob, records, elapsed = pickle.loads(reply)
    return blob, records, elapsed


def _picklable(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


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


def error_record(exc: BaseException) -> ErrorRecord:
    wrapped = _WithTraceback(exc)
    try:
        blob: bytes | None = dumps(wrapped)[0]
    except Exception:
        blob = None
    return blob, type(exc).__qualname__, str(exc), wrapped.tb


def decode_error(record: ErrorRecord) -> BaseException:
    """The task's own exception, or a SerializationError that names it if it cannot be rebuilt."""
    from .._exceptions import SerializationError

    blob, type_name, message, tb = record
    problem = "it cannot be pickled"
    if blob is not None:
        try:
            error: BaseException = pickle.loads(blob)
            return error
        except Exception as exc:
            problem = f"it cannot be rebuilt in the parent: {type(exc).__name__}: {exc}"
    return _rebuild(SerializationError(f"the task raised {type_name}: {message} ({problem})"), tb)


class FdConnection:
    """The framing of ``multiprocessing.connection.Connection`` (the parent's side), on a raw
    descriptor: a 4-byte big-endian length (-1, then 8 bytes, for huge messages), then the
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
