"""Many URLs on a Dask cluster: the input sharded by host across the workers, each shard fetched
there by plait's asyncio fetcher (``plait.http.fetch_all``), the responses streamed back in
input order.

For ``plait.http.fetch_all(urls, backend="dask")`` to call (``fetch_on_cluster``). Why the
limits hold for the whole cluster:

- ``per_host`` and ``rate`` are per host: every URL of a host goes to the same shard
  (``crc32(host) % shards``), and a shard's blocks run one after another (each waits for the
  previous one of its shard through a Dask dependency, on the same worker), so a host is only
  ever fetched by one fetcher at a time, with the limits as given.
- ``concurrency`` is for the whole run: each shard gets its share (``concurrency // shards``,
  at least 1), so at most ``concurrency`` requests are in flight over the cluster.

The input is read lazily in blocks (``block`` inputs, by default twice ``concurrency``); at most
two blocks are on the cluster at once, so an endless input works and read-ahead is bounded.
``progress=True`` shows the bar here, counting responses as they come back (a block at a time;
retries happen on the workers, so it has no retrying count).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

BLOCKS_IN_FLIGHT = 2
DEFAULT_CONCURRENCY = 100  # fetch_all's default


def host_of(request: Any) -> str:
    """The host a URL or ``Request`` goes to ('' when it has none: a bad URL fails anyway)."""
    url = request if isinstance(request, str) else getattr(request, "url", "")
    try:
        return (urlsplit(str(url)).hostname or "").lower()
    except ValueError:
        return ""


def shard_of(request: Any, shards: int) -> int:
    """Stable across processes and runs (not ``hash()``, which is salted per process)."""
    return zlib.crc32(host_of(request).encode()) % shards


def split_options(options: dict[str, Any], shards: int) -> dict[str, Any]:
    """One shard's options: its share of ``concurrency``; per-host limits as given."""
    mine = dict(options)
    total = int(options.get("concurrency") or DEFAULT_CONCURRENCY)
    mine["concurrency"] = max(1, total // shards)
    mine["progress"] = False  # a bar on a worker's stderr helps nobody
    mine["ordered"] = True  # positions are mapped back here
    return mine


def fetch_shard(requests: list[Any], options: dict[str, Any], _after: Any = None) -> list[Any]:
    """Runs on a worker: one shard of one block, with plait's fetcher (``_after``: the previous
    block of this shard, only waited for)."""
    from multidict import CIMultiDict

    from plait.http._driver import fetch_all  # this machine's fetch (plait.http's own
    # fetch_all may shard: _dask_fetch is below it)

    responses = list(fetch_all(requests, **options))
    for response in responses:  # aiohttp's read-only view does not pickle; a copy does
        response.headers = CIMultiDict(response.headers)
    return responses


def fetch_on_cluster(
    requests: Iterable[Any],
    /,
    *,
    client: Any = None,
    address: str | None = None,
    shards: int | None = None,
    block: int | None = None,
    fetch: Callable[[list[Any], dict[str, Any], Any], list[Any]] = fetch_shard,
    **options: Any,
) -> Iterator[Any]:
    """Fetch every request on the cluster; yield one response per input, in input order.

    ``options`` are ``fetch_all``'s. ``shards``: how many parts the hosts are split into (by
    default one per worker); ``fetch``: what runs a shard on a worker.
    """
    from ._backends._dask_cluster import connect
    from ._progress import progress

    cluster = connect(address, client)
    workers = sorted(cluster.nthreads())
    shards = shards or max(1, len(workers))
    shard_options = split_options(options, shards)
    size = block or 2 * int(options.get("concurrency") or DEFAULT_CONCURRENCY)
    previous: list[Any] = [None] * shards
    source = iter(requests)
    in_flight: deque[list[tuple[list[int], Any]]] = deque()
    start = 0
    bar = progress(bool(options.get("progress")), None, "fetch", unit="req", status=_counts)
    try:
        while True:
            while len(in_flight) < BLOCKS_IN_FLIGHT:
                items = list(islice(source, size))
                if not items:
                    break
                in_flight.append(
                    _submit_block(cluster, fetch, items, start, shard_options, previous, workers)
                )
                start += len(items)
            if not in_flight:
                return
            for response in _collect(cluster, in_flight.popleft()):
                bar.update(1, failed=response.error is not None)
                yield response
    finally:
        bar.close()
        for parts in in_flight:
            cluster.cancel([future for _, future in parts])


def _counts(done: int, failed: int) -> str:
    return f"ok={done - failed} failed={failed}"


def _submit_block(
    cluster: Any,
    fetch: Callable[..., list[Any]],
    items: list[Any],
    start: int,
    options: dict[str, Any],
    previous: list[Any],
    workers: list[str],
) -> list[tuple[list[int], Any]]:
    """One Dask task per shard of the block, each after the previous one of its shard."""
    shards = len(previous)
    positions: list[list[int]] = [[] for _ in range(shards)]
    for i, item in enumerate(items):
        positions[shard_of(item, shards)].append(i)
    parts = []
    for shard, where in enumerate(positions):
        if not where:
            continue
        # its home worker, or any other when that one is busy or gone (Dask refuses
        # allow_other_workers without workers=: a cluster with no workers yet has no homes)
        home = [workers[shard % len(workers)]] if workers else None
        future = cluster.submit(
            fetch, [items[i] for i in where], options, previous[shard], pure=False,
            workers=home, allow_other_workers=home is not None,
        )
        previous[shard] = future
        parts.append(([start + i for i in where], future))
    return parts


def _collect(cluster: Any, parts: list[tuple[list[int], Any]]) -> Iterator[Any]:
    """The block's responses in input order, numbered by their place in the whole input."""
    placed: dict[int, Any] = {}
    for indices, future in parts:
        for index, response in zip(indices, future.result(), strict=True):
            response.index = index
            placed[index] = response
    for index in sorted(placed):
        yield placed[index]
