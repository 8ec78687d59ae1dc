"""``WorkerCrashed``, apart from the other exceptions because its stdlib base class imports
``multiprocessing``: it loads on first use (``plait.WorkerCrashed``, or the process backend)."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from ._exceptions import PlaitError


class WorkerCrashed(PlaitError, BrokenProcessPool):
    """The worker process died while it ran this task; the worker was replaced.

    Also a ``concurrent.futures.process.BrokenProcessPool`` (a ``RuntimeError``), so code
    written for the stdlib's process pool catches it as it is.
    """

    __module__ = "plait"  # its public name, also what pickle looks up

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[type[WorkerCrashed], tuple[str, int | None]]:
        return (type(self), (str(self), self.exitcode))
