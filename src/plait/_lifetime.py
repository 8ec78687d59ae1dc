"""What happens to an executor nobody shut down: at garbage collection, and at interpreter exit.

As with the stdlib's executors: an unreferenced executor releases its threads and processes once
the work already queued is done (its threads hold the backend, never the executor), and work
submitted to an executor still open when the script ends runs before the interpreter exits.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

_exiting = False
_registered = False
_lock = threading.Lock()


class _Owner(Protocol):
    def shutdown(self, wait: bool = True) -> None: ...

    def stop_now(self) -> None:
        """Drop queued work, kill worker processes, wait for no thread (Ctrl-C)."""
        ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(owner: _Owner, release: Callable[[], None]) -> None:
    """``release()`` (it must not block) runs when ``owner`` is collected; at interpreter exit
    ``owner.shutdown(wait=True)`` runs if it is still alive, or ``owner.stop_now()`` if the
    program is ending on a Ctrl-C (its workers do not get the signal: they must not be waited
    for)."""
    global _registered, _exiting
    finalizer = weakref.finalize(owner, release)
    finalizer.atexit = False  # exit is handled below, while threads can still finish work
    with _lock:
        _live.add(owner)
        if not _registered:
            try:
                register = getattr(threading, "_register_atexit", None)
                if register is None:  # not CPython: the plain atexit runs early enough too
                    import atexit

                    atexit.register(_at_exit)
                else:
                    register(_at_exit)  # where the stdlib's executors register theirs
            except RuntimeError:  # the interpreter is already exiting
                _exiting = True
            _registered = True


def exiting() -> bool:
    """True once the interpreter has started to exit: executors take no new work."""
    return _exiting


def _at_exit() -> None:
    global _exiting
    _exiting = True
    with _lock:
        owners = list(_live)
    interrupted = _ending_on_ctrl_c()
    for owner in owners:
        try:
            if interrupted:
                owner.stop_now()
            else:
                owner.shutdown(wait=True)
        except Exception:  # one pool's failure must not keep the others' work from finishing
            import traceback

            traceback.print_exc()


def _ending_on_ctrl_c() -> bool:
    """The program is exiting because of an unhandled KeyboardInterrupt (already printed)."""
    last = getattr(sys, "last_exc", None)  # 3.12+; sys.last_type before
    kind = type(last) if last is not None else getattr(sys, "last_type", None)
    return isinstance(kind, type) and issubclass(kind, KeyboardInterrupt)


def shutdown() -> None:
    """Release what plait keeps between calls: the idle process workers that ``plait.map``
    calls share, and the template process that forks them. They would go by themselves (idle
    timeout, interpreter exit, the parent's death); this frees them now. Running calls and
    pools are not affected; a later call starts what it needs again."""
    reuse = sys.modules.get("plait._backends._reuse")  # nothing to release if never imported
    if reuse is not None:
        reuse.release()
    template = sys.modules.get("plait._backends._template")
    if template is not None:
        template.stop()
