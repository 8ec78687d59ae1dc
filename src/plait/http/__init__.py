"""Many HTTP requests at once: one shared aiohttp session, polite to servers, nothing lost.

    for r in plait.http.fetch_all(urls, concurrency=100):          # a stream, in input order
        print(r.url, r.status, len(r.body), r.attempts, r.error)

    async for r in plait.http.afetch_all(urls, per_host=8, rate="50/s"):   # inside a loop
        ...

Every input gives exactly one ``Response``, in input order (or as completed with
``ordered=False``). A failure never stops the run: a bad URL, an unsupported scheme, a host that
does not resolve, a timeout, a refused or reset connection, an HTTP error status or a body that
is not JSON when ``read="json"`` becomes that response's ``error``, one of::

    FetchError                      base (a plait.PlaitError); .url, .status
     ├── InvalidRequest             bad URL, unsupported scheme, malformed request spec (ValueError)
     ├── ConnectionFailed           refused, reset, dropped (ConnectionError); retried
     │    └── HostNotFound          the host name does not resolve; not retried
     ├── RequestTimeout             an attempt ran past ``timeout`` (plait.TaskTimeout); retried
     ├── HTTPStatusError            status >= 400 after the retries; 408/429/500/502/503/504 retried
     ├── InvalidJSON                ``read="json"`` and the body is not JSON (ValueError)
     └── BodyTooLarge               the body is longer than ``max_body`` bytes

Politeness: ``per_host`` caps the requests in flight per host, ``rate`` ("50/s", "1000/min")
spaces their starts per host, and a 429 or 503 with ``Retry-After`` pauses every pending request
to that host until then, together. ``adaptive=True`` halves a host's concurrency on 429/503 and
grows it back by one after each full round of successes.

``attempts`` counts plait's attempts. aiohttp itself also sends an idempotent request once
more, at once, when its connection drops before the response (RFC 9112, 9.3.1).

Input is read lazily: at most about ``2 * concurrency`` requests are taken ahead of what the
consumer has taken, so a generator of a million URLs is fine. aiohttp is imported only when a
fetch starts.
"""

from __future__ import annotations

from .._retry import Backoff
from ._driver import afetch_all
from ._errors import (
    BodyTooLarge,
    ConnectionFailed,
    FetchError,
    HostNotFound,
    HTTPStatusError,
    InvalidJSON,
    InvalidRequest,
    RequestTimeout,
    TooManyOpenFiles,
)
from ._fetch import fetch_all
from ._messages import Request, Response

__all__ = [
    "Backoff",
    "BodyTooLarge",
    "ConnectionFailed",
    "FetchError",
    "HTTPStatusError",
    "HostNotFound",
    "InvalidJSON",
    "InvalidRequest",
    "Request",
    "RequestTimeout",
    "Response",
    "TooManyOpenFiles",
    "afetch_all",
    "fetch_all",
]

for _name in __all__:  # shown (and pickled) as plait.http.X, where users find them
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith(__name__ + "._"):
        _value.__module__ = __name__
del _name, _value
