"""What a Dask worker runs for plait: one chunk of items, serially, as one Dask task.

A chunk is one ``client.submit`` of ``run_remote``: tiny tasks do not become one Dask task each.
Everything crosses as bytes that plait pickles itself (pickle first, cloudpickle for what the
user's ``__main__`` defines), so plait decides what happens to what cannot be pickled: an
argument fails its item before it is sent, a result or an error fails its item after it ran.
The function is pickled once per run and unpickled once per worker process (a small cache).

This module runs on the workers: it imports nothing from ``distributed``.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .._exceptions import SerializationError
from ._base import run_chunk
from ._wire import decode_error, error_record

_MAX_CACHED_FUNCTIONS = 64
_functions: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()
_functions_lock = threading.Lock()  # a worker runs several tasks at once in its threads

# What the worker sends back: (pickled values, {i: ErrorRecord}, elapsed seconds), the error
# records as the process backend's (_wire: the error with the worker's traceback as its cause).


def dumps(obj: Any) -> bytes:
    """pickle; cloudpickle for what pickle cannot carry (the user's ``__main__``, lambdas).
    cloudpickle tags classes it sends by value, so each side gets its own class back."""
    try:
        data = pickle.dumps(obj, protocol=5)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    import cloudpickle

    return bytes(cloudpickle.dumps(obj, protocol=5))


def _function(fn_id: str, blob: bytes) -> Callable[[Any], Any]:
    with _functions_lock:
        fn = _functions.get(fn_id)
        if fn is None:
            fn = _functions[fn_id] = pickle.loads(blob)
            if len(_functions) > _MAX_CACHED_FUNCTIONS:
                _functions.popitem(last=False)
        return fn


def run_remote(fn_id: str, fn_blob: bytes, items_blob: bytes) -> bytes:
    """The Dask task: run the chunk, return its outcomes as bytes (never raises for a task)."""
    fn = _function(fn_id, fn_blob)
    result = run_chunk(fn, pickle.loads(items_blob), stops=False)
    errors = {i: error_record(exc) for i, exc in (result.errors or {}).items()}
    values = result.values
    try:
        blob = dumps(values)
    except Exception:
        values = list(values)
        for i, value in enumerate(values):
            if i not in errors and not _picklable(value):
                values[i] = None
                errors[i] = error_record(
                    SerializationError(
                        f"the task's result ({type(value).__name__}) cannot be pickled back "
                        "from the Dask worker; return plain data"
                    )
                )
        blob = dumps(values)
    return pickle.dumps((blob, errors, result.elapsed_s), protocol=5)


def _picklable(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


def decode(reply: bytes) -> tuple[list[Any], dict[int, BaseException] | None, float]:
    """The worker's reply, read on the caller's side: values, errors with their traceback."""
    blob, records, elapsed = pickle.loads(reply)
    values = pickle.loads(blob)
    errors = {i: decode_error(record) for i, record in records.items()}
    return values, errors or None, elapsed
