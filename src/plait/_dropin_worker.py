"""The worker side of plait.ProcessPoolExecutor (and the initializer both drop-ins share).

Kept light: a process worker imports only this, not the executors.
"""

from __future__ import annotations

import functools
import os
import pickle
import traceback
import types
from collections.abc import Callable
from typing import Any


def dumps(obj: Any) -> bytes:
    """cloudpickle (lambdas and ``__main__`` functions travel by value), except that a method
    bound to a class goes by reference as plain pickle sends it (cloudpickle would send its
    function by value, and the worker's traceback would lose the source lines)."""
    import io

    buffer = io.BytesIO()
    _pickler()(buffer, protocol=5).dump(obj)
    return buffer.getvalue()


@functools.cache
def _pickler() -> Any:
    import cloudpickle

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is types.MethodType and isinstance(obj.__self__, type):
                name = obj.__func__.__name__
                if getattr(obj.__self__, name, None) == obj:
                    return getattr, (obj.__self__, name)
            return super().reducer_override(obj)

    return Pickler


def initialize(fn: Callable[..., Any], args: tuple[Any, ...], *_setup: Any) -> None:
    """Run the user's initializer as the stdlib does: its failure is logged, then raised."""
    try:
        fn(*args)
    except BaseException:
        import logging

        logging.getLogger("concurrent.futures").critical("Exception in initializer:", exc_info=True)
        raise


class AuthKey:
    """Gives a worker the parent's multiprocessing authkey, which multiprocessing's own children
    inherit: ``Manager()`` proxies passed as arguments can then connect back."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __reduce__(self) -> tuple[Callable[[bytes], None], tuple[bytes]]:
        return _set_authkey, (self.key,)


def _set_authkey(key: bytes) -> None:
    import multiprocessing.process

    process = multiprocessing.process.current_process()
    if bytes(process.authkey) != key:
        process.authkey = key


class _WithTraceback:
    """The worker's traceback travels as text, attached as ``__cause__`` like the stdlib's."""

    def __init__(self, exc: BaseException) -> None:
        self.tb = '\n"""\n' + "".join(traceback.format_exception(exc)) + '"""'
        exc.__traceback__ = None
        self.exc = exc

    def __reduce__(self) -> tuple[Any, tuple[BaseException, str]]:
        return _rebuild, (self.exc, self.tb)


def _rebuild(exc: BaseException, tb: str) -> BaseException:
    from concurrent.futures.process import _RemoteTraceback

    exc.__cause__ = _RemoteTraceback(tb)  # type: ignore[arg-type]  # it takes the text
    return exc


def run_pickled(blob: bytes) -> bytes:
    """In the worker: one task, whose outcome comes back pickled here, so that any failure to
    pickle it reaches the caller with its own type (as the stdlib's workers report it)."""
    try:
        _, fn, args, kwargs = pickle.loads(blob)  # the first item sets the authkey, if any
    except Exception:
        raise
    except BaseException:  # an exit while unpickling the task ends the worker, as in the stdlib
        os._exit(1)
    try:
        outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # SystemExit too: the stdlib hands it to the future
        outcome = (False, _WithTraceback(exc))
    del fn, args, kwargs  # arguments are released before the result is sent, as in the stdlib
    try:
        return pickle.dumps(outcome, protocol=5)
    except BaseException as exc:
        return pickle.dumps((False, _WithTraceback(exc)), protocol=5)


def process_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]
