"""What goes in and what comes out: ``Request`` and ``Response``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import FetchError

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class Request:
    """One request: a URL plus method, headers, query ``params``, and a ``json`` or ``data`` body.

    ``retry`` overrides the default (retry only idempotent methods unless ``retry_unsafe``).
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    json: Any = None
    data: bytes | str | None = None
    retry: bool | None = None


@dataclass(slots=True)
class Response:
    """What happened to one input: a response, or the ``error`` that stopped it."""

    url: str
    index: int
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # bytes, str (read="text"), parsed JSON (read="json"), or None
    nbytes: int = 0  # bytes of body received (also with read="none")
    elapsed: float = 0.0  # seconds from the first attempt to the result, waits included
    attempts: int = 0
    error: FetchError | None = None
    request: Request | None = None

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return self.error is None

    def raise_for_error(self) -> Response:
        """Return self, or raise the error."""
        if self.error is not None:
            raise self.error
        return self
