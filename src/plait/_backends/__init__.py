"""Backends by name, imported only when first used."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Backend

_CLASSES = {
    "inline": ("._inline", "InlineBackend"),
    "thread": ("._thread", "ThreadBackend"),
    "process": ("._process", "ProcessBackend"),
    "asyncio": ("._asyncio", "AsyncioBackend"),
}
NAMES = tuple(_CLASSES)


def _start_dir() -> str:
    try:
        return os.getcwd()
    except OSError:  # the working directory was deleted
        return os.path.abspath(os.sep)


# The working directory when plait was imported: what '' on sys.path stood for then. Process
# workers get it in place of '' (as multiprocessing does), so a later chdir() does not hide the
# user's modules from them.
START_DIR = _start_dir()


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(name: str) -> int:
    if name == "process":
        return cpu_count()
    if name == "thread":
        return 32  # blocking I/O wants many; CPU work under the GIL gains nothing from more
    if name == "asyncio":
        return 100
    return 1


def create(name: str, workers: int | None, **options: Any) -> Backend:
    module_name, class_name = _CLASSES[name]
    module = importlib.import_module(module_name, __name__)
    backend: Backend = getattr(module, class_name)(workers or default_workers(name), **options)
    return backend
