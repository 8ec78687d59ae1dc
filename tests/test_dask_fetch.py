"""The sharded fetch on the session's Dask cluster, against the test aiohttp server: responses
in input order, per-host and total limits held for the whole cluster (the server records the
requests in flight), hosts sharded across the workers."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _dask_cluster import DaskCluster

from plait import _dask_fetch

if TYPE_CHECKING:
    from http_server import Server

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("dask_cluster")]


def test_hosts_go_to_stable_shards() -> None:
    assert _dask_fetch.host_of("http://Example.com:80/x") == "example.com"
    assert _dask_fetch.host_of("not a url") == ""
    shards = {_dask_fetch.shard_of(f"http://h{i}.test/p", 4) for i in range(40)}
    assert shards == {0, 1, 2, 3}
    assert _dask_fetch.shard_of("http://a.test/1", 4) == _dask_fetch.shard_of("http://a.test/2", 4)


def test_concurrency_is_split_and_per_host_kept() -> None:
    mine = _dask_fetch.split_options({"concurrency": 10, "per_host": 3, "rate": "5/s"}, 4)
    assert mine["concurrency"] == 2 and mine["per_host"] == 3 and mine["rate"] == "5/s"
    assert _dask_fetch.split_options({}, 3)["concurrency"] == 33


def test_responses_come_back_in_input_order_across_blocks(server: Server) -> None:
    port = server.port
    urls = [
        f"http://{host}:{port}/json/{i}"
        for i, host in zip(range(30), itertools.cycle(["127.0.0.1", "localhost"]), strict=False)
    ]
    responses = list(_dask_fetch.fetch_on_cluster(urls, block=7, read="json", concurrency=4))
    assert [r.index for r in responses] == list(range(30))
    assert [r.url for r in responses] == urls
    assert [r.body for r in responses] == [{"name": str(i)} for i in range(30)]


def test_progress_bar_counts_the_responses_here(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    import plait.http

    urls = [server.url("/ok/1"), server.url("/status/404"), server.url("/ok/2")]
    list(plait.http.fetch_all(urls, backend="dask", progress=True, retries=0))
    err = capsys.readouterr().err
    assert "ok=2 failed=1" in err and "fetch: 3req" in err  # named, counted in requests


def test_per_host_limit_holds_for_the_whole_cluster(
    server: Server, dask_cluster: DaskCluster
) -> None:
    server.clear()
    urls = [server.url(f"/slow?s=0.1&i={i}") for i in range(24)]
    responses = list(
        _dask_fetch.fetch_on_cluster(urls, block=8, per_host=3, concurrency=40, shards=2)
    )
    assert all(r.ok for r in responses)
    assert server.max_in_flight == 3  # reached, never passed, though 2 workers fetch


def test_total_concurrency_holds_across_hosts(server: Server) -> None:
    server.clear()
    port = server.port
    urls = [
        f"http://{host}:{port}/slow?s=0.1&i={i}"
        for i, host in zip(range(16), itertools.cycle(["127.0.0.1", "localhost"]), strict=False)
    ]
    responses = list(_dask_fetch.fetch_on_cluster(urls, concurrency=2, shards=2))
    assert all(r.ok for r in responses)
    assert server.max_in_flight <= 2


def test_an_endless_input_is_read_one_block_at_a_time(server: Server) -> None:
    pulled = 0

    def endless():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield server.url(f"/ok/{i}")

    stream = _dask_fetch.fetch_on_cluster(endless(), block=5)
    first = list(itertools.islice(stream, 3))
    stream.close()  # type: ignore[attr-defined]
    assert [r.index for r in first] == [0, 1, 2]
    assert pulled <= 5 * _dask_fetch.BLOCKS_IN_FLIGHT + 1


# --- the public doors: fetch_all(backend="dask") and plait fetch --backend dask --------------


def _transitions(address: str) -> int:
    """How many task transitions the scheduler has made: it grows only when work runs there."""
    from distributed import Client

    with Client(address) as client:
        count: int = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.transition_counter
        )
    return count


def test_fetch_all_on_the_cluster_with_the_per_host_limit(
    server: Server, dask_cluster: DaskCluster
) -> None:
    from plait.http import fetch_all

    server.clear()
    before = _transitions(dask_cluster.address)
    urls = [server.url(f"/slow?s=0.05&i={i}") for i in range(12)]
    responses = list(fetch_all(urls, backend="dask", per_host=2, concurrency=20))
    assert [r.url for r in responses] == urls and all(r.ok for r in responses)
    assert server.max_in_flight == 2  # held for the whole cluster, not per worker
    assert _transitions(dask_cluster.address) > before  # the shards ran on the cluster


def test_fetch_all_refuses_an_unknown_backend_and_a_stray_address() -> None:
    from plait.http import fetch_all

    with pytest.raises(ValueError, match="'asyncio' or 'dask'"):
        fetch_all(["http://127.0.0.1:1/"], backend="thread")
    with pytest.raises(TypeError, match="backend='dask'"):
        fetch_all(["http://127.0.0.1:1/"], address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError):  # options are checked before the cluster is reached
        fetch_all(["http://127.0.0.1:1/"], backend="dask", concurrency=0)


def test_cli_fetch_on_the_cluster_resumes(
    server: Server, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    urls = [server.url(f"/ok/{i}") for i in range(6)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"url": urls[0], "status": 200}) + "\n")  # a run cut short
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run(
        [sys.executable, "-m", "plait", "fetch", str(tmp_path / "urls.txt"), "-o", str(out),
         "--resume", "--backend", "dask", "--address", dask_cluster.address, "-q"],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONPATH=src),
    )
    assert done.returncode == 0, done.stderr
    recorded = [json.loads(line)["url"] for line in out.read_text().splitlines()]
    assert sorted(recorded) == sorted(urls)  # each URL exactly once: the first was skipped
    assert all(json.loads(line)["status"] == 200 for line in out.read_text().splitlines())
