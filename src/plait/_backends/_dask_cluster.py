"""Finding the Dask cluster, in Dask's own order, and the clients plait keeps for the program.

1. ``client=`` or ``address=`` given to ``plait.Pool``;
2. the active ``distributed.Client`` of this process (``distributed.default_client()``);
3. Dask's configured scheduler address (``dask.config.get("scheduler-address")``, which
   ``DASK_SCHEDULER_ADDRESS`` sets);
4. otherwise an embedded ``LocalCluster``: processes with one thread each, one per usable core.

plait connects once per address and starts the embedded cluster once: later runs reuse them.
Both are plait's own and closed at interpreter exit (the cluster's processes with it) and
forgotten in a forked child. A client that the user made is the user's: plait never closes it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Any

from . import cpu_count

_lock = threading.Lock()
_clients: dict[str, Any] = {}  # address -> the Client plait opened to it
_embedded: list[Any] = []  # [LocalCluster, Client] once started


def connect(address: str | None = None, client: Any = None) -> Any:
    """The ``distributed.Client`` to run on, found in Dask's order (see the module doc)."""
    if client is not None:
        return client
    if address is not None:
        return _client_for(address)
    found = active_client()
    if found is not None:
        return found
    configured = configured_address()
    if configured is not None:
        return _client_for(configured)
    return _embedded_client()


def active_client() -> Any:
    """The user's active Client, or None (plait's own clients are never made the default)."""
    import distributed

    try:
        return distributed.default_client()
    except ValueError:
        return None


def configured_address() -> str | None:
    import dask

    address = dask.config.get("scheduler-address", None)
    return str(address) if address else None


def _client_for(address: str) -> Any:
    with _lock:
        client = _clients.get(address)
        if client is not None and not _usable(client):
            client.status = "closed"  # nothing to close over a dead loop (its __del__ would try)
            client = None
        if client is None:
            from distributed import Client

            client = _clients[address] = Client(address, set_as_default=False)
            _register_exit()
        return client


def _usable(client: Any) -> bool:
    """plait's cached client can still serve: not closed, and its event loop not closed under
    it (seen once in CI: "IOLoop is closed" for every later run of the program)."""
    if client.status in ("closing", "closed"):
        return False
    loop = getattr(getattr(client, "loop", None), "asyncio_loop", None)
    return loop is None or not loop.is_closed()


def replace(client: Any) -> None:
    """After Dask cancelled a chunk twice by itself: the next run for this address connects
    afresh, and this client closes in the background. Only plait's clients for an address are
    replaced (a user's client is theirs; the embedded cluster's is plait's whole cluster)."""
    with _lock:
        addresses = [address for address, cached in _clients.items() if cached is client]
        for address in addresses:
            del _clients[address]
    if addresses:
        closing = threading.Thread(target=_close, args=(client,), name="plait-dask-close")
        closing.daemon = True
        closing.start()


def _close(client: Any) -> None:
    # a client that lost its scheduler may fail to close cleanly: let it go
    with contextlib.suppress(Exception):
        client.close()


def _embedded_client() -> Any:
    with _lock:
        if not _embedded:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=cpu_count(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: never clash with another program's 8787
            )
            _embedded.extend((cluster, Client(cluster, set_as_default=False)))
            _register_exit()
        return _embedded[1]


_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(close_all)


def close_all() -> None:
    """Close plait's own clients and the embedded cluster (its worker processes end)."""
    with _lock:
        clients = list(_clients.values())
        embedded = list(_embedded)
        _clients.clear()
        _embedded.clear()
    for client in clients:
        client.close()
    if embedded:
        cluster, client = embedded
        client.close()
        cluster.close()


def _forget_in_child() -> None:
    """A forked child shares the parent's sockets, not its loop threads: start afresh."""
    global _lock
    _lock = threading.Lock()
    _clients.clear()
    _embedded.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def summary(address: str | None = None, client: Any = None) -> tuple[int, str]:
    """For ``explain``: the cluster's threads, and a line naming its address, workers and
    dashboard (this connects to it, or starts the embedded one, as a run would)."""
    client = connect(address, client)
    nthreads: dict[str, int] = client.nthreads()
    threads = max(1, sum(nthreads.values()))
    line = (
        f"Dask cluster at {client.scheduler.address}: {len(nthreads)} workers, "
        f"{threads} threads"
    )
    link = _dashboard(client)
    return threads, f"{line}, dashboard {link}" if link else line


def _dashboard(client: Any) -> str | None:
    try:
        link = client.dashboard_link
    except Exception:  # no dashboard (started with --no-dashboard, or bokeh missing)
        return None
    return str(link) if link else None


def available() -> str | None:
    """What ``explain`` says under backend="auto" when a cluster is at hand; None if none is.
    Cheap: it imports no Dask module that the program has not imported already."""
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    if "dask" in sys.modules:
        address = configured_address() or address
    if address is None and "distributed" in sys.modules:
        client = active_client()
        address = None if client is None else str(client.scheduler.address)
    if address is None:
        return None
    return (
        f'A Dask cluster is configured at {address}: backend="dask" runs there '
        "(auto never sends work to a cluster by itself)."
    )


def in_flight(threads: int) -> int:
    """Chunks plait keeps on the cluster by default: two per worker thread, so that a worker
    has its next chunk at hand when one ends and does not idle for the round trip."""
    return 2 * threads


def on_its_loop(client: Any) -> bool:
    """An asynchronous Client used on its own event loop's thread: a blocking call there would
    stop the loop the client needs (its methods return coroutines there)."""
    return bool(getattr(client, "asynchronous", False))


def total_threads(client: Any) -> int:
    """How many tasks the cluster runs at once now (waiting a little for a first worker)."""
    if on_its_loop(client):  # no waiting here: what the client last heard from the scheduler
        workers = client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
    nthreads: dict[str, int] = client.nthreads()
    if not nthreads:
        client.wait_for_workers(1, timeout=30)
        nthreads = client.nthreads()
    return max(1, sum(nthreads.values()))
