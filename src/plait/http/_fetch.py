"""``plait.http.fetch_all``: on this machine (``_driver``) or sharded over a Dask cluster
(``.._dask_fetch``), which itself runs ``_driver``'s fetch on each worker."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ._config import make_config
from ._driver import fetch_all as fetch_here
from ._messages import Request, Response


def fetch_all(
    requests: Iterable[str | Request],
    /,
    *,
    backend: str = "asyncio",
    address: str | None = None,
    client: Any = None,
    **options: Any,
) -> Generator[Response, None, None]:
    """Fetch every URL or ``Request`` at once; yield one ``Response`` per input as a stream.

    Options (keyword only):
        concurrency=100   requests in flight (also the size of the connection pool)
        per_host=None     requests in flight per host (None: no cap below ``concurrency``)
        rate=None         starts per second per host: "50/s", "1000/min", or a number
        burst=1           starts allowed at once before ``rate`` spaces them
        retries=3         extra attempts after connection errors, timeouts, 408/429/5xx
        timeout=30        seconds per attempt (connect_timeout=10 for the connection alone)
        ordered=True      results in input order; False: as they complete (better when a few
                          URLs are slow: in order, they hold the later results back)
        read="bytes"      body as bytes, "text", "json" (parsed), or "none" (count bytes only)
        headers=None      headers sent with every request
        max_body=100 MiB  longest body kept (None: no limit); longer ones give BodyTooLarge
        retry_unsafe=False  retry POST/PATCH too (a Request's ``retry`` overrides per request)
        adaptive=False    halve a host's concurrency on 429/503, grow it back on success
        backoff=Backoff() full-jitter exponential backoff between attempts
        max_retry_after=120  longest Retry-After pause honoured, in seconds
        error_for_status=True  a final status >= 400 sets ``error`` (HTTPStatusError)
        progress=False    a progress bar on stderr with done/failed/retrying counts
        clock=None        the time source of backoff, rate and pauses (tests pass a FakeClock)
        backend="asyncio" or "dask": shard the URLs by host over a Dask cluster's workers, each
                          running this fetcher (``address=`` / ``client=`` pick the cluster, as
                          for ``plait.map``); ``concurrency`` is split between the shards, and
                          ``per_host`` and ``rate`` hold for the whole cluster (docs/dask.md)

    Workers take inputs in order and wait at their host's gate, so a long run of URLs to one
    capped host (``per_host``, ``rate``, a Retry-After pause) holds workers that could serve
    other hosts: interleave hosts in the input for crawls.

    The run happens on plait's private event-loop thread; leaving the loop early (``break``,
    ``close()``) cancels what is in flight. Inside a coroutine use ``afetch_all``.
    """
    if backend == "asyncio":
        if address is not None or client is not None:
            raise TypeError("address= and client= pick a Dask cluster: pass backend='dask' too")
        return fetch_here(requests, **options)
    if backend != "dask":
        raise ValueError(f"fetch_all runs on backend='asyncio' or 'dask', not {backend!r}")
    if hasattr(requests, "__aiter__"):
        raise TypeError("fetch_all takes an iterable; for an async iterable use afetch_all")
    make_config(**options)  # every option checked before the cluster is reached
    return _on_cluster(iter(requests), address, client, options)


def _on_cluster(
    source: Iterable[str | Request], address: str | None, client: Any, options: dict[str, Any]
) -> Generator[Response, None, None]:
    from .._backends import info
    from .._dask_fetch import fetch_on_cluster

    info("dask").check_available()  # BackendUnavailable naming pip install 'plait[dask]'
    yield from fetch_on_cluster(source, address=address, client=client, **options)
