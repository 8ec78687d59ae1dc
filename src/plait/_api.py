"""The public functions: short, they check the options and hand a plan to a driver.

The options are typed once, in ``_options.RunOptions``; the overloads below give the result
type: ``list[R]``, or ``list[Outcome[R]]`` with ``errors="collect"``, where ``R`` is what ``fn``
returns (awaited, for a coroutine function). help() shows the options from ``_options`` too.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args, overload

from . import _backends
from ._backends._early import start_early
from ._options import (
    DEFAULTS,
    DOCS,
    BackendName,
    Kind,
    RunOptions,
    check_callable,
    check_iterable,
    options,
)
from ._outcome import Outcome
from ._results import ERROR_MODES
from ._stream import AsyncResults

if TYPE_CHECKING:
    from typing import Unpack

    from ._options import ErrorMode

T = TypeVar("T")
R = TypeVar("R")

Items = Iterable[T] | AsyncIterable[T]
Raised = Literal["raise", "skip"]


@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Raised = ...,
    **options: Unpack[RunOptions],
) -> list[R]: ...
@overload
def map(
    fn: Callable[[T], R], items: Items[T], /, *, errors: Raised = ..., **options: Unpack[RunOptions]
) -> list[R]: ...
@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> list[Outcome[R]]: ...
@overload
def map(
    fn: Callable[[T], R],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> list[Outcome[R]]: ...
@overload
def map(
    fn: Callable[[T], object],
    items: Items[T],
    /,
    *,
    errors: ErrorMode,
    **options: Unpack[RunOptions],
) -> list[Any]: ...
def map(fn: Callable[[Any], Any], items: Any, /, **opts: Any) -> list[Any]:
    """Run ``fn`` on each item at once and return the results as a list, in input order."""
    check_callable(fn)
    check_iterable(items)
    settings = options(**opts)
    start_early(settings.backend)
    from ._run import collect, make_plan

    return collect(make_plan(fn, items, settings, None))


@overload
def imap(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Raised = ...,
    **options: Unpack[RunOptions],
) -> Generator[R, None, None]: ...
@overload
def imap(
    fn: Callable[[T], R], items: Items[T], /, *, errors: Raised = ..., **options: Unpack[RunOptions]
) -> Generator[R, None, None]: ...
@overload
def imap(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> Generator[Outcome[R], None, None]: ...
@overload
def imap(
    fn: Callable[[T], R],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> Generator[Outcome[R], None, None]: ...
@overload
def imap(
    fn: Callable[[T], object],
    items: Items[T],
    /,
    *,
    errors: ErrorMode,
    **options: Unpack[RunOptions],
) -> Generator[Any, None, None]: ...
def imap(fn: Callable[[Any], Any], items: Any, /, **opts: Any) -> Generator[Any, None, None]:
    """Run ``fn`` on each item at once, yielding results as a stream (``close()`` stops it).

    Input is pulled lazily: at most a small window (2 x workers chunks) is read ahead of what
    the consumer has taken, so infinite generators work.
    """
    check_callable(fn)
    check_iterable(items)
    settings = options(**opts)
    start_early(settings.backend)
    from ._run import make_plan, run_sync

    return cast(Generator[Any, None, None], run_sync(make_plan(fn, items, settings, None)))


@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Raised = ...,
    **options: Unpack[RunOptions],
) -> AsyncResults[R]: ...
@overload
def amap(
    fn: Callable[[T], R], items: Items[T], /, *, errors: Raised = ..., **options: Unpack[RunOptions]
) -> AsyncResults[R]: ...
@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> AsyncResults[Outcome[R]]: ...
@overload
def amap(
    fn: Callable[[T], R],
    items: Items[T],
    /,
    *,
    errors: Literal["collect"],
    **options: Unpack[RunOptions],
) -> AsyncResults[Outcome[R]]: ...
@overload
def amap(
    fn: Callable[[T], object],
    items: Items[T],
    /,
    *,
    errors: ErrorMode,
    **options: Unpack[RunOptions],
) -> AsyncResults[Any]: ...
def amap(fn: Callable[[Any], Any], items: Any, /, **opts: Any) -> AsyncResults[Any]:
    """``async for result in plait.amap(fn, items)``, or ``await plait.amap(fn, items)`` for
    the list: the native async entry.

    Runs the scheduler on the running loop; ``items`` may be an async iterable too.
    """
    check_callable(fn)
    check_iterable(items)
    settings = options(**opts)
    if settings.backend != "auto" and _backends.info(settings.backend).starts_slowly:
        _backends.info(settings.backend).check_available()  # a missing extra: at the call
        from ._run import run_async_planned_on_thread

        return AsyncResults(cast(Any, run_async_planned_on_thread(fn, items, settings)))
    from ._run import make_plan, run_async

    plan = make_plan(fn, items, settings, None)
    return AsyncResults(run_async(plan), plan.decision)


# --- help(): every option with its type and default ------------------------------------------


class _Shown:
    """An annotation help() prints as written (it quotes plain strings)."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def _literal(values: Iterable[str]) -> str:
    return "Literal[" + ", ".join(f'"{value}"' for value in values) + "]"


_SPELLED_OUT = {  # aliases help() shows in full
    "BackendName": _literal(get_args(BackendName)),
    "Kind": _literal(get_args(Kind)),
    "RetryOn": "type[BaseException] | tuple[type[BaseException], ...] "
    "| Callable[[BaseException], bool]",
}


def _annotation(name: str) -> _Shown:
    if name == "errors":
        return _Shown(_literal(ERROR_MODES))
    hint = RunOptions.__annotations__[name]
    text = str(getattr(hint, "__forward_arg__", hint))  # a ForwardRef, or its text
    for alias, spelled in _SPELLED_OUT.items():
        text = text.replace(alias, spelled)
    return _Shown(text)


def _document(function: Callable[..., Any], returns: str) -> None:
    """Give ``function`` the signature and option list help() and IDEs show."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_ONLY
    parameters = [
        inspect.Parameter("fn", positional, annotation=_Shown("Callable[[T], R]")),
        inspect.Parameter(
            "items", positional, annotation=_Shown("Iterable[T] | AsyncIterable[T]")
        ),
        *(
            inspect.Parameter(name, keyword, default=default, annotation=_annotation(name))
            for name, default in zip(DEFAULTS._fields, DEFAULTS, strict=True)
        ),
    ]
    signature = inspect.Signature(parameters, return_annotation=_Shown(returns))
    setattr(function, "__signature__", signature)  # noqa: B010 - mypy knows no such attribute
    summary = (function.__doc__ or "").rstrip()
    function.__doc__ = f"{summary}\n\n    Options (keyword-only):\n{_OPTION_LINES}"


def _option_lines() -> str:
    width = max(len(name) for name in DOCS) + 2
    newline = "\n" + " " * (6 + width)
    return "".join(
        f"      {name:{width}}" + doc.replace("\n", newline) + "\n" for name, doc in DOCS.items()
    )


_OPTION_LINES = _option_lines()
_document(map, "list[R] | list[Outcome[R]]")
_document(imap, "Iterator[R] | Iterator[Outcome[R]]")
_document(amap, "AsyncResults[R] | AsyncResults[Outcome[R]]")
