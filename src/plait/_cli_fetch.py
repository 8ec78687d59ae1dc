"""``plait fetch URLS_FILE|-``: fetch many URLs at once, one JSON line per URL.

    plait fetch urls.txt -c 200 --per-host 8 --rate 50/s -o results.jsonl
    plait fetch urls.txt -o results.jsonl --resume      # after a crash: only what is missing

Each line of output has ``url``, ``status``, ``bytes``, ``elapsed``, ``attempts`` and ``error``,
written as each URL finishes and flushed at once, so a run killed at any moment leaves a valid
record of what it finished; ``--resume`` reads it back and fetches only the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import IO, Any

from ._cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, silence_stdout


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``fetch`` subcommand; its handler is ``args.handler(args) -> exit code``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fetch",
        help="fetch many URLs at once, one JSON line per URL",
        description=(
            "Fetch every URL of a file (one per line; blank lines and # comments are skipped) "
            "at once and write one JSON line per URL: url, status, bytes, elapsed, attempts, "
            "error. Exit status: 0 all fetched, 1 some failed, 2 bad usage, 130 interrupted."
        ),
    )
    parser.add_argument("urls", metavar="URLS_FILE|-", help="file of URLs, or - for stdin")
    parser.add_argument("-c", "--concurrency", type=_positive, default=100,
                        help="requests in flight (default 100)")
    parser.add_argument("--per-host", type=_positive, default=None,
                        help="requests in flight per host (default: no cap below -c)")
    parser.add_argument("--rate", default=None,
                        help="starts per host, e.g. 50/s or 1000/min (default: no limit)")
    parser.add_argument("--retries", type=_non_negative, default=3,
                        help="extra attempts after errors, timeouts, 429 and 5xx (default 3)")
    parser.add_argument("--timeout", type=_seconds, default=30.0,
                        help="seconds per attempt (default 30)")
    parser.add_argument("-o", "--output", default=None,
                        help="write the JSON lines here (default: stdout)")
    parser.add_argument("--resume", action="store_true",
                        help="skip URLs already recorded in the output file, append the rest")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary on stderr")
    parser.add_argument("--backend", choices=("asyncio", "dask"), default="asyncio",
                        help="dask: shard the URLs by host over a Dask cluster's workers")
    parser.add_argument("--address", default=None,
                        help="the Dask scheduler (default: as Dask finds it; see docs/dask.md)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """The ``fetch`` handler: returns the process exit status."""
    if args.resume and args.output is None:
        print("plait fetch: --resume needs -o FILE (the results to resume)", file=sys.stderr)
        return EXIT_USAGE
    from .http import afetch_all, fetch_all

    try:
        done = recorded_urls(args.output) if args.resume else set()
        source = open_urls(args.urls)
    except OSError as exc:
        print(f"plait fetch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        out = _open_output(args.output, append=args.resume)
    except OSError as exc:
        _close(source, sys.stdout)
        print(f"plait fetch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options: dict[str, Any] = dict(
        concurrency=args.concurrency, per_host=args.per_host, rate=args.rate,
        retries=args.retries, timeout=args.timeout, read="none",
    )
    try:
        urls = _skipping(read_urls(source), done)
        if args.backend == "dask":
            results: Iterator[Any] | AsyncIterator[Any] = fetch_all(
                urls, backend="dask", address=args.address, progress=not args.quiet, **options
            )
        else:
            results = afetch_all(urls, ordered=False, progress=not args.quiet, **options)
    except (OSError, ValueError, ImportError) as exc:
        _close(source, out)
        print(f"plait fetch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary = Summary(skipped=len(done))
    try:
        _drain(results, out, summary)
    except KeyboardInterrupt:
        summary.interrupted = True
    except BrokenPipeError:  # e.g. `plait fetch urls.txt | head`
        silence_stdout()
        return EXIT_OK
    finally:
        _close(source, out)
    if not args.quiet:
        print(summary.text(args.output), file=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def _drain(results: Iterator[Any] | AsyncIterator[Any], out: IO[str], summary: Summary) -> None:
    """Write each result as it comes, flushed at once (a kill loses no finished line).

    The run and the writing share one event loop in this thread: no hand-off to a consumer
    thread, which measurably costs throughput (see benchmarks/w5_http.py)."""

    if isinstance(results, Iterator):  # the cluster's stream
        for response in results:
            _write(response, out, summary)
        return

    stream: AsyncIterator[Any] = results

    async def drain() -> None:
        async for response in stream:
            _write(response, out, summary)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(drain())
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called inside a running loop
        pool.submit(asyncio.run, drain()).result()


def _write(response: Any, out: IO[str], summary: Summary) -> None:
    out.write(json.dumps(result_line(response)) + "\n")
    out.flush()
    summary.add(response)


def result_line(response: Any) -> dict[str, Any]:
    error = response.error
    return {
        "url": response.url,
        "status": response.status,
        "bytes": response.nbytes,
        "elapsed": round(response.elapsed, 4),
        "attempts": response.attempts,
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }


def open_urls(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    return open(path, encoding="utf-8")  # closed by run()


def read_urls(lines: Iterable[str]) -> Iterator[str]:
    """URLs from lines, lazily: blank lines and # comments skipped."""
    for line in lines:
        url = line.strip()
        if url and not url.startswith("#"):
            yield url


def _skipping(urls: Iterable[str], done: set[str]) -> Iterator[str]:
    if not done:
        yield from urls
        return
    for url in urls:
        if url not in done:
            yield url


def recorded_urls(path: str) -> set[str]:
    """URLs already in a results file; a last line cut short by a kill is removed first."""
    if not os.path.exists(path):
        return set()
    _drop_partial_line(path)
    done: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["url"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _drop_partial_line(path: str) -> None:
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        keep = size - 1
        step = 1 << 16
        while keep > 0:  # search back for the last complete line
            start = max(0, keep - step)
            handle.seek(start)
            cut = handle.read(keep - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
        handle.truncate(keep)


def _open_output(path: str | None, *, append: bool) -> IO[str]:
    if path is None:
        return sys.stdout
    return open(path, "a" if append else "w", encoding="utf-8")  # closed by run()


def _close(source: IO[str], out: IO[str]) -> None:
    if source is not sys.stdin:
        source.close()
    if out is not sys.stdout:
        out.close()


class Summary:
    """Counts for the last line on stderr."""

    def __init__(self, skipped: int = 0) -> None:
        self.started = time.perf_counter()
        self.skipped = skipped
        self.total = self.failed = self.retries = 0
        self.errors: Counter[str] = Counter()
        self.interrupted = False

    def add(self, response: Any) -> None:
        self.total += 1
        self.retries += max(0, response.attempts - 1)
        if response.error is not None:
            self.failed += 1
            self.errors[type(response.error).__name__] += 1

    def text(self, output: str | None) -> str:
        took = time.perf_counter() - self.started
        rate = self.total / took if took > 0 else 0.0
        parts = [f"plait fetch: {self.total} URLs in {took:.1f} s ({rate:.0f}/s): "
                 f"{self.total - self.failed} ok, {self.failed} failed, {self.retries} retries"]
        if self.errors:
            kinds = ", ".join(f"{name} {n}" for name, n in self.errors.most_common())
            parts.append(f"failures: {kinds}")
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already in {output})")
        if self.interrupted:
            parts.append(f"interrupted: run again with --resume -o {output or 'FILE'} to finish")
        return "; ".join(parts)


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value
