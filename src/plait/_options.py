"""The keyword options shared by map / imap / amap / Pool, checked once with clear messages."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ._backends import NAMES
from ._results import ERROR_MODES

BACKEND_CHOICES = ("auto", *NAMES)


class Options(NamedTuple):
    backend: str = "auto"
    workers: int | None = None
    ordered: bool = True
    chunksize: int | None = None
    errors: str = "raise"
    progress: bool = False
    kind: str | None = None  # "io" or "cpu": the caller's hint to backend="auto"
    explain: bool = False  # log the automatic choice and its reason
    # Policies (see _policies.py); None or 0 means off.
    timeout: float | None = None
    deadline: float | None = None
    retries: int = 0
    retry_on: Any = None
    rate: str | float | None = None
    burst: int = 1
    concurrency: int | None = None
    limit_key: Callable[[Any], Any] | None = None
    clock: Any = None
    # Worker set-up, for the thread and process backends.
    initializer: Callable[[], Any] | None = None
    max_tasks_per_worker: int | None = None


KINDS = ("io", "cpu")
_NAMES = Options._fields


def check_backend(backend: Any) -> str:
    if backend in BACKEND_CHOICES:
        return str(backend)
    close = difflib.get_close_matches(str(backend), BACKEND_CHOICES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    choices = ", ".join(repr(name) for name in BACKEND_CHOICES)
    raise ValueError(f"unknown backend {backend!r}{hint}; choose one of {choices}")


def check_positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None (automatic), got {value!r}")
    return value


def _check_seconds(name: str, value: Any) -> float | None:
    """A finite, positive number of seconds; None (not inf) means no limit."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # also refuses NaN
    ):
        raise ValueError(
            f"{name} must be a positive, finite number of seconds, or None for no limit; "
            f"got {value!r}"
        )
    return float(value)


def options(**given: Any) -> Options:
    """Check the keyword options; unknown names get a suggestion."""
    for name in given:
        if name not in _NAMES:
            close = difflib.get_close_matches(name, _NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"unknown option {name!r}{hint} (options: {', '.join(_NAMES)})")
    opts = Options(**given)
    if opts.errors not in ERROR_MODES:
        raise ValueError(f"errors must be 'raise', 'collect' or 'skip', got {opts.errors!r}")
    if opts.kind is not None and opts.kind not in KINDS:
        raise ValueError(f"kind must be 'io', 'cpu' or None, got {opts.kind!r}")
    if isinstance(opts.retries, bool) or not isinstance(opts.retries, int) or opts.retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {opts.retries!r}")
    if opts.rate is not None:
        from ._ratelimit import Rate

        Rate.parse(opts.rate)  # now, not at the first task
    if opts.clock is not None and not all(
        callable(getattr(opts.clock, name, None)) for name in ("now", "sleep")
    ):
        raise TypeError("clock must have now() and an async sleep(seconds)")
    for name in ("initializer", "limit_key"):
        if getattr(opts, name) is not None and not callable(getattr(opts, name)):
            raise TypeError(f"{name} must be callable, got {type(getattr(opts, name)).__name__}")
    return opts._replace(
        backend=check_backend(opts.backend),
        workers=check_positive("workers", opts.workers),
        chunksize=check_positive("chunksize", opts.chunksize),
        concurrency=check_positive("concurrency", opts.concurrency),
        burst=check_positive("burst", opts.burst) or 1,
        max_tasks_per_worker=check_positive("max_tasks_per_worker", opts.max_tasks_per_worker),
        timeout=_check_seconds("timeout", opts.timeout),
        deadline=_check_seconds("deadline", opts.deadline),
        ordered=bool(opts.ordered),
        progress=bool(opts.progress),
        explain=bool(opts.explain),
    )


def check_callable(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(
            f"fn must be callable, got {type(fn).__name__}; the call is plait.map(fn, items)"
        )


def check_iterable(items: Any) -> None:
    if not (
        hasattr(items, "__iter__") or hasattr(items, "__aiter__") or hasattr(items, "__getitem__")
    ):
        raise TypeError(
            f"items must be iterable (a list, range, generator...), got {type(items).__name__}"
        )
