"""The child side of the process backend: a loop that runs chunks sent over a socket.

Forked from the template process (``_template``), or started as ``python _boot.py`` where fork is
unavailable (not multiprocessing): a user's ``__main__`` is never re-imported and the user's
threaded parent is never forked. It exits when its socket closes, quietly
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
import sys
import threading
from collections import OrderedDict
from typing import Any

from .._exceptions import SerializationError
from ._base import ChunkResult, all_failed, run_chunk
from ._wire import (
    CONTEXT,
    INIT_FAILED,
    MAX_CACHED_FUNCTIONS,
    READY,
    RESEND,
    FdConnection,
    decode_call,
    encode_result,
    error_record,
)


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
            # the parent sent it ready to call (a coroutine function wrapped to run to its end):
            # nothing here imports inspect to tell
            self._cache[fn_id] = pickle.loads(blob)
            if len(self._cache) > MAX_CACHED_FUNCTIONS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(fn_id)
        return self._cache[fn_id]


def _handle(message: bytes, functions: _Functions) -> ChunkResult | None:
    """Run one chunk; None asks the parent to resend it by value."""
    fn_id, blob, payload, count, by_value = decode_call(message)
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
    apply_context(setup["context"])
    if setup["initializer"] is not None:
        try:
            pickle.loads(setup["initializer"])()
        except BaseException as exc:  # sys.exit() too: reported, not a crash
            conn.send_bytes(INIT_FAILED + pickle.dumps(error_record(exc), protocol=5))
            return False
    conn.send_bytes(READY)  # timeouts count from here, not from the interpreter's start
    return True


def _loop(conn: Any) -> None:
    functions = _Functions()
    while True:
        message = conn.recv_bytes()
        if message.startswith(CONTEXT):  # reused by a later run: its parent's state now
            apply_context(pickle.loads(message[len(CONTEXT) :]))
            continue
        result = _handle(message, functions)
        if result is None:
            conn.send_bytes(RESEND)
        else:
            conn.send_bytes(encode_result(result.values, result.errors or {}, result.elapsed_s))


def apply_context(context: dict[str, Any]) -> None:
    """Import from, run in and see the environment of the parent as it is now."""
    sys.path[:] = context["sys_path"]
    if context["cwd"] is not None:
        with contextlib.suppress(OSError):
            os.chdir(context["cwd"])
    if context["environ"] != dict(os.environ):
        os.environ.clear()
        os.environ.update(context["environ"])


def main() -> None:
    run(int(sys.argv[1]), int(sys.argv[2]))


def run(conn_fd: int, lifeline_fd: int) -> None:
    """Serve the parent on ``conn_fd``, then leave (never returns)."""
    serve(FdConnection(conn_fd), lifeline_fd)
    # Leave without the interpreter's teardown, as multiprocessing's children do: the pool's
    # close waits for its workers, and a teardown is milliseconds of CPU for each.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
