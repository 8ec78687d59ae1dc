"""The keyword options shared by map / imap / amap / Pool, checked once with clear messages."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ._backends import NAMES
from ._results import ERROR_MODES

BACKEND_CHOICES = ("auto", *NAMES)


@dataclass(frozen=True, slots=True)
class Options:
    backend: str = "auto"
    workers: int | None = None
    ordered: bool = True
    chunksize: int | None = None
    errors: str = "raise"
    progress: bool = False
    kind: str | None = None  # "io" or "cpu": the caller's hint to backend="auto"
    explain: bool = False  # log the automatic choice and its reason


KINDS = ("io", "cpu")


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


def options(
    backend: Any = "auto", workers: Any = None, ordered: Any = True, chunksize: Any = None,
    errors: Any = "raise", progress: Any = False, kind: Any = None, explain: Any = False,
) -> Options:
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be 'raise', 'collect' or 'skip', got {errors!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be 'io', 'cpu' or None, got {kind!r}")
    return Options(
        backend=check_backend(backend),
        workers=check_positive("workers", workers),
        ordered=bool(ordered),
        chunksize=check_positive("chunksize", chunksize),
        errors=errors,
        progress=bool(progress),
        kind=kind,
        explain=bool(explain),
    )


def check_callable(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(
            f"fn must be callable, got {type(fn).__name__}; the call is plait.map(fn, items)"
        )


def check_iterable(items: Any) -> None:
    if not (hasattr(items, "__iter__") or hasattr(items, "__aiter__") or hasattr(items, "__getitem__")):
        raise TypeError(
            f"items must be iterable (a list, range, generator...), got {type(items).__name__}"
        )
