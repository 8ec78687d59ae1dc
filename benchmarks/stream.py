"""W6 stream: items read ahead of a stalled consumer, and the time to the first result.

Each run is a child process (``stream_child.py``) in its own process group, bounded by a
timeout; whatever it leaves behind (peers' workers) is killed with the group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import Goal, Report, Sizes, goal_le, has_module

CHILD = Path(__file__).with_name("stream_child.py")
WORKERS = 2  # stream_child.WORKERS


@dataclass(frozen=True, slots=True)
class StreamContender:
    key: str  # the name stream_child.py knows
    name: str
    bound: int | None  # 4 x workers x chunksize, where the chunk size is known
    needs: str = ""


@dataclass(slots=True)
class StreamRuns:
    first_s: list[float] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    never: int = 0  # runs with no first result
    capped: bool = False
    error: str | None = None


CONTENDERS = [
    StreamContender("plait-thread", "plait thread chunksize=1", 4 * WORKERS),
    StreamContender("plait-process", "plait process chunksize=1", 4 * WORKERS),
    StreamContender("plait-asyncio", "plait asyncio chunksize=1", 4 * WORKERS),
    StreamContender("plait-process-auto-chunks", "plait process, auto chunks", None),
    StreamContender("plait-auto", "plait auto (defaults)", None),
    StreamContender("mp-pool-imap", "multiprocessing.Pool.imap", None),
    StreamContender("mpire-imap", "mpire imap", None, "mpire"),
    StreamContender("joblib-generator", "joblib return_as=generator", None, "joblib"),
    StreamContender("process-pool-executor", "ProcessPoolExecutor.map", None),
    StreamContender("thread-pool-executor", "ThreadPoolExecutor.map", None),
]


def run_child(key: str, sizes: Sizes) -> dict[str, object]:
    """One bounded child run; its whole process group is killed afterwards."""
    stall_s, timeout_s = sizes.stream_stall_s, sizes.stream_timeout_s
    with tempfile.TemporaryDirectory(prefix="plait-bench-w6-") as folder:
        out_file, err_file = Path(folder, "result.json"), Path(folder, "stderr.txt")
        args = [key, str(stall_s), str(timeout_s), str(sizes.stream_cap), str(out_file)]
        with err_file.open("w") as err:
            child = subprocess.Popen(
                [sys.executable, str(CHILD), *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        try:
            _wait_unreaped(child.pid, timeout_s + stall_s + 30)
        finally:
            _kill_group(child.pid)  # the leader is a zombie until reaped: its group id is ours
            child.wait()
        if out_file.exists():
            result: dict[str, object] = json.loads(out_file.read_text())
            return result
        lines = err_file.read_text().strip().splitlines() or [f"exit code {child.returncode}"]
        return {"error": lines[-1][:120]}


def _wait_unreaped(pid: int, timeout_s: float) -> None:
    """Wait for the child to exit, without reaping it (so its pid cannot be reused yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.02)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _record(runs: StreamRuns, result: dict[str, object]) -> None:
    if "error" in result:
        runs.error = str(result["error"])
        return
    first, read = result.get("first_s"), result.get("read")
    if isinstance(first, float | int):
        runs.first_s.append(float(first))
    else:
        runs.never += 1
    if isinstance(read, int):
        runs.read.append(read)
    runs.capped = runs.capped or bool(result.get("capped"))


def w6_stream(report: Report, sizes: Sizes, repeat: int) -> list[Goal]:
    lineup = [c for c in CONTENDERS if not c.needs or has_module(c.needs)]
    missing = [c for c in CONTENDERS if c not in lineup]
    runs = {c.key: StreamRuns() for c in lineup}
    for round_ in range(repeat):
        for contender in lineup[round_ % len(lineup) :] + lineup[: round_ % len(lineup)]:
            if runs[contender.key].error is None:
                _record(
                    runs[contender.key],
                    run_child(contender.key, sizes),
                )
        print(f"  round {round_ + 1}/{repeat} done", file=sys.stderr, flush=True)
    report.section(
        "W6 stream: an infinite generator, the consumer takes 1 result and stalls",
        f"{WORKERS} workers each; items the generator produced {sizes.stream_stall_s} s after the "
        f"first result (medians of {repeat}); runs stop at {sizes.stream_cap:,} items or "
        f"{sizes.stream_timeout_s:.0f} s without a result. Bound: 4 x workers x chunksize.",
        "",
        "| contender | first result s | items read ahead | bound |",
        "|---|---:|---:|---:|",
    )
    for c in lineup:
        report.add(_row(c, runs[c.key], sizes.stream_cap))
    report.notes([f"{c.name}: skipped, {c.needs} is not installed" for c in missing])
    return _goals(lineup, runs)


def _row(contender: StreamContender, runs: StreamRuns, cap: int) -> str:
    name = f"**{contender.name}**" if contender.key.startswith("plait") else contender.name
    if runs.error is not None:
        return f"| {name} | failed: {runs.error} | — | — |"
    first = f"{statistics.median(runs.first_s):.3f}" if runs.first_s else "never"
    if runs.never and runs.first_s:
        first += f" ({runs.never} runs never)"
    read = f"{statistics.median(runs.read):,.0f}" if runs.read else "—"
    if runs.capped:
        read = f"≥ {cap:,} (cap)"
    bound = "—" if contender.bound is None else str(contender.bound)
    return f"| {name} | {first} | {read} | {bound} |"


def _goals(lineup: list[StreamContender], runs: dict[str, StreamRuns]) -> list[Goal]:
    goals = []
    for c in (c for c in lineup if c.bound is not None):
        r = runs[c.key]
        first = statistics.median(r.first_s) if r.first_s and not r.never else None
        read = max(r.read) if r.read else None
        figure = (
            "never" if first is None else f"median {first:.3f} s, slowest {max(r.first_s):.3f} s"
        )
        goals.append(goal_le(f"W6 {c.name}: first result < 0.5 s", first, 0.5, figure))
        figure = f"at most {read} items read ahead, bound {c.bound}"
        goals.append(
            goal_le(f"W6 {c.name}: read-ahead ≤ 4 x workers x chunksize", read, c.bound, figure)
        )
    return goals
