"""Why one request failed: the FetchError family (see plait.http's docstring for the tree)."""

from __future__ import annotations

from typing import Any

from .._exceptions import PlaitError, TaskTimeout


class FetchError(PlaitError):
    """Why one request failed; ``url`` is the request's URL, ``status`` the last HTTP status."""

    def __init__(self, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.url, self.status))


class InvalidRequest(FetchError, ValueError):
    """The URL or request spec cannot be sent (bad URL, unsupported scheme, bad body)."""


class ConnectionFailed(FetchError, ConnectionError):
    """The connection was refused, reset or dropped before a full response came."""


class HostNotFound(ConnectionFailed):
    """The host name does not resolve (not retried)."""


class RequestTimeout(FetchError, TaskTimeout):
    """An attempt took longer than ``timeout`` seconds."""


class HTTPStatusError(FetchError):
    """The server answered with a status of 400 or more (kept after the retries ran out)."""


class InvalidJSON(FetchError, ValueError):
    """``read="json"`` was asked for and the body is not valid JSON (``body`` holds the bytes)."""


class BodyTooLarge(FetchError):
    """The response body is longer than ``max_body`` bytes; it was not read."""


class TooManyOpenFiles(PlaitError, OSError):
    """The open-files limit is too low for the requested concurrency."""
