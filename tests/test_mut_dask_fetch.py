"""The sharded fetch's promises that tests/test_dask_fetch.py left to chance (written from the
survivors of ``./dev mutants http-dask``, docs/testing.md): which cluster ``address=`` and
``client=`` pick, how a block is split into shard tasks and each chained to the last of its
shard, where a shard's task may run, how much of the input is read ahead, and the worker's side
(``fetch_shard``), called here in the test process.

Most tests pass ``fetch=`` a recording stand-in for ``fetch_shard``: it runs on the workers like
the real one and answers each input with a record of the task (worker, inputs, options, the
previous block of the shard), so the split is checked without a server. A private in-process
cluster (``LocalCluster(processes=False)``) stands for "another cluster" and for clusters whose
workers come and go during a run.
"""

from __future__ import annotations

import itertools
import pickle
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from plait import _dask_fetch
from plait._backends import _dask_cluster
from plait.http import Request

if TYPE_CHECKING:
    from http_server import Server

pytestmark = pytest.mark.timeout(60)


def recording_fetch(requests: list[Any], options: dict[str, Any], after: Any = None) -> list[Any]:
    """Stands for ``fetch_shard`` on a worker: one record per input, naming the task."""
    from distributed import get_worker

    task = SimpleNamespace(
        id=uuid.uuid4().hex, worker=get_worker().address, inputs=list(requests),
        options=dict(options), after=None if after is None else [r.url for r in after],
    )
    return [SimpleNamespace(url=r, error=None, task=task) for r in requests]


def short_fetch(requests: list[Any], options: dict[str, Any], after: Any = None) -> list[Any]:
    """A broken shard fetcher: one response short."""
    return recording_fetch(requests, options, after)[:-1]


GATE = threading.Event()  # holds a task on an in-process worker (the same module, same event)


def wait_at_gate() -> None:
    GATE.wait(30)


def hosts_of_shard(shard: int, shards: int, count: int) -> list[str]:
    found = (f"h{i}.test" for i in itertools.count())
    return list(itertools.islice(
        (h for h in found if _dask_fetch.shard_of(f"http://{h}/", shards) == shard), count
    ))


def tasks_in_order(responses: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for response in responses:
        seen.setdefault(response.task.id, response.task)
    return list(seen.values())


# --- host_of, split_options and fetch_shard, in this process ------------------------------


def test_host_of_reads_a_requests_url_and_gives_no_host_for_the_rest() -> None:
    assert _dask_fetch.host_of(Request("http://Example.COM:8080/x")) == "example.com"
    assert _dask_fetch.host_of(object()) == ""  # neither a URL nor a Request: no host
    assert _dask_fetch.host_of("http://[::1/x") == ""  # urlsplit raises ValueError


def test_a_shard_fetches_with_the_options_given_and_shows_no_bar(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [server.url(f"/json/{i}") for i in range(3)]
    options = _dask_fetch.split_options({"read": "json", "progress": True}, 2)
    assert options["progress"] is False
    responses = _dask_fetch.fetch_shard(urls, options)
    assert [r.body for r in responses] == [{"name": str(i)} for i in range(3)]
    assert capsys.readouterr().err == ""  # a bar on a worker's stderr helps nobody
    # the headers come back as a plain multidict, which pickles (aiohttp's view does not)
    copies = pickle.loads(pickle.dumps(responses))
    assert all(r.headers["Content-Type"].startswith("application/json") for r in copies)


# --- fetch_all's local branch and its argument errors (no cluster) --------------------------


def test_fetch_all_here_takes_the_urls_and_options(server: Server) -> None:
    from plait.http import fetch_all

    urls = [server.url(f"/json/{i}") for i in range(3)]
    assert [r.body for r in fetch_all(urls, read="json")] == [{"name": str(i)} for i in range(3)]


def test_fetch_all_refuses_a_cluster_without_dask_and_an_async_input() -> None:
    from plait.http import fetch_all

    async def urls() -> Any:
        yield "http://127.0.0.1:1/"

    with pytest.raises(TypeError) as caught:
        fetch_all(["http://127.0.0.1:1/"], client=object())
    assert str(caught.value) == "address= and client= pick a Dask cluster: pass backend='dask' too"
    with pytest.raises(TypeError) as caught:
        fetch_all(urls(), backend="dask")
    assert str(caught.value) == "fetch_all takes an iterable; for an async iterable use afetch_all"


# --- on the session's cluster ------------------------------------------------------------


@pytest.mark.usefixtures("dask_cluster")
def test_each_task_holds_one_shard_and_follows_the_last_of_its_shard() -> None:
    urls = [f"http://h{i % 6}.test/{i}" for i in range(30)]
    responses = list(
        _dask_fetch.fetch_on_cluster(urls, shards=2, block=10, fetch=recording_fetch)
    )
    assert [r.url for r in responses] == urls and [r.index for r in responses] == list(range(30))
    last: dict[int, list[str] | None] = {0: None, 1: None}
    for number, task in enumerate(tasks_in_order(responses)):
        shards = {_dask_fetch.shard_of(u, 2) for u in task.inputs}
        assert len(shards) == 1, f"task {number} mixes shards: {task.inputs}"
        shard = shards.pop()
        assert task.after == last[shard]  # chained to the previous block of its shard
        last[shard] = task.inputs
    assert all(last.values())  # both shards had work


@pytest.mark.usefixtures("dask_cluster")
def test_a_block_without_inputs_for_the_first_shard_is_fetched_whole() -> None:
    urls = [f"http://{host}/{i}" for i, host in enumerate(hosts_of_shard(1, 2, 4))]
    responses = list(_dask_fetch.fetch_on_cluster(urls, shards=2, fetch=recording_fetch))
    assert [r.url for r in responses] == urls


@pytest.mark.timeout(30)  # a block without an end would read the endless input forever
@pytest.mark.usefixtures("dask_cluster")
def test_the_default_block_is_twice_the_concurrency_and_two_are_read_ahead() -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield f"http://h{i % 3}.test/{i}"

    stream = _dask_fetch.fetch_on_cluster(endless(), concurrency=3, fetch=recording_fetch)
    first = next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert pulled == 2 * (2 * 3)  # two blocks of 2 x concurrency, no more
    assert first.index == 0


@pytest.mark.usefixtures("dask_cluster")
def test_a_shard_fetcher_that_loses_a_response_is_an_error() -> None:
    urls = ["http://a.test/1", "http://a.test/2"]
    with pytest.raises(ValueError, match="shorter"):  # zip's, not a quietly missing response
        list(_dask_fetch.fetch_on_cluster(urls, fetch=short_fetch))


@pytest.mark.usefixtures("dask_cluster")
def test_two_runs_of_the_same_urls_at_once_both_reach_the_server(server: Server) -> None:
    urls = [server.url(f"/ok/twice-{i}") for i in range(4)]
    first = _dask_fetch.fetch_on_cluster(urls, shards=1)
    next(first)  # its tasks are done and still held
    second = list(_dask_fetch.fetch_on_cluster(urls, shards=1))
    rest = list(first)
    assert len(second) == 4 and len(rest) == 3
    assert [server.count(f"/ok/twice-{i}") for i in range(4)] == [2, 2, 2, 2]


# --- on a private in-process cluster -------------------------------------------------------


def local_cluster(workers: int) -> Any:
    """A cluster in this process, on TCP (so plait connects to it by address, as to any)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers, processes=False, threads_per_worker=1, host="127.0.0.1",
        protocol="tcp://", dashboard_address=":0",
    )


def forget_plaits_client(address: str) -> None:
    """plait keeps a client per address for the program: close the one to a closing cluster."""
    with _dask_cluster._lock:
        client = _dask_cluster._clients.pop(address, None)
    if client is not None:
        client.close()


@pytest.fixture
def other_cluster(dask_cluster: Any) -> Iterator[Any]:
    """A second cluster with one worker, beside the one Dask's configuration names."""
    with local_cluster(1) as cluster:
        yield cluster
        forget_plaits_client(cluster.scheduler_address)


def test_address_picks_that_cluster_and_its_one_worker_one_shard(other_cluster: Any) -> None:
    urls = [f"http://h{i % 4}.test/{i}" for i in range(8)]
    responses = list(_dask_fetch.fetch_on_cluster(
        urls, address=other_cluster.scheduler_address, fetch=recording_fetch
    ))
    assert [r.url for r in responses] == urls
    assert {r.task.worker for r in responses} == set(other_cluster.scheduler.workers)
    (task,) = tasks_in_order(responses)  # one worker: one shard, with all the concurrency
    assert task.options["concurrency"] == _dask_fetch.DEFAULT_CONCURRENCY


def test_client_picks_that_cluster(other_cluster: Any) -> None:
    from distributed import Client

    with Client(other_cluster, set_as_default=False) as client:
        responses = list(_dask_fetch.fetch_on_cluster(
            ["http://a.test/1", "http://b.test/2"], client=client, fetch=recording_fetch
        ))
    assert {r.task.worker for r in responses} == set(other_cluster.scheduler.workers)


def test_fetch_all_runs_on_the_cluster_its_address_or_client_names(
    server: Server, other_cluster: Any
) -> None:
    from conftest import wait_until
    from distributed import Client

    from plait.http import fetch_all

    urls = [server.url(f"/json/{i}") for i in range(4)]
    scheduler = other_cluster.scheduler
    before = scheduler.transition_counter
    done = fetch_all(urls, backend="dask", address=other_cluster.scheduler_address, read="json")
    assert [r.body for r in done] == [{"name": str(i)} for i in range(4)]
    assert scheduler.transition_counter > before
    # (the first run's tasks are released after it ended: their transitions must not count)
    assert wait_until(lambda: not scheduler.tasks, 20)
    before = scheduler.transition_counter
    with Client(other_cluster, set_as_default=False) as client:
        assert [r.ok for r in fetch_all(urls, backend="dask", client=client)] == [True] * 4
    assert scheduler.transition_counter > before


def test_without_workers_at_the_start_the_shard_waits_for_one(dask_cluster: Any) -> None:
    with local_cluster(0) as cluster:

        def urls() -> Iterator[str]:  # read once the run has seen no workers
            cluster.scale(1)
            cluster.wait_for_workers(1)
            yield from ["http://a.test/1", "http://b.test/2"]

        address = cluster.scheduler_address
        try:
            responses = list(
                _dask_fetch.fetch_on_cluster(urls(), address=address, fetch=recording_fetch)
            )
        finally:
            forget_plaits_client(address)
    assert [r.url for r in responses] == ["http://a.test/1", "http://b.test/2"]


def test_a_shard_runs_elsewhere_when_its_home_worker_has_left(dask_cluster: Any) -> None:
    from conftest import finishes_meanwhile
    from distributed import Client

    urls = [f"http://{host}/{i}" for i, host in enumerate(
        hosts_of_shard(0, 2, 2) + hosts_of_shard(1, 2, 2)
    )]
    with local_cluster(2) as cluster, Client(cluster, set_as_default=False) as client:
        homes = sorted(client.nthreads())

        def leaving() -> Iterator[str]:  # read once the run has chosen the shards' homes
            client.retire_workers([homes[1]], close_workers=True)
            yield from urls

        responses: list[Any] = []
        run = _dask_fetch.fetch_on_cluster(leaving(), client=client, fetch=recording_fetch)
        assert finishes_meanwhile(lambda: responses.extend(run), 20), (
            "shard 1 waited for its home worker, which had left"
        )
    assert [r.url for r in responses] == urls
    assert {r.task.worker for r in responses} == {homes[0]}


def test_a_shard_waits_for_its_busy_home_worker_rather_than_another_idle_one(
    dask_cluster: Any,
) -> None:
    import dask
    from conftest import wait_until
    from distributed import Client

    GATE.clear()
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        cluster = local_cluster(2)  # (without stealing, only placement decides)
    with cluster, Client(cluster, set_as_default=False) as client:
        homes = sorted(client.nthreads())
        blocker = client.submit(wait_at_gate, workers=[homes[0]], pure=False)
        assert wait_until(lambda: blocker.key in client.processing()[homes[0]], 10)
        responses: list[Any] = []

        def fetch() -> None:
            urls = ["http://a.test/1", "http://b.test/2"]
            run = _dask_fetch.fetch_on_cluster(urls, client=client, shards=1, fetch=recording_fetch)
            responses.extend(run)

        def placed() -> bool:  # the shard's task is on a worker (or done, if not held)
            keys = [str(k) for ks in client.processing().values() for k in ks]
            return bool(responses) or any(k.startswith("recording_fetch") for k in keys)

        thread = threading.Thread(target=fetch)
        thread.start()
        try:
            assert wait_until(placed, 10)
        finally:
            GATE.set()
            thread.join(30)
        blocker.result()
    assert {r.task.worker for r in responses} == {homes[0]}  # shard 0's home: the first
