"""The public functions: short, they check the options and hand a plan to a driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._options import check_callable, check_iterable, options

_OPTIONS_DOC = """
    backend:   "auto" (default), "inline", "thread", "process" or "asyncio".
    workers:   how many calls run at once (None: the backend's default).
    ordered:   results in input order (default) or, if False, as they complete.
    chunksize: items per round trip to a worker (None: learned from the measured call time).
    errors:    "raise" (the task's own exception, after the results before it), "collect"
               (one plait.Outcome per input) or "skip" (successes only).
    progress:  show a progress bar on stderr.
"""


def imap(fn: Callable[..., Any], items: Iterable[Any], /, **opts: Any) -> Iterator[Any]:
    """Run ``fn`` on each item at once, yielding results as a stream.

    Input is pulled lazily: at most a small window (2 x workers chunks) is read ahead of what
    the consumer has taken, so infinite generators work.
    """
    check_callable(fn)
    check_iterable(items)
    from ._run import make_plan, run_sync

    return run_sync(make_plan(fn, items, options(**opts), None))


def map(fn: Callable[..., Any], items: Iterable[Any], /, **opts: Any) -> list[Any]:
    """Run ``fn`` on each item at once and return the results as a list."""
    check_callable(fn)
    check_iterable(items)
    from ._run import collect, make_plan

    return collect(make_plan(fn, items, options(**opts), None))


def amap(fn: Callable[..., Any], items: Any, /, **opts: Any) -> AsyncIterator[Any]:
    """``async for result in plait.amap(fn, items)``: the native async entry.

    Runs the scheduler on the running loop; ``items`` may be an async iterable too.
    """
    check_callable(fn)
    check_iterable(items)
    from ._run import make_plan, run_async

    return run_async(make_plan(fn, items, options(**opts), None))


for _function in (imap, map, amap):
    _function.__doc__ = (_function.__doc__ or "") + _OPTIONS_DOC
