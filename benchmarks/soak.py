"""Soak: 1,000,000 items through plait.imap with failures and retries; memory must stay flat.

Reports throughput with policies against the same run with policies off, and peak RSS.
    python benchmarks/soak.py [--items N] [--backend thread]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plait
from plait._clock import FakeClock


def flaky(x: int) -> int:
    """Every 1000th item fails on its first call only (odd items: always)."""
    if x % 1000 == 999:
        raise ValueError(x)
    return x + 1


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(items: int, backend: str, **policies: object) -> tuple[float, int, int]:
    ok = failed = 0
    start = time.perf_counter()
    for outcome in plait.imap(flaky, range(items), backend=backend, errors="collect", **policies):
        if outcome.ok:
            ok += 1
        else:
            failed += 1
    return time.perf_counter() - start, ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--backend", default="thread")
    args = parser.parse_args()
    base_s, base_ok, base_failed = run(args.items, args.backend)
    rss_after_base = peak_rss_mb()
    pol_s, pol_ok, pol_failed = run(args.items, args.backend, retries=2, clock=FakeClock())
    print(f"items {args.items:,} on backend={args.backend}")
    for label, took, ok, failed in (
        ("policies off", base_s, base_ok, base_failed),
        ("retries=2   ", pol_s, pol_ok, pol_failed),
    ):
        rate = args.items / took
        print(f"{label}: {took:6.2f} s  {rate:>10,.0f} items/s  ok={ok:,} failed={failed:,}")
    print(f"ratio (policies on / off): {pol_s / base_s:.2f}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (after the first run: {rss_after_base:.0f} MB)")
    assert base_ok + base_failed == args.items and pol_ok + pol_failed == args.items


if __name__ == "__main__":
    main()
