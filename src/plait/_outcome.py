"""Outcome: what happened to one input (value or error), as returned by errors="collect"."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Outcome(Generic[T]):
    """The result of one input: its ``index`` in the input, and a ``value`` or an ``error``."""

    __slots__ = ("attempts", "error", "index", "value")

    def __init__(
        self,
        index: int,
        value: T | None = None,
        error: BaseException | None = None,
        attempts: int = 1,
    ) -> None:
        self.index = index
        self.value = value
        self.error = error
        self.attempts = attempts

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Outcome(index={self.index}, error={self.error!r}, attempts={self.attempts})"
        return f"Outcome(index={self.index}, value={self.value!r}, attempts={self.attempts})"

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        mine = (self.index, self.value, self.error, self.attempts)
        return mine == (other.index, other.value, other.error, other.attempts)

    __hash__ = None  # type: ignore[assignment]

    @property
    def ok(self) -> bool:
        """True when the task returned a value."""
        return self.error is None

    def unwrap(self) -> T:
        """Return the value, or raise the task's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]
