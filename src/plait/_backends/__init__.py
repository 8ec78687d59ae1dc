"""The backend registry: what each backend is, by name, without importing its module.

Everything else that depends on the backend (the CLI's choices, the ``backend=`` Literal, chunk
sizes, which options a backend takes, the ``advise`` grid) is derived from ``REGISTRY``. Adding
a backend is its module, one ``BackendInfo`` line here, and one line in the test matrix (see
docs/backends.md). Modules are imported only when a backend of theirs is first created, so
``import plait`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Backend


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _one(cores: int) -> tuple[int, ...]:
    return (1,)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a backend is: read by the scheduler, the option checks, the CLI and ``advise``."""

    name: str
    target: str  # "module:Class", the module relative to this package
    workers: int | None  # the default worker count; None: one per usable core
    chunk_target_s: float | None = None  # automatic chunks aim at this long; None: one item
    stops_tasks: bool = False  # can end a task that runs past its timeout (or abandon it)
    initializer: bool = False  # runs ``initializer`` once in each worker
    recycles: bool = False  # replaces workers after ``max_tasks_per_worker`` tasks
    calls_on_loop: bool = False  # ``prepare`` returns fn and ``run`` awaits it on the loop:
    # the scheduler may then call fn itself, one item at a time, with no chunk round trip
    coroutines_only: bool = False  # meant for coroutine functions (``advise`` tries it only then)
    starts_slowly: bool = False  # creating it may block for seconds (connecting to a cluster):
    # ``amap`` creates it on a thread, so that the caller's event loop goes on meanwhile
    requires: str | None = None  # the optional module it needs ...
    extra: str | None = None  # ... and the extra that installs it: pip install 'plait[extra]'
    colour: str = "#333333"  # its bars in ``advise``'s chart
    grid: Callable[[int], tuple[int, ...]] = _one  # worker counts ``advise`` tries, by cores

    def default_workers(self) -> int:
        return cpu_count() if self.workers is None else self.workers

    def check_available(self) -> None:
        """Raise BackendUnavailable, naming the install command, if the dependency is absent."""
        if self.requires is None or importlib.util.find_spec(self.requires) is not None:
            return
        from .._exceptions import BackendUnavailable

        extra = self.extra or self.requires
        raise BackendUnavailable(
            f"backend={self.name!r} needs {self.requires}: pip install 'plait[{extra}]'"
        )


REGISTRY: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("inline", "._inline:InlineBackend", 1, colour="#8c8c8c"),
        BackendInfo(
            "thread", "._thread:ThreadBackend", 32, 0.002, stops_tasks=True, initializer=True,
            colour="#4c78a8", grid=lambda cores: (4, 16, 64),
        ),  # 32: blocking I/O wants many; CPU work under the GIL gains nothing from more
        BackendInfo(
            "process", "._process:ProcessBackend", None, 0.05, stops_tasks=True,
            initializer=True, recycles=True, colour="#f58518",
            grid=lambda cores: (1, cores, 2 * cores),
        ),
        BackendInfo(
            "asyncio", "._asyncio:AsyncioBackend", 100, stops_tasks=True, calls_on_loop=True,
            coroutines_only=True, colour="#54a24b", grid=lambda cores: (10, 100, 1000),
        ),
        BackendInfo(
            "dask", "._dask:DaskBackend", None, 0.05, stops_tasks=True, requires="distributed",
            extra="dask", colour="#e45756", grid=lambda cores: (cores,), starts_slowly=True,
        ),  # workers=None: the cluster's threads; auto never picks it, advise skips it
    )
}
NAMES = tuple(REGISTRY)


def info(name: str) -> BackendInfo:
    return REGISTRY[name]


def _start_dir() -> str:
    try:
        return os.getcwd()
    except OSError:  # the working directory was deleted
        return os.path.abspath(os.sep)


# The working directory when plait was imported: what '' on sys.path stood for then. Process
# workers get it in place of '' (as multiprocessing does), so a later chdir() does not hide the
# user's modules from them.
START_DIR = _start_dir()


def default_workers(name: str) -> int:
    return REGISTRY[name].default_workers()


def load(name: str) -> Callable[..., Backend]:
    """The backend's class, importing its module now (after checking its dependency)."""
    described = REGISTRY[name]
    described.check_available()
    module_name, class_name = described.target.split(":")
    module = importlib.import_module(module_name, __name__)
    cls: Callable[..., Backend] = getattr(module, class_name)
    return cls


def create(name: str, workers: int | None, **options: Any) -> Backend:
    cls = load(name)
    if not workers and getattr(cls, "sizes_itself", False):  # dask: the cluster's threads
        return cls(None, **options)
    return cls(workers or default_workers(name), **options)
