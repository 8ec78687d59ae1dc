"""Process backend promises pinned down by mutation testing (``./dev mutants backends-process``,
issue 9), with real worker processes: each worker and the template lead their own session (a
Ctrl-C in the terminal reaches the parent only; a kill of the group reaches what a task started),
errors that cannot cross back say why, and a chunk with an unpicklable item keeps its timeout.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import importlib
import importlib.util
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import _reuse_tasks as R
import _tasks as T
import cloudpickle
import pytest
from conftest import pid_alive, process_state, wait_until

import plait
from plait._backends import _process_worker, _reuse, _template, _wire

pytestmark = pytest.mark.timeout(30)


def _session(_: object) -> tuple[int, int, int]:
    return os.getpid(), os.getsid(0), os.getpgid(0)


def test_spawned_workers_lead_their_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_PROCESS_START", "spawn")
    with plait.Pool(backend="process", workers=2) as pool:
        found = set(pool.map(_session, range(4), chunksize=1))
    assert found and all(pid == sid == pgid for pid, sid, pgid in found)
    assert all(pid != os.getpid() for pid, _, _ in found)


def test_forked_workers_and_the_template_lead_their_own_session() -> None:
    plait.shutdown()  # a template of its own, started by this test
    found = set(plait.map(_session, range(4), backend="process", workers=2, chunksize=1))
    assert all(pid == sid == pgid for pid, sid, pgid in found)
    template = _template.pid()
    assert template is not None and os.getsid(template) == template != os.getsid(0)


def test_an_exception_that_cannot_be_pickled_is_named_with_the_reason() -> None:
    outcomes = plait.map(
        T.raise_unpicklable_on_two, range(3), backend="process", workers=1, errors="collect"
    )
    error = outcomes[2].error
    assert type(error) is plait.SerializationError
    assert str(error) == "the task raised UnpicklableError: bad 2 (it cannot be pickled)"
    assert "raise_unpicklable_on_two" in str(error.__cause__)  # the worker's traceback


def test_an_exception_that_cannot_be_rebuilt_names_what_failed() -> None:
    outcomes = plait.map(
        T.raise_unrebuildable_on_two, range(3), backend="process", workers=1, errors="collect"
    )
    message = str(outcomes[2].error)
    assert "(it cannot be rebuilt in the parent: TypeError: " in message, message


# --- the worker's side of the wire, run in this process --------------------------------------
#
# A worker runs in a child, where mutmut cannot see which test reaches its code. Here its loop
# (``_start``, then ``_loop``, as ``serve`` runs them) serves a socket pair in a thread of this
# process, with the parent's own framing (``multiprocessing.connection``) on the other end: the
# same messages a real worker gets (tests/test_process_*.py run real ones).


class InProcessWorker:
    def __init__(self, initializer: Any = None) -> None:
        parent, child = socket.socketpair()
        self.conn = Connection(parent.detach())
        self._child = _wire.FdConnection(child.detach())
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        blob = None if initializer is None else cloudpickle.dumps(initializer)
        setup = {"context": _wire.context(), "initializer": blob}
        self.conn.send_bytes(pickle.dumps(setup))
        self.first = self.conn.recv_bytes()

    def _serve(self) -> None:
        try:
            if _process_worker._start(self._child):
                _process_worker._loop(self._child)
        except EOFError:  # the parent's end closed: the worker leaves
            pass
        except BaseException as exc:  # reported to the test
            self.error = exc
        finally:
            os.close(self._child.fd)

    def send(self, fn_id: int, fn: Any, payload: bytes, count: int, by_value: bool) -> bytes:
        blob = None if fn is None else bytes(cloudpickle.dumps(fn))
        self.conn.send_bytes(_wire.encode_call((fn_id, blob, payload, count, by_value)))
        assert self.conn.poll(10), "no reply from the worker"  # a test fails, not hangs
        reply: bytes = self.conn.recv_bytes()
        return reply

    def call(self, fn_id: int, fn: Any, items: list[Any]) -> tuple[list[Any], dict[int, Any]]:
        """The values and the rebuilt errors of one chunk."""
        reply = self.send(fn_id, fn, pickle.dumps(items), len(items), False)
        blob, records, elapsed = _wire.decode_result(reply)
        assert isinstance(elapsed, float) and elapsed >= 0  # the chunk's time, for its sizing
        return pickle.loads(blob), {i: _wire.decode_error(r) for i, r in records.items()}

    def close(self) -> None:
        self.conn.close()
        self.thread.join(10)
        assert not self.thread.is_alive() and self.error is None, self.error


@pytest.fixture
def worker() -> Iterator[InProcessWorker]:
    served = InProcessWorker()
    try:
        yield served
    finally:
        served.close()


def _fail_on_two(x: int) -> int:
    if x == 2:
        raise SystemExit(3)  # a task's error like any other: the worker goes on
    return x * 10


def test_a_worker_says_ready_then_runs_chunks(worker: InProcessWorker) -> None:
    assert worker.first == _wire.READY
    values, errors = worker.call(1, _fail_on_two, [0, 1, 2, 3])
    assert values == [0, 10, None, 30] and list(errors) == [2]
    assert type(errors[2]) is SystemExit and errors[2].args == (3,)
    assert "_fail_on_two" in str(errors[2].__cause__)  # the worker's traceback
    assert worker.call(1, None, [5]) == ([50], {})  # the function is kept: sent once


def test_a_worker_keeps_its_last_functions(worker: InProcessWorker) -> None:
    """An LRU of MAX_CACHED_FUNCTIONS: a function used again stays, the oldest goes."""
    for fn_id in range(1, _wire.MAX_CACHED_FUNCTIONS + 1):
        worker.call(fn_id, lambda x, n=fn_id: x + n, [0])
    assert worker.call(1, None, [0]) == ([1], {})  # used again: now the freshest
    worker.call(1000, lambda x: x, [0])  # one more: function 2 goes, not function 1
    assert worker.call(1, None, [0]) == ([1], {})
    assert worker.call(3, None, [0]) == ([3], {})
    _, errors = worker.call(2, None, [0])  # the parent mirrors the LRU and sends it again
    assert type(errors[0]) is plait.SerializationError and "KeyError: 2" in str(errors[0])


def test_a_big_chunk_crosses_both_ways(worker: InProcessWorker) -> None:
    big = [os.urandom(3 << 20), b"x" * 70_000, b""]  # past 64 KiB and 1 MiB reads
    assert worker.call(1, lambda x: x, big) == (big, {})


def test_a_function_that_cannot_be_loaded_fails_its_chunk(worker: InProcessWorker) -> None:
    call = (1, b"not a pickle", pickle.dumps([1, 2]), 2, False)
    worker.conn.send_bytes(_wire.encode_call(call))
    blob, records, _ = _wire.decode_result(worker.conn.recv_bytes())
    assert pickle.loads(blob) == [None, None] and list(records) == [0, 1]
    error = _wire.decode_error(records[0])
    assert type(error) is plait.SerializationError
    assert str(error).startswith(
        "the function could not be loaded in the worker (define it in an importable module): "
        "UnpicklingError: "
    )


def test_arguments_that_do_not_unpickle_are_asked_again_by_value(worker: InProcessWorker) -> None:
    assert worker.send(1, lambda x: x, b"not a pickle", 1, False) == _wire.RESEND
    reply = worker.send(1, None, b"still not a pickle", 1, True)  # by value, and still broken
    blob, records, _ = _wire.decode_result(reply)
    error = _wire.decode_error(records[0])
    assert pickle.loads(blob) == [None] and type(error) is plait.SerializationError
    assert str(error).startswith(
        "the arguments could not be unpickled in the worker: UnpicklingError: "
    )
    assert worker.call(1, None, [7]) == ([7], {})  # and the worker goes on


def test_a_result_that_cannot_be_pickled_fails_only_its_item(worker: InProcessWorker) -> None:
    values, errors = worker.call(1, lambda x: threading.Lock() if x == 1 else x, [0, 1, 2])
    assert values == [0, None, 2] and list(errors) == [1]
    assert type(errors[1]) is plait.SerializationError
    assert str(errors[1]) == (
        "the task's result (lock) cannot be pickled back to the parent; return plain data"
    )


def test_a_reused_worker_takes_the_parents_environment(worker: InProcessWorker) -> None:
    context = _wire.context()
    changed = dict(context, environ=dict(context["environ"], PLAIT_MUT_CONTEXT="1"))
    try:
        worker.conn.send_bytes(_wire.CONTEXT + pickle.dumps(changed))
        assert worker.call(1, lambda _: os.environ.get("PLAIT_MUT_CONTEXT"), [0]) == (["1"], {})
    finally:
        worker.conn.send_bytes(_wire.CONTEXT + pickle.dumps(context))
        worker.call(2, lambda x: x, [0])  # the context is back before the test ends
    assert "PLAIT_MUT_CONTEXT" not in os.environ


class InitFailed(Exception):
    pass


def _failing_initializer() -> None:
    raise InitFailed("no database")


def test_a_failing_initializer_is_reported_and_the_worker_serves_nothing() -> None:
    served = InProcessWorker(_failing_initializer)
    try:
        assert served.first.startswith(_wire.INIT_FAILED)
        record = pickle.loads(served.first[len(_wire.INIT_FAILED) :])
        error = _wire.decode_error(record)
        assert type(error).__name__ == "InitFailed" and str(error) == "no database"
        served.thread.join(10)
        assert not served.thread.is_alive()  # it left without serving a call
    finally:
        served.close()



def test_a_tasks_error_that_cannot_be_pickled_is_named(worker: InProcessWorker) -> None:
    values, errors = worker.call(1, T.raise_unpicklable_on_two, [1, 2])
    assert values == [1, None] and type(errors[1]) is plait.SerializationError
    assert str(errors[1]) == "the task raised UnpicklableError: bad 2 (it cannot be pickled)"


def test_the_workers_traceback_reads_as_multiprocessing_shows_it(worker: InProcessWorker) -> None:
    _, errors = worker.call(1, _fail_on_two, [2])
    text = str(errors[0].__cause__)
    assert text.startswith('\n"""\nTraceback (most recent call last):\n  File "')
    assert text.endswith('SystemExit: 3\n"""')


def test_a_reused_worker_moves_to_the_parents_directory(
    worker: InProcessWorker, tmp_path: Path
) -> None:
    context = _wire.context()
    here = os.getcwd()
    try:
        worker.conn.send_bytes(_wire.CONTEXT + pickle.dumps(dict(context, cwd=str(tmp_path))))
        assert worker.call(1, lambda _: os.getcwd(), [0]) == ([str(tmp_path)], {})
        gone = dict(context, cwd=str(tmp_path / "deleted"))  # it keeps its own directory
        worker.conn.send_bytes(_wire.CONTEXT + pickle.dumps(gone))
        assert worker.call(1, None, [0]) == ([str(tmp_path)], {})
    finally:
        os.chdir(here)
        worker.conn.send_bytes(_wire.CONTEXT + pickle.dumps(context))
        worker.call(2, lambda x: x, [0])


def _interrupt(_: object) -> None:
    raise KeyboardInterrupt


def test_a_keyboard_interrupt_a_task_raises_is_its_error_in_the_main_thread() -> None:
    """A worker's loop runs in its main thread, where a KeyboardInterrupt would otherwise stop
    it: here this test's main thread is the worker, a thread is its parent."""
    parent_sock, child_sock = socket.socketpair()
    parent = Connection(parent_sock.detach())
    child = _wire.FdConnection(child_sock.detach())
    replies: list[bytes] = []

    def as_parent() -> None:
        setup = {"context": _wire.context(), "initializer": None}
        parent.send_bytes(pickle.dumps(setup))
        replies.append(parent.recv_bytes())
        call = (1, bytes(cloudpickle.dumps(_interrupt)), pickle.dumps([0, 1]), 2, False)
        parent.send_bytes(_wire.encode_call(call))
        replies.append(parent.recv_bytes())
        parent.close()  # the worker leaves

    thread = threading.Thread(target=as_parent, daemon=True)
    thread.start()
    try:
        with pytest.raises(EOFError):
            if _process_worker._start(child):
                _process_worker._loop(child)
    except KeyboardInterrupt:  # the worker stopped: fail this test, not the whole session
        pytest.fail("the task's KeyboardInterrupt stopped the worker's loop")
    finally:
        os.close(child.fd)
        thread.join(10)
    assert replies[0] == _wire.READY
    blob, records, _ = _wire.decode_result(replies[1])
    assert pickle.loads(blob) == [None, None] and sorted(records) == [0, 1]
    assert all(type(_wire.decode_error(r)) is KeyboardInterrupt for r in records.values())


def test_a_recycled_worker_serves_exactly_max_tasks() -> None:
    pids = plait.map(
        T.getpid, range(6), backend="process", workers=1, max_tasks_per_worker=2, chunksize=1
    )
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2]


# --- shared idle workers (_reuse) ------------------------------------------------------------


def _open_pipes() -> int:
    """Pipes this process holds open (a worker's lifeline and status pipe are pipes; plait's
    loop threads, which a run may add, hold an epoll and sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return count


def test_a_worker_not_kept_is_stopped_and_leaves_no_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plait.shutdown()  # no idle worker of an earlier test
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0")  # sharing off: each run stops its workers
    for _ in range(2):  # the template, plait's loop thread: what stays open between runs
        plait.map(T.getpid, range(4), backend="process", workers=2, chunksize=1)
    before = _open_pipes()
    pids = set(plait.map(T.getpid, range(4), backend="process", workers=2, chunksize=1))
    assert not _reuse.idle_pids() and not any(pid_alive(p) for p in pids)
    # each worker's lifeline and status pipe closed
    assert wait_until(lambda: _open_pipes() <= before, 5), (_open_pipes(), before)


@pytest.mark.parametrize("text", ["-1", "nan", "soon"])
def test_an_unusable_idle_timeout_means_the_default(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", text)
    assert _reuse.idle_timeout_s() == _reuse.DEFAULT_IDLE_TIMEOUT_S
    pids = set(plait.map(T.getpid, range(4), backend="process", workers=2, chunksize=1))
    assert _reuse.idle_pids() == pids  # kept for the next run, as with the default


def test_at_most_four_idle_workers_per_core_are_kept() -> None:
    from plait._backends import cpu_count

    limit = 4 * cpu_count()
    plait.map(T.getpid, range(2), backend="process", workers=1)  # the template is up
    plait.shutdown()  # no idle worker
    plait.map(T.getpid, range(2), backend="process", workers=1)
    before = _open_pipes() - 2  # less the one idle worker's lifeline and status pipe
    pids = set(
        plait.map(T.getpid, range(4 * limit), backend="process", workers=limit + 2, chunksize=1)
    )
    kept = _reuse.idle_pids()
    assert len(kept) == limit and kept <= pids
    assert wait_until(lambda: not any(pid_alive(p) for p in pids - kept), 5)  # the rest stopped
    # the stopped ones closed their pipes; each kept one holds two
    assert wait_until(lambda: _open_pipes() == before + 2 * limit, 5), (_open_pipes(), before)


def test_idle_workers_are_ended_by_a_named_daemon_thread() -> None:
    plait.shutdown()  # no idle worker, no reaper: this run starts one
    plait.map(T.getpid, range(2), backend="process", workers=1)
    (reaper,) = [t for t in threading.enumerate() if t.name == "plait-idle-workers"]
    assert reaper.daemon  # it never holds up the interpreter's exit


# --- start-up and results that cannot cross back ---------------------------------------------


def _die_at_start() -> None:
    os._exit(3)


def test_a_worker_that_dies_while_starting_says_how() -> None:
    outcomes = plait.map(
        T.square, range(2), backend="process", workers=1, initializer=_die_at_start,
        errors="collect",
    )
    error = outcomes[0].error
    assert type(error) is plait.WorkerCrashed and error.exitcode == 3
    assert str(error) == "the worker process died while starting (exit code 3)"


def test_a_failing_initializer_gets_a_note_saying_what_it_means() -> None:
    outcomes = plait.map(
        T.square, range(2), backend="process", workers=1, initializer=_failing_initializer,
        errors="collect",
    )
    cause = outcomes[0].error.__cause__ if outcomes[0].error else None
    assert type(cause).__name__ == "InitFailed"
    assert getattr(cause, "__notes__", None) == [
        "raised by the process backend's initializer: its workers cannot start, "
        "so every task of this pool fails with this error"
    ]


def test_a_result_that_cannot_be_rebuilt_says_why() -> None:
    outcomes = plait.map(
        T.unloadable_on_two, range(3), backend="process", workers=1, errors="collect"
    )
    assert str(outcomes[2].error) == (
        "the task's result cannot be unpickled in the parent "
        "(RuntimeError: this object cannot be unpickled); return plain data"
    )


def test_results_at_the_framing_boundary_cross_whole(worker: InProcessWorker) -> None:
    """The worker writes a message up to 64 KiB with its header, a longer one after it: the
    two sizes either side of that line come back whole."""
    base = len(_wire.encode_result([b"x" * 65000], {}, 0.0)) - 65000  # the pickles around it
    for size in (65536, 65537):
        payload = b"x" * (size - base)
        assert len(_wire.encode_result([payload], {}, 0.0)) == size
        assert worker.call(1, lambda x: x, [payload]) == ([payload], {})


def test_arguments_only_cloudpickle_can_carry_reach_the_worker() -> None:
    """A lambda as an item: pickle refuses it, so the chunk goes with cloudpickle."""
    def call_with_two(f: Callable[[int], int]) -> int:
        return f(2)

    items: list[Callable[[int], int]] = [lambda x: x * 3, lambda x: x + 1]
    assert plait.map(call_with_two, items, backend="process", workers=1) == [6, 3]


# --- what a worker takes over: where to import from --------------------------------------


def _import_triple(name: str) -> Callable[[int], int]:
    module = importlib.import_module(name)
    return cast(Callable[[int], int], module.triple)


def test_workers_import_from_the_folders_the_parent_imports_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``sys.path`` entry is the folder it names from plait's start directory, as
    with multiprocessing, even after the parent moved elsewhere; an absolute entry goes as it
    is (not normalised: ``link/..`` is the folder above the link's target)."""
    from plait._backends import START_DIR

    for folder, name in (("rel/mods", "plait_mut_relmod"), ("real/mods", "plait_mut_linkmod")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / f"{name}.py").write_text("def triple(x):\n    return 3 * x\n")
    (tmp_path / "real" / "sub").mkdir()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "link").symlink_to(tmp_path / "real" / "sub")
    through_link = f"{tmp_path}/x/link/../mods"  # real/mods; x/mods, normalised, does not exist
    monkeypatch.chdir(START_DIR)
    plait.map(T.getpid, range(1), backend="process", workers=1)  # the template is up, from here
    monkeypatch.syspath_prepend(os.path.relpath(tmp_path / "rel" / "mods", START_DIR))
    monkeypatch.syspath_prepend(through_link)
    try:
        functions = [_import_triple("plait_mut_relmod"), _import_triple("plait_mut_linkmod")]
        # where the relative entry names nothing: deeper than START_DIR, so that its ".."s
        # cannot stop at "/" and, from there, name the right folder after all
        elsewhere = tmp_path.joinpath(*["elsewhere"] * (START_DIR.count(os.sep) + 2))
        elsewhere.mkdir(parents=True)
        monkeypatch.chdir(elsewhere)
        for fn in functions:
            assert plait.map(fn, [1, 2], backend="process", workers=1) == [3, 6]
    finally:
        for name in ("plait_mut_relmod", "plait_mut_linkmod"):
            sys.modules.pop(name, None)


# --- arguments pickle cannot send by reference -----------------------------------------------


class _OfMain:
    def __init__(self, value: int) -> None:
        self.value = value


def _value_of(thing: Any) -> Any:
    return thing.value


def test_an_argument_of_the_programs_main_is_sent_again_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pickle names a class of the program's ``__main__`` by reference, which a worker's
    ``__main__`` lacks: the worker asks again and gets the class itself, with cloudpickle."""
    monkeypatch.setattr(_OfMain, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "_OfMain", _OfMain, raising=False)
    items = [_OfMain(1), _OfMain(2)]
    assert plait.map(_value_of, items, backend="process", workers=1, chunksize=2) == [1, 2]


def _wait_for_the_file_it_names(thing: Any) -> int:
    return R.wait_for_file(thing.value)


@pytest.mark.timeout(30)
def test_an_argument_sent_again_by_value_keeps_the_tasks_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_OfMain, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "_OfMain", _OfMain, raising=False)
    never = _OfMain(str(tmp_path / "never"))  # type: ignore[arg-type]
    (outcome,) = plait.map(
        _wait_for_the_file_it_names, [never], backend="process", workers=1, timeout=0.5,
        errors="collect",
    )
    assert type(outcome.error) is plait.TaskTimeout


def test_an_argument_the_worker_cannot_import_fails_with_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A class of a module only the parent has: pickle and cloudpickle both name it by
    reference; asked again by value, the worker still cannot load it and says so (it does not
    ask forever)."""
    module = types.ModuleType("plait_mut_parent_only")

    class Thing:
        def __init__(self, value: int) -> None:
            self.value = value

    Thing.__module__, Thing.__qualname__ = module.__name__, "Thing"
    module.Thing = Thing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    outcomes = plait.map(
        _value_of, [Thing(1), Thing(2)], backend="process", workers=1, errors="collect"
    )
    assert [type(o.error) for o in outcomes] == [plait.SerializationError] * 2
    assert str(outcomes[0].error) == (
        "the arguments could not be unpickled in the worker: "
        "ModuleNotFoundError: No module named 'plait_mut_parent_only'"
    )


# --- the worker's framing is multiprocessing's -----------------------------------------------


def _stream(send: Callable[[socket.socket], None], limit: int | None = None) -> bytes:
    """What ``send`` writes to a socket (its first ``limit`` bytes: then the reader leaves,
    and the sender's write fails, as when a parent dies)."""
    writer, reader = socket.socketpair()

    def sending() -> None:
        try:
            send(writer)
        except Exception:  # the reader left (or the sender failed): it sees the end
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=sending, daemon=True)
    thread.start()
    data = b""
    reader.settimeout(10)  # a test fails, not hangs
    with reader:
        while limit is None or len(data) < limit:
            more = reader.recv(1 << 16 if limit is None else limit - len(data))
            if not more:
                break
            data += more
    thread.join(10)
    writer.close()
    assert not thread.is_alive()
    return data


def _by_plait(data: Any) -> Callable[[socket.socket], None]:
    return lambda sock: _wire.FdConnection(sock.fileno()).send_bytes(data)


def _by_multiprocessing(data: Any) -> Callable[[socket.socket], None]:
    def send(sock: socket.socket) -> None:
        conn = Connection(os.dup(sock.fileno()))
        try:
            conn.send_bytes(data)
        finally:
            conn.close()

    return send


@pytest.mark.parametrize("size", [0, 1, 5, 65536, 65537, 100_000])
def test_the_worker_writes_a_message_as_multiprocessing_does(size: int) -> None:
    data = os.urandom(size)
    written = _stream(_by_plait(data))
    assert written == _stream(_by_multiprocessing(data))
    assert written == struct.pack("!i", size) + data


def test_a_message_of_2_gib_or_more_gets_the_long_header() -> None:
    """The size field is a signed 32-bit int: 2 GiB and more are sent as -1 then 8 bytes. (The
    message's pages are never touched, so this costs no memory; only its start is read.)"""
    for size, header in (
        (0x7FFFFFFF, struct.pack("!i", 0x7FFFFFFF)),
        (0x80000000, struct.pack("!iQ", -1, 0x80000000)),
    ):
        data = mmap.mmap(-1, size)
        start = header + bytes(12 - len(header))  # then the message's first (zero) bytes
        try:
            assert _stream(_by_plait(data), 12) == start
            assert _stream(_by_multiprocessing(data), 12) == start
        finally:
            data.close()


@pytest.mark.parametrize("size", [0, 1, 2, 70_000])
def test_the_worker_reads_what_multiprocessing_writes(size: int) -> None:
    data = os.urandom(size)
    writer, reader = socket.socketpair()
    with reader:
        _by_multiprocessing(data)(writer)
        writer.close()
        conn = _wire.FdConnection(reader.fileno())
        assert conn.recv_bytes() == data
        with pytest.raises(EOFError):  # nothing more: the message was read whole, no more
            conn.recv_bytes()


def test_the_worker_reads_the_long_header() -> None:
    """A message sent with the 2 GiB form of the header (-1, then the size in 8 bytes) reads
    as multiprocessing reads it."""
    frame = struct.pack("!iQ", -1, 5) + b"hello"
    writer, reader = socket.socketpair()
    with writer, reader:
        writer.sendall(frame * 2)
        writer.shutdown(socket.SHUT_WR)
        conn = Connection(os.dup(reader.fileno()))
        try:
            assert conn.recv_bytes() == b"hello"  # multiprocessing's own form
        finally:
            conn.close()
        assert _wire.FdConnection(reader.fileno()).recv_bytes() == b"hello"


# --- a forked worker outliving the template ------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """Orphans of this process's children become its own, unreaped until it waits for them:
    as under a container's init that reaps late, a dead orphan stays a zombie meanwhile."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, ctypes.get_errno()
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class _Orphan:
    """A worker forked by ``template``, waiting for its setup; it leaves when its lifeline
    closes."""

    def __init__(self, template: _template.Template) -> None:
        self.conn, child = socket.socketpair()
        lifeline_r, self.lifeline = os.pipe()
        try:
            self.forked = template.fork(child.fileno(), lifeline_r)
        finally:
            child.close()
            os.close(lifeline_r)

    def end(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1

    def reap(self) -> None:
        self.end()
        self.conn.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.forked.pid, 0)

    @property
    def pid(self) -> int:
        return self.forked.pid


@pytest.mark.timeout(20)
def test_a_worker_outliving_the_template_is_watched_through_proc() -> None:
    """The template took the worker's exit code with it: ``Forked`` then reads /proc. poll()
    is None while the worker runs and 0 once it ended, also while it is a zombie nobody reaped
    yet; wait() then returns 0, and wait(timeout) on a running one times out as Popen's does."""
    with _subreaper():
        template = _template.Template()
        orphans = [_Orphan(template) for _ in range(3)]
        try:
            template.stop()  # the workers, orphaned, become this process's children
            first, second, third = orphans
            assert first.forked.poll() is None
            stuck = threading.Timer(5, os.kill, (first.forked.pid, signal.SIGKILL))
            stuck.start()  # should wait(timeout) not time out: it ends, the test fails
            started = time.monotonic()
            try:
                with pytest.raises(subprocess.TimeoutExpired) as timed_out:
                    first.forked.wait(timeout=0.2)
            finally:
                stuck.cancel()
            assert time.monotonic() - started >= 0.2
            assert timed_out.value.cmd == f"worker {first.forked.pid}"
            assert 0 < timed_out.value.timeout <= 0.2
            for orphan in orphans:
                orphan.end()  # each leaves, a zombie until this process reaps it
            assert wait_until(lambda: {process_state(o.forked.pid) for o in orphans} == {"Z"}, 5)
            assert first.forked.poll() == 0
            assert second.forked.wait() == 0
            third.reap()
            assert third.forked.poll() == 0  # reaped: gone from /proc
        finally:
            for orphan in orphans:
                orphan.reap()


@pytest.mark.timeout(20)
def test_waiting_for_a_running_forked_worker_times_out_as_popen_does() -> None:
    """wait(timeout) on a forked worker that runs on raises ``TimeoutExpired`` after the time
    asked (it does not block on the status pipe until the worker ends); once the worker
    leaves, wait() returns its exit code, which the template reports."""
    template = _template.Template()
    worker = _Orphan(template)  # here not orphaned: its template runs
    try:
        stuck = threading.Timer(5, os.kill, (worker.forked.pid, signal.SIGKILL))
        stuck.start()  # should wait(timeout) block: the worker ends, and the test fails
        try:
            with pytest.raises(subprocess.TimeoutExpired) as timed_out:
                worker.forked.wait(timeout=1.5)  # past _REPORT_S: it runs, it is not "gone"
        finally:
            stuck.cancel()
        assert (timed_out.value.cmd, timed_out.value.timeout) == (f"worker {worker.pid}", 1.5)
        assert worker.forked.poll() is None
        worker.conn.close()  # the worker leaves, as when its parent closes its socket
        assert worker.forked.wait(timeout=10) == 0
    finally:
        worker.reap()
        template.stop()


@pytest.mark.timeout(20)
def test_a_worker_dead_without_a_report_counts_as_killed() -> None:
    """A worker that died while its template cannot report it (stopped: the worker stays an
    unreaped zombie, no status comes) is taken as killed after a second: wait() returns
    -SIGKILL instead of waiting on."""
    template = _template.Template()
    worker = _Orphan(template)  # not orphaned: its template runs, then is stopped
    os.kill(template.popen.pid, signal.SIGSTOP)
    try:
        os.kill(worker.pid, signal.SIGKILL)
        assert wait_until(lambda: process_state(worker.pid) == "Z", 5)
        assert worker.forked.wait(timeout=5) == -signal.SIGKILL
    finally:
        os.kill(template.popen.pid, signal.SIGCONT)
        worker.reap()
        template.stop()


# --- the template preloads the standard library the program uses -----------------------------


@pytest.mark.timeout(30)
def test_the_template_preloads_the_programs_stdlib_modules_not_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fork the template imports the PRELOAD modules the program has loaded, so that
    later workers have them; neither one the program has not loaded nor a module of the
    program's own that shadows one (a ``statistics.py`` beside it): its workers import the
    program's."""
    importlib.import_module("zoneinfo")  # stdlib, and not in a template at its start
    monkeypatch.delitem(sys.modules, "sqlite3", raising=False)  # as if never imported here
    mine = tmp_path / "statistics.py"
    mine.write_text("MINE = True\n")
    spec = importlib.util.spec_from_file_location("statistics", mine)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "statistics", module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0")  # each run forks its worker anew
    plait.shutdown()  # a fresh template, which has none of them

    def fresh_worker() -> tuple[list[bool], str | None]:
        names = ("zoneinfo", "sqlite3", "statistics")
        (state,) = plait.map(T.loaded_then_file, [names], backend="process", workers=1)
        return state

    # imported one at a time, in name order, while no fork waits: zoneinfo comes last
    assert wait_until(lambda: fresh_worker()[0][0], 10)
    assert fresh_worker() == ([True, False], str(mine))


@pytest.mark.timeout(30)
def test_a_template_that_stops_answering_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template that does not answer a fork request (stopped, stuck) does not hang the run:
    past its time limit the request fails, the template is killed and reaped (it cannot see
    its lifeline close), and a new one forks the worker. After a second such failure plait
    stops trying: workers are spawned from then on."""
    # read by each template at its start; a fresh template must answer its first fork within
    # it, its boot included, so not too short for a loaded machine
    monkeypatch.setattr(_template, "_ANSWER_S", 1.0)
    monkeypatch.setattr(_template, "_failures", 0)
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0")  # each run forks its worker anew
    plait.shutdown()
    plait.map(R.pid, range(1), backend="process", workers=1)  # a template with that limit
    stuck: list[int] = []
    try:
        for _ in range(2):
            template = _template.pid()
            assert template is not None and template not in stuck
            stuck.append(template)
            os.kill(template, signal.SIGSTOP)
            (parent,) = plait.map(R.parent_pid, range(1), backend="process", workers=1)
            assert process_state(template) is None  # killed and reaped
            if len(stuck) == 1:
                assert parent == _template.pid() not in (None, template)  # a new template
        assert parent == os.getpid() and _template.pid() is None  # spawned, no template
    finally:
        for pid in stuck:
            if process_state(pid) == "T":  # the test failed: let it go on, and stop
                os.kill(pid, signal.SIGCONT)


# --- _boot: plait and plait._backends start as bare packages ---------------------------------

BARE_INIT = """
from . import sub  # relative: the package must name itself (__package__) for this
from .nested import leaf
RUNS = [*globals().get("RUNS", []), 1]
VALUE = sub.ANSWER + leaf.ANSWER
"""


def test_a_bare_package_runs_its_init_only_when_an_attribute_is_read(tmp_path: Path) -> None:
    """A worker starts with ``plait`` and ``plait._backends`` registered bare: importing a
    submodule (or a subpackage) of one does not run its ``__init__``; the first other
    attribute read does, once, into the same module object."""
    from plait._backends import _boot

    folder = tmp_path / "barepkg"
    (folder / "nested").mkdir(parents=True)
    (folder / "__init__.py").write_text(BARE_INIT)
    (folder / "sub.py").write_text("ANSWER = 40\n")
    (folder / "nested" / "__init__.py").write_text("")
    (folder / "nested" / "leaf.py").write_text("ANSWER = 2\n")
    names = ("barepkg", "barepkg.sub", "barepkg.nested", "barepkg.nested.leaf")
    assert not any(name in sys.modules for name in names)
    try:
        _boot._bare_package("barepkg", str(folder))
        package: Any = sys.modules["barepkg"]
        assert package.__path__ == [str(folder)]
        assert package.__file__ == str(folder / "__init__.py")
        assert (package.__name__, package.__package__) == ("barepkg", "barepkg")
        from barepkg import nested, sub  # type: ignore[import-not-found]

        assert (sub.ANSWER, nested.__name__) == (40, "barepkg.nested")
        assert "RUNS" not in vars(package)  # __init__ has not run
        assert package.VALUE == 42  # it runs now (no ImportWarning: warnings are errors here)
        assert sys.modules["barepkg"] is package and package.sub is sub
        with pytest.raises(AttributeError):
            package.missing  # noqa: B018 - a plain module's AttributeError now
        assert package.RUNS == [1]  # __init__ ran once
    finally:
        for name in names:
            sys.modules.pop(name, None)


# --- the template's server: what it imports, and when -----------------------------------------


class _Server:
    """The template's request loop (``_template._Server``) in this process's main thread, with
    the parent's end of its request socket and of its lifeline: the messages are the ones
    ``Template`` sends. (It cannot fork here: a fork request is only tested in a template.)"""

    def __init__(self, preload: list[str]) -> None:
        self.parent, child = socket.socketpair()
        lifeline_r, self.lifeline = os.pipe()
        self._handler = signal.getsignal(signal.SIGCHLD)
        self._wakeup = signal.set_wakeup_fd(-1)
        self.server = _template._Server(child.detach(), lifeline_r, preload)

    def close(self) -> None:
        signal.set_wakeup_fd(self._wakeup)
        signal.signal(signal.SIGCHLD, self._handler)
        self.server.request.close()
        for fd in (self.server.wake_r, self.server.wake_w, self.server.lifeline):
            os.close(fd)
        self.end_lifeline()
        self.parent.close()

    def end_lifeline(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1


@contextlib.contextmanager
def _template_server(preload: list[str]) -> Iterator[tuple[socket.socket, Any]]:
    served = _Server(preload)
    try:
        yield served.parent, served.server
    finally:
        served.close()


def _names_message(kind: bytes, names: str) -> bytes:
    return kind + struct.pack("!I", len(names)) + names.encode()


@pytest.mark.timeout(20)
def test_the_template_imports_what_a_run_needs_at_once_and_the_rest_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``need`` (b"n"): the template imports those modules before it answers anything else
    and holds its other imports; ``after_run`` (b"p"): it adds the names to what it imports
    while no request waits, and imports again. Anything else ends its service."""
    mods = ("tq_first", "tq_need_a", "tq_need_b", "tq_later")
    for name in mods:
        (tmp_path / f"{name}.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with _template_server(["tq_first"]) as (parent, server):
            assert (server.to_import, server.paused) == (["tq_first"], False)
            os.kill(os.getpid(), signal.SIGCHLD)  # a worker's end wakes the server's poll
            assert select.select([server.wake_r], [], [], 5)[0]
            assert os.read(server.wake_r, 16) == bytes([signal.SIGCHLD])
            parent.sendall(_names_message(b"n", "tq_need_a tq_no_such_module tq_need_b"))
            assert server._answer() is True  # a module it cannot import is skipped
            assert "tq_need_a" in sys.modules and "tq_need_b" in sys.modules
            assert (server.to_import, server.paused) == (["tq_first"], True)
            assert "tq_first" not in sys.modules  # put off until the run ends
            parent.sendall(_names_message(b"p", "tq_later"))
            assert server._answer() is True
            assert (server.to_import, server.paused) == (["tq_first", "tq_later"], False)
            assert "tq_later" not in sys.modules  # imported by the loop, while idle
            parent.sendall(_names_message(b"n", ""))  # nothing new needed: still a run
            assert server._answer() is True and server.paused is True
            forks: list[tuple[int, ...]] = []
            server._fork_one = lambda *fds: forks.append(fds)  # no fork in the test process
            r, w = os.pipe()
            try:
                socket.send_fds(parent, [b"f"], [r, w, r])  # a worker's socket, lifeline, status
                assert server._answer() is True and len(forks) == 1 and len(forks[0]) == 3
            finally:
                for fd in (r, w, *forks[0]) if forks else (r, w):
                    os.close(fd)
            parent.sendall(b"x")
            assert server._answer() is False
            parent.sendall(b"f")  # a fork request without its three descriptors
            assert server._answer() is False
            parent.shutdown(socket.SHUT_WR)  # the parent closed its end
            assert server._answer() is False
    finally:
        for name in mods:
            sys.modules.pop(name, None)


# --- closing a process pool ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_an_unreferenced_process_pool_still_runs_the_work_queued_to_it(tmp_path: Path) -> None:
    import gc

    gate = tmp_path / "gate"
    pool = plait.Pool(backend="process", workers=1)
    running = pool.submit(R.wait_for_file, str(gate))
    queued = pool.submit(R.pid, None)
    del pool
    gc.collect()  # the pool lets its workers go, as the stdlib's executors do: work goes on
    gate.touch()
    worker = running.result(timeout=20)
    assert queued.result(timeout=20) == worker  # the same worker, not killed meanwhile
    plait.shutdown()


@pytest.mark.timeout(30)
def test_a_process_pool_shut_down_without_waiting_returns_while_its_task_runs(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    pool = plait.Pool(backend="process", workers=1)
    running = pool.submit(R.wait_for_file, str(gate))
    queued = pool.submit(R.pid, None)
    pool.shutdown(wait=False)  # it would block here until the gate opens, if it waited
    assert not running.done()
    gate.touch()
    assert queued.result(timeout=20) == running.result(timeout=20)  # queued work still runs
    pool.shutdown()


@pytest.mark.timeout(30)
def test_a_process_pool_shutdown_that_cancels_futures_cancels_only_the_queued(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    pool = plait.Pool(backend="process", workers=1)
    running = pool.submit(R.wait_for_file, str(gate))
    queued = [pool.submit(R.pid, None) for _ in range(3)]
    assert wait_until(running.running, 10)
    closer = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    closer.start()
    try:
        assert wait_until(lambda: all(f.done() for f in queued), 10)
        assert all(f.cancelled() for f in queued) and not running.done()
    finally:
        gate.touch()
        closer.join(20)
    assert not closer.is_alive() and running.result(timeout=0) > 0  # the running one ends


@pytest.mark.timeout(30)
def test_a_run_whose_template_died_meanwhile_ends_normally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's end is told to the template (it may import again): a template gone during
    the run (killed) costs nothing then; the next run starts a new one."""
    monkeypatch.setenv("PLAIT_IDLE_TIMEOUT", "0")  # each run forks its worker anew
    plait.shutdown()  # a template of this test's own
    (template,) = plait.map(R.kill_the_template, [None], backend="process", workers=1)
    assert not pid_alive(template)  # dead (a zombie until plait needs a template again)
    (parent,) = plait.map(R.parent_pid, [None], backend="process", workers=1)
    assert parent == _template.pid() not in (None, template)
    assert process_state(template) is None  # reaped


# --- what the template imports for a run's function ------------------------------------------


@pytest.mark.timeout(30)
def test_the_template_imports_the_package_a_partials_function_imports_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``functools.partial`` is looked through, and a module imported from a listed package
    (``from sqlite3 import dbapi2``) counts as that package."""
    import functools

    monkeypatch.delitem(sys.modules, "sqlite3", raising=False)  # as if never imported here
    monkeypatch.delitem(sys.modules, "_needs_sub_tasks", raising=False)
    plait.shutdown()
    _template.prestart()  # a template started before the program imported sqlite3
    needs = importlib.import_module("_needs_sub_tasks")
    with plait.Pool(backend="process", workers=1, max_tasks_per_worker=1) as pool:
        assert pool.submit(functools.partial(needs.sqlite_major)).result(timeout=20) == 3
        # a worker forked for this task, during the run: the template imported sqlite3 first
        assert pool.submit(R.loaded, ["sqlite3"]).result(timeout=20) == ["sqlite3"]


@pytest.mark.timeout(30)
def test_the_template_imports_before_a_run_only_what_its_function_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the program loaded after the template started, and the function's module does
    not import, waits for the run's end: the run's workers do not have it."""
    monkeypatch.delitem(sys.modules, "sqlite3", raising=False)
    plait.shutdown()
    _template.prestart()
    importlib.import_module("sqlite3")  # the program has it now; the task's module does not
    with plait.Pool(backend="process", workers=1, max_tasks_per_worker=1) as pool:
        assert pool.submit(R.loaded, ["sqlite3"]).result(timeout=20) == []


def _holds_a_lock() -> Callable[[object], object]:
    lock = threading.Lock()
    return lambda _: lock


def test_a_function_or_initializer_that_cannot_be_pickled_is_named_with_the_reason() -> None:
    for what, call in (
        ("function", lambda: plait.map(_holds_a_lock(), [1], backend="process")),
        ("initializer", lambda: plait.Pool(backend="process", initializer=_holds_a_lock())),
    ):
        with pytest.raises(plait.SerializationError) as caught:
            call()
        cause = caught.value.__cause__
        assert type(cause) is TypeError
        assert str(caught.value) == (
            f"the {what} cannot be pickled for the process backend (TypeError: {cause}); "
            "define it at module level without unpicklable state, or use backend='thread'"
        )


def test_a_callable_whose_attributes_raise_runs_without_the_hint() -> None:
    plait.shutdown()
    _template.prestart()  # the hint is asked for only while a template runs
    assert plait.map(R.Odd(), [1, 2], backend="process", workers=1) == [2, 4]


def test_a_thread_run_starts_no_template() -> None:
    plait.shutdown()
    assert plait.map(abs, [-1], backend="thread") == [1]
    with plait.Pool(backend="thread", workers=1) as pool:
        assert pool.submit(abs, -2).result(timeout=20) == 2
    assert _template.pid() is None
    assert plait.map(abs, [-1], backend="process", workers=1) == [1]
    assert _template.pid() is not None  # (where fork is missing this test would not hold)


class _Exited(Exception):
    """``os._exit`` of the template's loop, caught here instead of ending the test process."""


@pytest.mark.timeout(20)
def test_the_template_imports_while_idle_and_holds_its_imports_during_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop imports its list one module at a time, in order, while no request waits; after
    ``need`` (a run starts) it holds the rest, however long it is idle, until ``after_run``;
    when its lifeline closes it leaves with status 0."""
    (tmp_path / "tq_log.py").write_text("ORDER: list[str] = []\n")
    mods = ("tq_a", "tq_b", "tq_c", "tq_d")
    for name in mods:
        (tmp_path / f"{name}.py").write_text("import tq_log\ntq_log.ORDER.append(__name__)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import tq_log  # type: ignore[import-not-found]

    def exit_here(code: int) -> None:
        raise _Exited(code)

    served = _Server(["tq_a", "tq_b"])
    served.parent.sendall(_names_message(b"n", "tq_c"))  # before the loop starts: answered first
    seen: dict[str, list[str]] = {}
    # each time the loop reaps, whether its wakeup pipe still holds a signal: it must have
    # read it first, or the next poll returns at once, again and again
    woken: list[bool] = []
    reap = served.server._reap

    def reap_after_the_wakeup() -> None:
        woken.append(bool(select.select([served.server.wake_r], [], [], 0)[0]))
        reap()

    served.server._reap = reap_after_the_wakeup

    def parent() -> None:
        if wait_until(lambda: "tq_c" in tq_log.ORDER, 10):
            time.sleep(0.3)  # idle, but a run holds the cores: nothing more is imported
            seen["held"] = list(tq_log.ORDER)
        reaped = len(woken)
        os.kill(os.getpid(), signal.SIGCHLD)  # as when a worker ends: the loop wakes and reaps
        wait_until(lambda: len(woken) > reaped, 10)
        served.parent.sendall(_names_message(b"p", "tq_d"))  # the run ended
        wait_until(lambda: "tq_d" in tq_log.ORDER, 10)
        served.end_lifeline()

    feeder = threading.Thread(target=parent, daemon=True)
    try:
        monkeypatch.setattr(os, "_exit", exit_here)
        feeder.start()
        with pytest.raises(_Exited) as exited:
            served.server.serve()
        monkeypatch.undo()
        feeder.join(10)
        assert exited.value.args == (0,)
        assert seen.get("held") == ["tq_c"]
        assert woken and not any(woken)
        assert tq_log.ORDER == ["tq_c", "tq_a", "tq_b", "tq_d"]
    finally:
        monkeypatch.undo()
        served.close()
        for name in ("tq_log", *mods):
            sys.modules.pop(name, None)


def _child(code: str) -> int:
    """A child of this process that Popen does not know (the template's server reaps it)."""
    return os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ))


@pytest.mark.timeout(30)
def test_the_template_reports_each_ended_worker_once_on_its_status_pipe() -> None:
    """It reaps every child that ended, writes each known one's exit code to that worker's
    status pipe and closes it; a child it does not know, or a pipe nobody reads any more, costs
    nothing; one still running stays known."""
    plait.shutdown()  # no template: this test's children are this process's only ones
    pipes = [os.pipe() for _ in range(3)]
    ended = _child("import os; os._exit(3)")
    gone_reader = _child("import os; os._exit(4)")
    unknown = _child("pass")
    running = _child("import time; time.sleep(30)")
    try:
        with _template_server([]) as (_, server):
            os.close(pipes[1][0])  # the parent dropped this worker's Forked
            server.status.update({ended: pipes[0][1], gone_reader: pipes[1][1]})
            server.status[running] = pipes[2][1]
            for pid in (ended, gone_reader, unknown):
                assert wait_until(lambda pid=pid: process_state(pid) == "Z", 10)
            server._reap()
            assert server.status == {running: pipes[2][1]}
            assert all(process_state(pid) is None for pid in (ended, gone_reader, unknown))
            assert os.read(pipes[0][0], 8) == struct.pack("!i", 3)
            assert os.read(pipes[0][0], 8) == b""  # written once, then closed
            os.kill(running, signal.SIGKILL)
            assert wait_until(lambda: process_state(running) == "Z", 10)
            server._reap()
            assert server.status == {} and os.read(pipes[2][0], 8) == struct.pack(
                "!i", -signal.SIGKILL
            )
            server.status[ended] = os.dup(pipes[2][0])  # known, yet no child is left at all
            server._reap()  # returns: nothing to wait for
            os.close(server.status.pop(ended))
    finally:
        for pid in (ended, gone_reader, unknown, running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for r, _ in pipes:
            with contextlib.suppress(OSError):
                os.close(r)


def test_the_template_leaves_with_status_0_when_the_parent_closes_its_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exit_here(code: int) -> None:
        raise _Exited(code)

    served = _Server([])
    try:
        served.parent.shutdown(socket.SHUT_WR)
        monkeypatch.setattr(os, "_exit", exit_here)
        with pytest.raises(_Exited) as exited:
            served.server.serve()
        monkeypatch.undo()
        assert exited.value.args == (0,)
    finally:
        monkeypatch.undo()
        served.close()


# --- what a task that dies, runs too long or is stopped reports -------------------------------


def test_a_task_that_kills_its_worker_fails_saying_how_and_the_worker_is_replaced() -> None:
    outcomes = plait.map(
        T.exit_on_three, range(5), backend="process", workers=1, chunksize=1, errors="collect"
    )
    error = outcomes[3].error
    assert type(error) is plait.WorkerCrashed and error.exitcode == 1
    assert str(error) == "the worker process running this task died (exit code 1); it was replaced"
    assert [o.value for o in outcomes if o.error is None] == [0, 1, 4, 16]


@pytest.mark.timeout(30)
def test_a_task_past_its_timeout_fails_saying_so(tmp_path: Path) -> None:
    gate = tmp_path / "never"  # never made: the task runs until it is killed
    outcomes = plait.map(
        R.wait_for_file, [str(gate)], backend="process", workers=1, timeout=0.5, errors="collect"
    )
    error = outcomes[0].error
    assert type(error) is plait.TaskTimeout
    assert str(error) == (
        "the task ran longer than its timeout of 0.5 s; its worker process was killed and replaced"
    )


@pytest.mark.timeout(30)
def test_a_pool_task_stopped_with_its_pool_fails_saying_so(tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "never"
    with pytest.raises(KeyError), plait.Pool(backend="process", workers=1) as pool:
        running = pool.submit(R.started_then_wait_for_file, (str(started), str(gate)))
        assert wait_until(started.exists, 10)  # in its worker (a task still queued is cancelled)
        raise KeyError("leaving")
    error = running.exception(timeout=10)
    assert type(error) is plait.WorkerCrashed
    assert (str(error), error.exitcode) in {
        ("the run was stopped: its workers were killed", -signal.SIGKILL),  # seen dead
        ("the run was stopped: its worker was killed", None),  # seen stopped first
    }


def test_the_template_imports_concurrent_futures_for_concurrent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``concurrent`` is on the list for ``concurrent.futures`` (the package alone is empty)."""
    import concurrent.futures

    monkeypatch.delitem(sys.modules, "concurrent.futures")  # as if never imported here
    monkeypatch.delattr(concurrent, "futures")
    with _template_server([]) as (parent, server):
        parent.sendall(_names_message(b"n", "concurrent"))
        assert server._answer() is True
        assert "concurrent.futures" in sys.modules


def test_a_worker_stopped_leaves_by_itself_unless_still_starting_and_stops_once() -> None:
    from plait._backends._process import FunctionHandle, WorkerProcess

    ready = WorkerProcess(None)
    handle = FunctionHandle(1, bytes(cloudpickle.dumps(abs)))
    result = ready.call(handle, (pickle.dumps([-3]), 1, False), None)
    assert result is not None and result.values == [3]
    starting = WorkerProcess(None)  # not waited for: still starting, or ready and idle
    for worker in (ready, starting):
        worker.stop()
    assert ready.popen.returncode == 0  # it read the end of its socket and left
    assert starting.popen.returncode == -signal.SIGKILL  # killed: no run of the user's there
    r, w = os.pipe()  # may take the numbers of the descriptors stop() closed
    try:
        ready.stop()  # idempotent: closes nothing more
        starting.stop()
        os.fstat(r)
        os.fstat(w)
    finally:
        os.close(r)
        os.close(w)
    assert not ready.alive() and not starting.alive()


@pytest.mark.timeout(30)
def test_an_idle_worker_dead_before_its_template_reports_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker killed while idle is a zombie until its template reaps it and reports its
    exit (here the template is stopped, so it stays one): /proc shows it dead at once, and
    the next task goes to a new worker instead of failing on the dead one."""
    plait.shutdown()
    with plait.Pool(backend="process", workers=1) as pool:
        worker = pool.submit(R.pid, None).result(timeout=20)
        template = _template.pid()
        assert template is not None and os.getppid() != template
        monkeypatch.setenv("PLAIT_PROCESS_START", "spawn")  # its replacement: not forked
        os.kill(template, signal.SIGSTOP)
        try:
            os.kill(worker, signal.SIGKILL)
            assert wait_until(lambda: process_state(worker) == "Z", 10)
            assert pool.submit(R.pid, None).result(timeout=20) not in (worker, None)
        finally:
            os.kill(template, signal.SIGCONT)
    plait.shutdown()


@pytest.mark.parametrize(
    "options",
    [{"initializer": os.getpid}, {"max_tasks_per_worker": 100}, {}],
    ids=["init", "recycle", "pool"],
)
def test_a_private_run_never_takes_an_idle_shared_worker(options: dict[str, Any]) -> None:
    """Runs with an initializer or recycling, and pools, start workers of their own: an idle
    shared worker ran no initializer and counts no tasks."""
    plait.shutdown()
    plait.map(R.pid, range(2), backend="process", workers=2, chunksize=1)
    shared = set(_reuse.idle_pids())  # the run's workers, idle now
    assert shared
    if options:
        private = set(plait.map(R.pid, range(2), backend="process", workers=2, **options))
    else:
        with plait.Pool(backend="process", workers=2) as pool:
            private = set(pool.map(R.pid, range(2)))
    assert not private & shared and set(_reuse.idle_pids()) == shared
    plait.shutdown()


@pytest.mark.timeout(30)
def test_items_rerun_after_a_crash_fail_with_the_pool_broken_meanwhile(tmp_path: Path) -> None:
    """A chunk whose worker died is re-run item by item on new workers; once a new worker
    cannot start (its initializer fails), the pool is broken and every item left fails with
    that, without another start."""
    import functools

    outcomes = plait.map(
        R.die_on_one, range(3), backend="process", workers=1, chunksize=3, errors="collect",
        initializer=functools.partial(R.start_once, str(tmp_path)),
    )
    errors = [o.error for o in outcomes]
    assert all(isinstance(e, concurrent.futures.BrokenExecutor) for e in errors), errors
    assert all(type(e.__cause__) is RuntimeError for e in errors), errors
    assert errors[1] is errors[2]  # the pool's one error, not a new start's


def test_an_argument_that_cannot_be_pickled_fails_only_its_item_saying_why() -> None:
    lock = threading.Lock()
    outcomes = plait.map(
        T.identity, [1, lock, 3], backend="process", workers=1, chunksize=3, errors="collect"
    )
    assert [o.value for o in outcomes if o.error is None] == [1, 3]
    error = outcomes[1].error
    assert type(error) is plait.SerializationError
    assert str(error) == (
        "argument lock cannot be pickled for the process backend "
        "(TypeError: cannot pickle '_thread.lock' object); pass plain data or use "
        "backend='thread'"
    )


@pytest.mark.timeout(30)
def test_a_worker_that_dies_while_starting_breaks_the_pool_with_one_error(
    tmp_path: Path,
) -> None:
    """Its WorkerCrashed is the pool's error from then on: every task of the run fails with
    that one error, not with a new one found on the same dead worker."""
    import functools

    import _proc_tasks as P

    outcomes = plait.map(
        T.square, range(3), backend="process", workers=1, chunksize=1, errors="collect",
        initializer=functools.partial(P.dying_init, str(tmp_path)),
    )
    errors = [o.error for o in outcomes]
    assert type(errors[0]) is plait.WorkerCrashed, errors
    assert errors[0] is errors[1] is errors[2]
