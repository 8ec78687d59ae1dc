"""The one integer check that options, policies and plait.http share."""

from __future__ import annotations

from typing import Any, TypeGuard


def is_count(value: Any, minimum: int) -> TypeGuard[int]:
    """An int of at least ``minimum``; ``True`` is not a count, though Python calls it an int."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
