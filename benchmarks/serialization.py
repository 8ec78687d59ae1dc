"""What crossing to a worker process costs plain data: before/after a change to serialization.

    python benchmarks/serialization.py                    # this checkout's plait
    python benchmarks/serialization.py --against OLD_SRC  # interleaved with another plait's src/

Cases (medians of the rounds; every round runs each plait in a fresh interpreter, alternating,
so that load on the machine hits both alike):

- W1 map: ``plait.map(tiny, range(200_000), backend="process")``, worker start-up included;
- W1 warm: the same on a warm ``plait.Pool`` (serialization and hand-back only);
- W2 map: 64 calls of ~12 ms pure-Python CPU work on the process backend;
- 50 MB: a 50 MB ``bytes`` argument sent to a warm worker and returned (round trip);
- encode: the parent's encoding of one chunk of 1,000 ints and of the 50 MB bytes alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BIG = 50 * 1024 * 1024
CASES = ("W1 map", "W1 warm", "W2 map", "50 MB", "encode 1k ints", "encode 50 MB")


def _timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _encoder() -> Callable[[list[Any]], Any] | None:
    """The parent's chunk encoder (private: its signature changed with the by-value resend)."""
    import inspect

    try:
        from plait._backends import _process
    except ImportError:
        return None
    encode: Any = getattr(_process, "_dumps_items", None)
    if encode is None:
        return None
    if len(inspect.signature(encode).parameters) == 2:
        return lambda items: encode(items, False)
    return encode  # type: ignore[no-any-return]


def measure(loops: int) -> dict[str, float]:
    """One round of every case, in this interpreter."""
    from workloads import spin, tiny

    import plait

    big = b"x" * BIG
    out = {
        "W1 map": _timed(lambda: plait.map(tiny, range(200_000), backend="process")),
        "W2 map": _timed(lambda: plait.map(spin, [loops] * 64, backend="process", chunksize=1)),
    }
    with plait.Pool(backend="process", workers=2) as pool:
        pool.map(tiny, range(1000))  # start the workers
        out["W1 warm"] = _timed(lambda: pool.map(tiny, range(200_000)), repeat=3)
        assert pool.submit(_identity, b"warm").result() == b"warm"
        out["50 MB"] = _timed(lambda: pool.submit(_identity, big).result(), repeat=3)
    encode = _encoder()
    if encode is not None:
        ints = list(range(1000))
        out["encode 1k ints"] = _timed(lambda: encode(ints), repeat=200)
        out["encode 50 MB"] = _timed(lambda: encode([big]), repeat=5)
    return out


def _identity(x: Any) -> Any:
    return x


def _child(src: Path, loops: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(src), str(HERE))))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(loops)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=HERE)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _table(results: dict[str, list[dict[str, float]]]) -> str:
    names = list(results)
    lines = ["| case | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for case in CASES:
        cells = []
        for name in names:
            values = [r[case] for r in results[name] if case in r]
            cells.append(f"{statistics.median(values) * 1000:.2f} ms" if values else "-")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another plait's src/ folder to compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    sys.path.insert(0, str(HERE))
    from workloads import calibrate_spin

    loops = calibrate_spin(0.012)
    sources = {"this": SRC} | ({"against": args.against} if args.against else {})
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    for round_ in range(args.rounds):
        order = list(sources.items())
        for name, src in order if round_ % 2 == 0 else order[::-1]:
            results[name].append(_child(src, loops))
    print(f"medians of {args.rounds} rounds (W1 warm, 50 MB and encode: best of each round)")
    print(_table(results))


if __name__ == "__main__":
    main()
