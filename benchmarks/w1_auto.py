"""W1 auto side by side: ``plait.map(tiny, range(200k))`` with auto's choice against the plain
serial loop, each the first call of a fresh interpreter (auto measures once per function, so a
first call pays the trial) and a repeated call; interleaved runs, medians and spread.

    PYTHONPATH=CHECKOUT/src python benchmarks/w1_auto.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N = 200_000


def child(how: str) -> None:
    sys.path.insert(0, HERE)
    from workloads import tiny

    import plait

    def run() -> object:
        if how == "serial":
            return [tiny(x) for x in range(N)]
        return plait.map(tiny, range(N))

    first = time.perf_counter()
    run()
    second = time.perf_counter()
    run()
    print(second - first, time.perf_counter() - second)


def measure(how: str) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", how], capture_output=True, text=True, check=True
    )
    first, repeated = done.stdout.split()
    return float(first), float(repeated)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
        return
    sys.path.insert(0, HERE)
    from harness import cache_bytecode

    import plait

    cache_bytecode(os.path.dirname(plait.__file__), HERE)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    times: dict[str, list[tuple[float, float]]] = {"serial": [], "auto": []}
    for _ in range(runs):
        for how in times:
            times[how].append(measure(how))
    print(f"load {os.getloadavg()[0]:.2f}, {runs} runs, W1 {N:,} tiny calls")
    for index, label in enumerate(["first call", "repeated call"]):
        serial = statistics.median(t[index] for t in times["serial"])
        auto = [t[index] for t in times["auto"]]
        print(
            f"{label:14} serial {serial:.3f} s  auto {statistics.median(auto):.3f} s "
            f"[{min(auto):.3f}-{max(auto):.3f}]  auto/serial {statistics.median(auto) / serial:.2f}"
        )
    explained = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import plait; "
            "from workloads import tiny; plait.map(tiny, range(200_000), explain=True)",
            HERE,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print((explained.stdout + explained.stderr).strip()[:600])


if __name__ == "__main__":
    main()
