"""Outcome: what happened to one input (value or error), as returned by errors="collect"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """The result of one input: its ``index`` in the input, and a ``value`` or an ``error``."""

    index: int
    value: T | None = None
    error: BaseException | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the task returned a value."""
        return self.error is None

    def unwrap(self) -> T:
        """Return the value, or raise the task's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]
