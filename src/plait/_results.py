"""Turning chunk results into what the caller asked for: values, outcomes, or the error."""

from __future__ import annotations

from typing import Any

from ._backends._base import ChunkResult
from ._outcome import Outcome

ERROR_MODES = ("raise", "collect", "skip")


def expand(start: int, result: ChunkResult, errors: str) -> tuple[list[Any], BaseException | None]:
    """What to yield for one chunk, and the error to raise after it (errors="raise")."""
    if errors == "collect":
        failed = result.errors or {}
        tries = result.attempts or {}
        return [
            Outcome(start + i, value, failed.get(i), tries.get(i, 1))
            for i, value in enumerate(result.values)
        ], None
    if not result.errors:
        return result.values, None
    if errors == "skip":
        return [v for i, v in enumerate(result.values) if i not in result.errors], None
    first = min(result.errors)
    return result.values[:first], result.errors[first]
