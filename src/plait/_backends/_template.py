"""The template process: a clean interpreter that forks process workers on request.

Starting a Python interpreter is most of a worker's start-up. The template pays it once per
program: it is a fresh ``python _boot.py --template`` (never a fork of the user's threaded
parent: no lock held by another thread, no copy of the user's state), it imports the worker
code, then waits. For each worker the parent sends it the worker's socket, lifeline and a
status pipe (``SCM_RIGHTS``); the template forks, the child leads its own session and serves
the parent as a spawned worker would, and the template answers with the child's pid. The
template reaps its children and writes each one's exit code to its status pipe, so the parent
sees what ``Popen`` would show (``Forked``).

Workers also inherit the heavy standard-library modules that the user's program has loaded
(``asyncio``, ``concurrent.futures``, ``logging`` ...) and cloudpickle. The template starts at
the beginning of the program's first process run, with the names of the ``PRELOAD`` modules the
parent has then, and imports them while no fork request waits. When the run has pickled its
function, the parent names what unpickling it will import (``need_for``: the PRELOAD modules
the function's module imported, and cloudpickle for a function sent by value); the template
imports those at once, before it forks the run's workers (each would import them anyway, and
later workers then have them), and puts off the rest until the parent says the run ended
(``after_run``, with the names loaded since), so that no import takes a core from the run's
workers. A fork request waits for at most the one import under way. cloudpickle comes last:
only a function sent by value needs it in the worker. Only side-effect-free stdlib modules are
on the list: a third-party module may start threads on import (numpy's BLAS), which a fork must
not copy.

The template leaves when its lifeline from the parent closes (the parent died or shut plait
down); its workers have lifelines of their own. Where fork or fd passing is missing, or with
``PLAIT_PROCESS_START=spawn``, or when the template cannot start, workers are plain spawned
interpreters (``start_worker`` returns None).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from typing import Any

BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")
_PID = struct.Struct("!i")
_ANSWER_S = 30.0  # the template's start (a loaded machine) and one fork take far less
_WAIT_SLICE_S = 0.05  # how often a wait checks that the worker still exists
_REPORT_S = 1.0  # a worker dead this long without its status: the template will not report it
_LENGTH = struct.Struct("!I")
# Standard-library packages that are slow to import, start no thread and touch nothing outside
# the process when imported: the template preloads those of them the parent has loaded.
# fmt: off
PRELOAD = frozenset({
    "argparse", "ast", "asyncio", "base64", "bz2", "calendar", "concurrent", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "gzip",
    "hashlib", "heapq", "hmac", "html", "http", "inspect", "ipaddress", "json", "logging",
    "lzma", "numbers", "pathlib", "pprint", "queue", "random", "selectors", "shutil", "socket",
    "sqlite3", "statistics", "string", "tempfile", "textwrap", "tokenize", "tomllib", "typing",
    "unittest", "urllib", "uuid", "xml", "zipfile", "zlib", "zoneinfo",
})
# fmt: on


# --- the parent's side ---------------------------------------------------------------------


class Forked:
    """A worker forked by the template, seen as a ``Popen``: ``pid``, ``poll``, ``wait``,
    ``returncode``. Its exit code comes through the status pipe the template writes."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status_fd: int | None = status_fd
        self._lock = threading.Lock()  # the pool thread and a closing thread may both wait

    def poll(self) -> int | None:
        if self.returncode is None and _readable(self._status_fd, 0.0):
            self._read_status()
            if self.returncode is None and not _exists(self.pid):
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        gone_since: float | None = None
        while self.returncode is None and self._status_fd is not None:
            left = _WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
            if _readable(self._status_fd, max(0.0, min(left, _WAIT_SLICE_S))):
                self._read_status()
                break
            if not _exists(self.pid):  # dead, yet the template has not said so: stuck?
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > _REPORT_S:
                    self.returncode = -signal.SIGKILL  # unknown: nobody reported it
                    break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        if self.returncode is None:  # orphaned: init reaps it, /proc tells when
            self._wait_orphan(None if deadline is None else deadline - time.monotonic())
        assert self.returncode is not None
        return self.returncode

    def _wait_orphan(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while _exists(self.pid):
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        self.returncode = 0  # its exit code went with the template

    def _read_status(self) -> None:
        with self._lock:
            fd, self._status_fd = self._status_fd, None
            if fd is not None:
                self._take_status(fd)

    def _take_status(self, fd: int) -> None:
        try:
            data = os.read(fd, _PID.size)
        finally:
            os.close(fd)
        if len(data) == _PID.size:
            (self.returncode,) = _PID.unpack(data)
        # Else the template left before this worker (plait.shutdown, or it was killed): the
        # worker, now a child of init, still runs; wait() watches /proc for its end.

    def __del__(self) -> None:
        if self._status_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._status_fd)


def _exists(pid: int) -> bool:
    """The process runs (a zombie, dead and waiting to be reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _readable(fd: int | None, timeout: float | None) -> bool:
    if fd is None:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


class Template:
    """The parent's handle on the template process."""

    def __init__(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        lifeline_r, self._lifeline_w = os.pipe()
        child_fd = child_sock.fileno()
        first = _to_preload(set())
        self.popen = subprocess.Popen(
            [sys.executable, BOOT, "--template", str(child_fd), str(lifeline_r), *first],
            pass_fds=(child_fd, lifeline_r),
            start_new_session=True,  # Ctrl-C reaches the parent only
        )
        child_sock.close()
        os.close(lifeline_r)
        self._sock = parent_sock
        # A template that does not answer (stopped, stuck) must not hang the run: past this,
        # the request fails and the worker is spawned instead.
        self._sock.settimeout(_ANSWER_S)
        self._lock = threading.Lock()  # one request at a time
        self._preloading: set[str] = set(first)  # modules it was asked to import
        self._needed: set[str] = set()  # ... and to import before its next fork

    def fork(self, conn_fd: int, lifeline_r: int) -> Forked:
        """A worker serving ``conn_fd``; raises OSError if the template is gone."""
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._sock, [b"f"], [conn_fd, lifeline_r, status_w])
                data = _recv_exactly(self._sock, _PID.size)
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return Forked(_PID.unpack(data)[0], status_r)

    def after_run(self) -> None:
        """A run ended: the template may import again, with the PRELOAD modules this program
        loaded since."""
        loaded = _to_preload(self._preloading)
        self._preloading.update(loaded)
        self._send(b"p", loaded)

    def need(self, names: list[str]) -> None:
        """A run's function needs these modules: the template imports them before its next
        fork (they would be imported in each worker anyway) and puts off its other imports."""
        new = [name for name in names if name not in self._needed]
        if new:
            self._needed.update(new)
            self._send(b"n", new)

    def _send(self, kind: bytes, names: list[str]) -> None:
        data = " ".join(names).encode()
        with self._lock, contextlib.suppress(OSError):  # a gone template fails the next fork
            self._sock.sendall(kind + _LENGTH.pack(len(data)) + data)

    def stop(self) -> None:
        """Close the template's lifeline: it leaves (its workers do not); reap it."""
        self._sock.close()
        with contextlib.suppress(OSError):
            os.close(self._lifeline_w)
        try:
            self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def after_run() -> None:
    """A process run ended (its workers are idle or gone): tell the template, if one runs."""
    template = _template
    if template is not None:
        template.after_run()


def need_for(blob: bytes, fn: object) -> None:
    """Tell the template, if one runs, what unpickling ``fn`` (pickled as ``blob``) imports
    that it may lack: the PRELOAD modules its module has imported, and cloudpickle if it goes
    by value."""
    template = _template
    if template is None:
        return
    try:
        needed = _stdlib_imports_of(fn)
    except Exception:  # an odd callable (a __getattr__ that raises): only a hint is lost
        needed = []
    template.need([*needed, "cloudpickle"] if b"cloudpickle" in blob else needed)


def _stdlib_imports_of(fn: object) -> list[str]:
    """The PRELOAD modules that ``fn``'s module has imported (as module globals)."""
    from ._base import unwrapped  # here: the template process never needs it

    module = sys.modules.get(getattr(unwrapped(fn), "__module__", None) or "")
    names = {
        getattr(value, "__name__", "").partition(".")[0]
        for value in getattr(module, "__dict__", {}).values()
        if isinstance(value, types.ModuleType)
    }
    return [name for name in sorted(names & PRELOAD) if _from_the_stdlib(name)]


def _to_preload(asked: set[str]) -> list[str]:
    """The PRELOAD modules this program has loaded and the template was not asked for yet, in
    the order the program imported them (which its own modules are likely to need first)."""
    wanted = {name for name in PRELOAD - asked if _from_the_stdlib(name)}
    return [name for name in list(sys.modules) if name in wanted] if wanted else []


def _from_the_stdlib(name: str) -> bool:
    """The program has imported the standard library's ``name``, not a module of its own that
    shadows it (a ``json.py`` beside the script): the worker must import what the parent has."""
    module = sys.modules.get(name)
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    if origin in ("built-in", "frozen"):
        return True
    if not isinstance(origin, str):
        return False
    stdlib = _stdlib_dir()
    return os.path.commonpath([os.path.abspath(origin), stdlib]) == stdlib


@functools.cache
def _stdlib_dir() -> str:
    """Where the standard library lies (asked once: sysconfig computes it on every call)."""
    import sysconfig

    return sysconfig.get_paths()["stdlib"]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError("the template process is gone")
        data += more
    return data


_template: Template | None = None
_failures = 0
_lock = threading.Lock()
_MAX_FAILURES = 2  # template starts that may fail before plain spawns take over


def available() -> bool:
    return (
        hasattr(os, "fork")
        and hasattr(socket, "send_fds")
        and os.environ.get("PLAIT_PROCESS_START", "template") != "spawn"
    )


def prestart() -> None:
    """Start the template now if it is not running, without waiting for it: it boots while
    the caller prepares its run (pickles the function, starts threads)."""
    if available():
        _running()


def _running() -> Template | None:
    global _template
    with _lock:
        if _failures >= _MAX_FAILURES:
            return None
        if _template is not None and _template.popen.poll() is not None:
            _template.stop()  # killed from outside: release its socket and lifeline
            _template = None
        if _template is None:
            _template = Template()
        return _template


def start_worker(conn_fd: int, lifeline_r: int) -> Forked | None:
    """A worker forked from the template (started now if needed), or None: spawn one instead."""
    global _template, _failures
    if not available():
        return None
    template = _running()
    if template is None:
        return None
    try:
        return template.fork(conn_fd, lifeline_r)
    except (OSError, EOFError):
        with _lock:
            if _template is template:  # it failed (not stopped by plait.shutdown meanwhile)
                _failures += 1
                _template = None
        template.stop()
        return start_worker(conn_fd, lifeline_r)


def pid() -> int | None:
    """The template's pid while it runs (tests: it is the parent of forked workers)."""
    template = _template
    return None if template is None or template.popen.poll() is not None else template.popen.pid


def stop() -> None:
    """Stop the template (``plait.shutdown``); the next worker starts a new one."""
    global _template
    with _lock:
        template, _template = _template, None
    if template is not None:
        template.stop()


def _forget_after_fork() -> None:
    """A forked child of the user's process has its own lifetime: it starts its own template."""
    global _template, _lock
    _template, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


# --- the template's side -------------------------------------------------------------------


def main() -> None:
    """``python _boot.py --template REQUEST_FD LIFELINE_FD``: fork workers until the parent
    goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    from . import _process_worker  # noqa: F401 - imported once here, so that every worker has it

    # what the program has loaded of PRELOAD, then cloudpickle (only a function sent by value
    # needs it): imported while no fork request waits, so that the first workers have them
    _Server(int(sys.argv[2]), int(sys.argv[3]), [*sys.argv[4:], "cloudpickle"]).serve()


class _Server:
    """The template's loop: one thread (a fork copies no other thread), woken by a request,
    by the lifeline's end, or by SIGCHLD (through the wakeup fd) to reap a worker."""

    def __init__(self, request_fd: int, lifeline_fd: int, preload: list[str]) -> None:
        self.request = socket.socket(fileno=request_fd)
        self.lifeline = lifeline_fd
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.status: dict[int, int] = {}  # worker pid -> the write end of its status pipe
        self.to_import = preload  # modules to import while no request waits
        self.paused = False  # a run has the cores: imports wait until the parent says it ended
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, _ignore)  # a handler, so that the wakeup fd hears it

    def serve(self) -> None:
        poller = select.poll()
        for fd in (self.request.fileno(), self.lifeline, self.wake_r):
            poller.register(fd, select.POLLIN)
        while True:
            importing = bool(self.to_import) and not self.paused
            events = dict(_poll(poller, 0 if importing else None))
            if not events and importing:
                _import_quietly(self.to_import.pop(0))
                continue
            if self.lifeline in events:  # the parent is gone, or shut plait down
                os._exit(0)
            if self.wake_r in events:
                with contextlib.suppress(OSError):
                    os.read(self.wake_r, 4096)
            self._reap()
            if self.request.fileno() in events and not self._answer():
                os._exit(0)

    def _answer(self) -> bool:
        """Serve one request: b"f" with three fds (fork a worker), b"p" with a list of modules
        (a run ended: preload them and what was put off), or b"n" with a list (import them
        before the next fork); False when the parent closed the socket."""
        message, fds, _, _ = socket.recv_fds(self.request, 1, 3)
        if message == b"p":  # a run ended: import what was put off, and these
            self.to_import += self._names()
            self.paused = False
            return True
        if message == b"n":  # the next workers need these: now, and the rest after the run
            for name in self._names():
                _import_quietly(name)
            self.paused = True
            return True
        if message != b"f" or len(fds) != 3:
            return False
        self._fork_one(*fds)
        return True

    def _names(self) -> list[str]:
        (size,) = _LENGTH.unpack(_recv_exactly(self.request, _LENGTH.size))
        return _recv_exactly(self.request, size).decode().split()

    def _fork_one(self, conn_fd: int, lifeline_fd: int, status_fd: int) -> None:
        pid = os.fork()
        if pid == 0:
            self._become_worker(conn_fd, lifeline_fd, status_fd)
        os.close(conn_fd)
        os.close(lifeline_fd)
        self.status[pid] = status_fd
        self.request.sendall(_PID.pack(pid))
        self.paused = True  # its run starts: no import competes with its workers for the cores

    def _become_worker(self, conn_fd: int, lifeline_fd: int, status_fd: int) -> None:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (
                self.request.fileno(),
                self.lifeline,
                self.wake_r,
                self.wake_w,
                status_fd,
                *self.status.values(),
            ):
                os.close(fd)
            os.setsid()  # its own group: a timeout kills it and what its task started
            from ._process_worker import run

            run(conn_fd, lifeline_fd)
        finally:
            os._exit(1)

    def _reap(self) -> None:
        while self.status:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.status.pop(pid, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, _PID.pack(os.waitstatus_to_exitcode(status)))
                os.close(fd)


def _import_quietly(name: str) -> None:
    with contextlib.suppress(BaseException):  # a missing module only means a slower worker
        __import__(name)
        if name == "concurrent":
            __import__("concurrent.futures")


def _poll(poller: Any, timeout_ms: int | None) -> list[tuple[int, int]]:
    while True:
        try:
            return list(poller.poll(timeout_ms))
        except InterruptedError:  # pragma: no cover - retried by Python since 3.5
            continue


def _ignore(signum: int, frame: Any) -> None:
    pass
