"""plait's exceptions, one hierarchy.

    PlaitError                       base of every error plait raises itself
     ├── BackendUnavailable          an optional dependency is missing (also ImportError)
     ├── SerializationError          a function, argument or result cannot cross to a process
     ├── WorkerCrashed               the worker process died while running the task (also the
     │                               stdlib's BrokenProcessPool, hence a RuntimeError)
     └── TaskTimeout                 the task ran past its timeout (also TimeoutError)

A task's own exception is never wrapped: it comes back with its real type, and on the process
backend the worker's traceback is attached as ``__cause__``. Bad arguments to plait's functions
raise the usual ``TypeError`` / ``ValueError`` with a message that says what to do.

``WorkerCrashed`` lives in ``_worker_crashed`` and loads on first use: its stdlib base class
comes from ``concurrent.futures.process``, which imports ``multiprocessing`` (a third of the cost
of ``import plait``, and of a worker's start-up).
"""

from __future__ import annotations


class PlaitError(Exception):
    """Base class of the errors that plait raises itself."""


class BackendUnavailable(PlaitError, ImportError):
    """A backend needs an optional dependency that is not installed."""


class SerializationError(PlaitError):
    """A function, argument or result cannot be pickled to or from a worker process."""


class TaskTimeout(PlaitError, TimeoutError):
    """The task ran longer than its timeout and was stopped."""


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended, e.g. 'exit code 1' or 'signal SIGKILL'."""
    import signal

    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
