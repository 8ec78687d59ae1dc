"""What plait.http knows about aiohttp: the session, turning an input into a URL, reading a
body under ``max_body``, and aiohttp's and the OS's errors as plait's FetchErrors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from yarl import URL

from ._config import FetchConfig
from ._errors import (
    BodyTooLarge,
    ConnectionFailed,
    FetchError,
    HostNotFound,
    HTTPStatusError,
    InvalidJSON,
    InvalidRequest,
    RequestTimeout,
)
from ._messages import Request, Response

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
PAUSE_STATUSES = frozenset({429, 503})  # statuses whose Retry-After pauses the whole host
_SCHEMES = frozenset({"http", "https"})
_CHUNK = 2**16
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
_REQUEST_ERRORS = (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, TypeError, ValueError)


def retryable(error: BaseException) -> bool:
    """Connection errors (not DNS), timeouts, and the statuses in RETRY_STATUSES."""
    if isinstance(error, HostNotFound):
        return False
    if isinstance(error, HTTPStatusError):
        return error.status in RETRY_STATUSES
    return isinstance(error, ConnectionFailed | RequestTimeout)


@contextlib.asynccontextmanager
async def open_session(config: FetchConfig) -> AsyncIterator[aiohttp.ClientSession]:
    """The one session of a run: its pool holds ``concurrency`` connections."""
    connector = aiohttp.TCPConnector(
        limit=config.concurrency, limit_per_host=config.per_host or 0, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=config.headers,
        cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False,
    ) as session:
        yield session


def url_text(item: Any) -> str:
    """The input as ``Response.url`` shows it, even when it is not a URL at all."""
    if isinstance(item, str):
        return item
    if isinstance(item, Request):
        return str(item.url)
    return repr(item)


def as_request(item: Any) -> Request:
    """The input as a Request, or InvalidRequest."""
    if isinstance(item, str):
        return Request(item)
    if isinstance(item, Request):
        if not isinstance(item.url, str) or not isinstance(item.method, str):
            raise InvalidRequest("a Request needs a url and a method that are strings")
        return item
    kind = type(item).__name__
    raise InvalidRequest(f"expected a URL string or a plait.http.Request, got {kind}")


def parse_url(text: str) -> URL:
    try:
        url = URL(text.strip())
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"invalid URL {text!r}: {exc}") from exc
    if url.scheme not in _SCHEMES:
        what = f"unsupported scheme {url.scheme!r}" if url.scheme else "no scheme"
        raise InvalidRequest(f"cannot fetch {text!r}: {what}; only http:// and https:// URLs work")
    if not url.host:
        raise InvalidRequest(f"invalid URL {text!r}: no host")
    return url


async def read_body(
    resp: aiohttp.ClientResponse, response: Response, mode: str, limit: int | None
) -> None:
    """The body into ``response`` as ``read=mode`` asks, or BodyTooLarge past ``limit``."""
    if mode == "none":
        async for chunk in resp.content.iter_chunked(_CHUNK):
            response.nbytes += len(chunk)
        return
    length = resp.content_length
    if limit is not None and length is not None and length > limit:
        raise _too_large(f"is {length} bytes", limit, resp.status)
    if limit is None or length is not None:
        body = await resp.read()
    else:
        body = await _read_capped(resp, limit)
    response.nbytes = len(body)
    response.body = body.decode(resp.charset or "utf-8", "replace") if mode == "text" else body


def _too_large(size: str, limit: int, status: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the body {size}, more than max_body={limit} bytes; "
        "raise max_body (None: no limit) or use read='none'", status=status,
    )


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large("is longer", limit, resp.status)
        parts.append(chunk)
    return b"".join(parts)


def parse_json(response: Response) -> FetchError | None:
    try:
        response.body = json.loads(response.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        error = InvalidJSON(f"the body is not valid JSON: {exc}", status=response.status)
        error.__cause__ = exc
        return error
    return None


def translate(exc: Exception, host: str, config: FetchConfig) -> FetchError:
    """An aiohttp or OS error as plait's FetchError, with the original as ``__cause__``."""
    error: FetchError
    if isinstance(exc, TimeoutError):
        which = "connect" if isinstance(exc, aiohttp.ConnectionTimeoutError) else "response"
        limit = config.connect_timeout if which == "connect" else config.timeout
        error = RequestTimeout(f"no {which} within {limit} s")
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        error = HostNotFound(f"cannot resolve host {host!r}")
    elif isinstance(exc, _CONNECTION_ERRORS):
        error = ConnectionFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    elif isinstance(exc, _REQUEST_ERRORS):
        error = InvalidRequest(f"cannot send the request: {type(exc).__name__}: {exc}")
    else:
        error = FetchError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
