"""The task functions every contender runs.

They live at module level in an importable module so that peers using plain pickle
(multiprocessing, concurrent.futures, mpire) can send them to worker processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time

BLOCK = 1 << 20  # files are read 1 MiB at a time


def tiny(x: int) -> int:
    """W1, W6: the smallest useful call, so only the machinery is measured."""
    return x + 1


def spin(loops: int) -> int:
    """W2: pure-Python CPU work that holds the GIL."""
    total = 0
    for i in range(loops):
        total += i
    return total


def calibrate_spin(target_s: float) -> int:
    """The loop count that makes ``spin`` take about ``target_s`` on this machine."""
    loops = 20_000
    while True:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            spin(loops)
            samples.append(time.perf_counter() - start)
        elapsed = statistics.median(samples)
        if elapsed > 0.002:
            return max(1, round(loops * target_s / elapsed))
        loops *= 4


def nap(seconds: float) -> float:
    """W3: blocking I/O stand-in."""
    time.sleep(seconds)
    return seconds


async def async_noop(x: int) -> int:
    """W4: one trip through the event loop."""
    await asyncio.sleep(0)
    return x


async def async_tiny(x: int) -> int:
    """W6 on the asyncio backend: ``tiny`` as a coroutine."""
    return x + 1


def hash_file(path: str) -> str:
    """W7: read a large file and hash it (hashlib releases the GIL on large blocks)."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(view):
            digest.update(view[:count])
    return digest.hexdigest()


def read_file(path: str) -> int:
    """W7 baseline: read a file without hashing it (page-cache bandwidth)."""
    total = 0
    view = memoryview(bytearray(BLOCK))
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(view):
            total += count
    return total
