"""The keyword options shared by map / imap / amap / explain / Pool: their types (for mypy and
IDEs), defaults, one-line docs and run-time checks, each kept here once.

    RunOptions   TypedDict of the options of plait.map & co. (``errors`` is apart: the
                 overloads choose the result type by it); TaskOptions, its part Pool's
                 methods take too
    Options      the checked options of one call, with their defaults
    DOCS         one line per option, for help() and the docs
    options()    checks what a caller gave, with messages that say what to write
"""

from __future__ import annotations

import difflib
import math
import textwrap
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

from ._backends import NAMES
from ._checks import is_count
from ._results import ERROR_MODES

if TYPE_CHECKING:  # not at run time: _clock imports asyncio
    from ._clock import Clock
    from ._retry import RetryOn

BackendName = Literal["auto", "inline", "thread", "process", "asyncio", "dask"]
ErrorMode = Literal["raise", "collect", "skip"]
Kind = Literal["io", "cpu"]

BACKEND_CHOICES = ("auto", *NAMES)
KINDS = ("io", "cpu")


class TaskOptions(TypedDict, total=False):
    """The options of one run that ``Pool.map`` / ``imap`` / ``amap`` take as well."""

    ordered: bool
    chunksize: int | None
    progress: bool
    timeout: float | None
    deadline: float | None
    retries: int
    retry_on: RetryOn | None
    rate: str | float | None
    burst: int
    concurrency: int | None
    limit_key: Callable[[Any], Hashable] | None
    clock: Clock | None


class RunOptions(TaskOptions, total=False):
    """Every option of ``plait.map`` / ``imap`` / ``amap`` but ``errors``."""

    backend: BackendName
    workers: int | None
    kind: Kind | None
    explain: bool
    initializer: Callable[[], object] | None
    max_tasks_per_worker: int | None


class Options(NamedTuple):
    """One call's options, checked; the order is the order help() shows them in."""

    backend: str = "auto"
    workers: int | None = None
    ordered: bool = True
    chunksize: int | None = None
    errors: str = "raise"
    progress: bool = False
    kind: str | None = None
    explain: bool = False
    # Policies (see _policies.py); None or 0 means off.
    timeout: float | None = None
    deadline: float | None = None
    retries: int = 0
    retry_on: RetryOn | None = None
    rate: str | float | None = None
    burst: int = 1
    concurrency: int | None = None
    limit_key: Callable[[Any], Hashable] | None = None
    clock: Clock | None = None
    # Worker set-up, for the thread and process backends.
    initializer: Callable[[], object] | None = None
    max_tasks_per_worker: int | None = None


DEFAULTS = Options()
# The options that turn a policy on (the others tune one); None or 0 means off.
POLICIES = ("timeout", "deadline", "retries", "rate", "concurrency")


def policies_given(opts: Options) -> tuple[str, ...]:
    """The names of the policies this call turns on, in ``POLICIES`` order."""
    return tuple(name for name in POLICIES if getattr(opts, name) not in (None, 0))

_NAMES = Options._fields

DOCS = {  # one line each (a second after "\n" where needed), as help() shows them
    "backend": "\n".join(textwrap.wrap(
        '"auto" measures a few calls and picks; or ' + ", ".join(f'"{n}"' for n in NAMES) + ".", 72
    )),
    "workers": "how many calls run at once (None: the backend's default).",
    "ordered": "results in input order (True) or as they complete (False).",
    "chunksize": "items per round trip to a worker (None: learned from the call time).",
    "errors": '"raise" the task\'s exception after the results before it, "collect" one\n'
    'plait.Outcome per input, or "skip" the failures.',
    "progress": "show a progress bar on stderr.",
    "kind": 'tell backend="auto" the work is "io" or "cpu" instead of measuring it.',
    "explain": "log the automatic choice and its reason.",
    "timeout": "seconds one task may run; it then fails with plait.TaskTimeout.",
    "deadline": "seconds the whole run may take; it then stops with plait.TaskTimeout.",
    "retries": "how many more times a failed task is tried, with exponential backoff.",
    "retry_on": "exception types, or a predicate of the error, that may be retried\n"
    "(None: every Exception but SerializationError).",
    "rate": 'task starts allowed: "50/s", "1000/min", "3/5s", or starts per second.',
    "burst": "how many tasks the rate lets start at once.",
    "concurrency": "at most this many tasks at once, whatever the number of workers.",
    "limit_key": "rate and concurrency apply per limit_key(item), e.g. per host.",
    "clock": "the clock of rate limits and retry backoff (plait.testing.FakeClock\n"
    "in tests).",
    "initializer": "run once in each worker thread or process before its first task.",
    "max_tasks_per_worker": "replace a worker process after this many tasks.",
}


# --- checks: one per option, each returns the value to use -----------------------------------


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
    if not is_count(value, 1):
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


def _check_errors(name: str, value: Any) -> str:
    if value not in ERROR_MODES:
        raise ValueError(f"errors must be 'raise', 'collect' or 'skip', got {value!r}")
    return str(value)


def _check_kind(name: str, value: Any) -> str | None:
    if value is not None and value not in KINDS:
        raise ValueError(f"kind must be 'io', 'cpu' or None, got {value!r}")
    return None if value is None else str(value)


def _check_retries(name: str, value: Any) -> int:
    if not is_count(value, 0):
        raise ValueError(f"retries must be an integer >= 0, got {value!r}")
    return value


def _check_retry_on(name: str, value: Any) -> Any:
    if value is not None:
        from ._retry import Retry

        Retry(retry_on=value)  # checks it now, not when the first task fails
    return value


def _check_rate(name: str, value: Any) -> Any:
    if value is not None:
        from ._ratelimit import Rate

        Rate.parse(value)  # now, not at the first task
    return value


def _check_burst(name: str, value: Any) -> int:
    return check_positive(name, value) or 1


def _check_clock(name: str, value: Any) -> Any:
    if value is not None and not all(
        callable(getattr(value, method, None)) for method in ("now", "sleep")
    ):
        raise TypeError(
            f"clock must have now() and an async sleep(seconds) (e.g. plait.testing.FakeClock), "
            f"got {type(value).__name__}"
        )
    return value


def _check_function(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    return bool(value)


def _check_backend(name: str, value: Any) -> str:
    return check_backend(value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "backend": _check_backend,
    "workers": check_positive,
    "ordered": _check_bool,
    "chunksize": check_positive,
    "errors": _check_errors,
    "progress": _check_bool,
    "kind": _check_kind,
    "explain": _check_bool,
    "timeout": _check_seconds,
    "deadline": _check_seconds,
    "retries": _check_retries,
    "retry_on": _check_retry_on,
    "rate": _check_rate,
    "burst": _check_burst,
    "concurrency": check_positive,
    "limit_key": _check_function,
    "clock": _check_clock,
    "initializer": _check_function,
    "max_tasks_per_worker": check_positive,
}


def options(**given: Any) -> Options:
    """Check the options a caller gave (the defaults need no check): an unknown name gets a
    suggestion, a wrong value a message that says what to write."""
    if not given:
        return DEFAULTS  # the common call of a tiny map: nothing to check
    for name, value in given.items():
        check = _CHECKS.get(name)
        if check is None:
            raise TypeError(_unknown(name))
        given[name] = check(name, value)
    return Options(**given)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, _NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown option {name!r}{hint} (options: {', '.join(_NAMES)})"


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
