"""Tasks for the Dask tests: importable on the workers (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def sleep_then_double(item: tuple[int, float]) -> int:
    x, seconds = item
    time.sleep(seconds)
    return 2 * x


def fail_first_time(item: tuple[str, int]) -> int:
    """Fails on the first try of each item, wherever it runs: a file marks the first try."""
    folder, x = item
    marker = Path(folder) / str(x)
    if not marker.exists():
        marker.write_text("tried")
        raise ConnectionError(f"first try of {x}")
    return x


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
