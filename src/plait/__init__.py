"""plait: run many tasks at once with the right concurrency model.

results = plait.map(fn, items)                 # picks a backend, keeps input order
for r in plait.imap(fn, endless(), backend="process"): ...
async for r in plait.amap(fetch, urls): ...
"""

import typing as _typing

from ._api import amap as amap
from ._api import imap as imap
from ._api import map as map
from ._decision import Decision as Decision
from ._dropin import ProcessPoolExecutor as ProcessPoolExecutor
from ._dropin import ThreadPoolExecutor as ThreadPoolExecutor
from ._exceptions import BackendUnavailable as BackendUnavailable
from ._exceptions import PlaitError as PlaitError
from ._exceptions import SerializationError as SerializationError
from ._exceptions import TaskTimeout as TaskTimeout
from ._executor import Pool as Pool
from ._explain import explain as explain
from ._lifetime import shutdown as shutdown
from ._outcome import Outcome as Outcome

if _typing.TYPE_CHECKING:  # loaded on first use, see __getattr__
    from ._pipeline import Pipeline as Pipeline
    from ._pipeline import StageOutcome as StageOutcome
    from ._pipeline import pipeline as pipeline
    from ._taskgroup import TaskGroup as TaskGroup
    from ._tasks import TaskHandle as TaskHandle
    from ._tasks import cancelled as cancelled
    from ._tasks import every as every
    from ._tasks import spawn as spawn
    from ._worker_crashed import WorkerCrashed as WorkerCrashed

# Background tasks and pipelines bring asyncio with them: imported on first use.
_LAZY = {
    "Pipeline": "_pipeline", "StageOutcome": "_pipeline", "pipeline": "_pipeline",
    "TaskGroup": "_taskgroup", "TaskHandle": "_tasks", "cancelled": "_tasks", "every": "_tasks",
    "spawn": "_tasks",
}

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Decision",
    "Outcome",
    "Pipeline",
    "PlaitError",
    "Pool",
    "ProcessPoolExecutor",
    "SerializationError",
    "StageOutcome",
    "TaskGroup",
    "TaskHandle",
    "TaskTimeout",
    "ThreadPoolExecutor",
    "WorkerCrashed",
    "amap",
    "cancelled",
    "every",
    "explain",
    "imap",
    "map",
    "pipeline",
    "shutdown",
    "spawn",
]

for _name in __all__:
    _obj = globals().get(_name)
    if getattr(_obj, "__module__", "").startswith("plait."):
        _obj.__module__ = "plait"  # tracebacks and reprs show the public name
del _name, _obj


def __getattr__(name: str) -> object:
    """``plait.http`` (it brings aiohttp's world with it) and ``plait.testing`` are imported
    on first use. So is ``WorkerCrashed``: its stdlib base class imports multiprocessing."""
    if name == "WorkerCrashed":
        from ._worker_crashed import WorkerCrashed

        globals()[name] = WorkerCrashed
        return WorkerCrashed
    if name in _LAZY:
        import importlib

        obj = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        if getattr(obj, "__module__", "").startswith("plait."):
            obj.__module__ = "plait"
        globals()[name] = obj
        return obj
    if name in ("http", "testing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'plait' has no attribute {name!r}")
