"""The public surface is exactly what plait/__init__.py exports, and importing it stays cheap."""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import inspect
import subprocess
import sys
import types

import pytest
from conftest import subprocess_env

import plait

CORE_NAMES = {
    "BackendUnavailable",
    "Outcome",
    "PlaitError",
    "Pool",
    "SerializationError",
    "TaskTimeout",
    "WorkerCrashed",
    "amap",
    "imap",
    "map",
}
# Heavy or optional dependencies that only the features using them may import.
LAZY_MODULES = [
    "aiohttp",
    "tqdm",
    "cloudpickle",
    "dask",
    "distributed",
    "rich",
    "hypothesis",
    "uvloop",
    "multiprocessing",
    "concurrent.futures.process",
    "plait.http",
    "plait.testing",
    "plait._backends._process",
]


def public_names() -> set[str]:
    for name in plait.__all__:
        getattr(plait, name)  # names loaded on first use (WorkerCrashed) join the namespace
    return {
        name
        for name, value in vars(plait).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_is_sorted_and_unique() -> None:
    assert list(plait.__all__) == sorted(plait.__all__)
    assert len(set(plait.__all__)) == len(plait.__all__)


def test_all_equals_the_public_names() -> None:
    assert set(plait.__all__) == public_names()


def test_core_names_are_exported() -> None:
    assert set(plait.__all__) >= CORE_NAMES


@pytest.mark.parametrize("name", sorted(plait.__all__))
def test_exported_objects_claim_module_plait(name: str) -> None:
    obj = getattr(plait, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__ == "plait", f"plait.{name}.__module__ is {obj.__module__!r}"


@pytest.mark.parametrize("name", sorted(plait.__all__))
def test_exported_objects_are_documented(name: str) -> None:
    assert inspect.getdoc(getattr(plait, name)), f"plait.{name} has no docstring"


def test_exception_hierarchy() -> None:
    errors = [
        getattr(plait, n)
        for n in plait.__all__
        if inspect.isclass(getattr(plait, n)) and issubclass(getattr(plait, n), BaseException)
    ]
    assert errors
    for error in errors:
        assert issubclass(error, plait.PlaitError), error
    assert issubclass(plait.PlaitError, Exception)
    assert issubclass(plait.BackendUnavailable, ImportError)
    assert issubclass(plait.TaskTimeout, TimeoutError)
    crash = plait.WorkerCrashed("died", -9)
    assert crash.exitcode == -9


def test_pool_is_an_executor_subclass() -> None:
    assert issubclass(plait.Pool, concurrent.futures.Executor)


def test_outcome_fields() -> None:
    good = plait.Outcome(3, value=9)
    bad = plait.Outcome(4, error=ValueError("x"))
    assert (good.index, good.ok, good.value, good.error) == (3, True, 9, None)
    assert (bad.index, bad.ok, bad.value) == (4, False, None)
    assert good.unwrap() == 9
    with pytest.raises(ValueError):
        bad.unwrap()


def test_fake_clock_is_public_in_plait_testing() -> None:
    from plait.testing import FakeClock

    assert plait.testing.FakeClock is FakeClock
    assert FakeClock.__module__ == "plait.testing"
    assert plait.testing.__all__ == ["FakeClock"]
    clock = FakeClock(start=10.0)
    waits: list[float] = []

    async def started(i: int) -> float:
        return clock.now()

    # 4 starts at 2/s, all at once in real time; then the retries' backoff on the same clock
    assert plait.map(started, range(4), rate="2/s", clock=clock) == [10.0, 10.5, 11.0, 11.5]

    async def flaky(i: int) -> float:
        waits.append(clock.now())
        if len(waits) < 3:
            raise OSError("try again")
        return clock.now()

    assert plait.map(flaky, [0], retries=5, clock=clock) == [waits[-1]]
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # it waited in virtual time


def test_fake_clock_example_runs() -> None:
    """The example in FakeClock's docstring, run as a doctest through the public name."""
    import doctest

    from plait.testing import FakeClock

    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(FakeClock, "plait.testing.FakeClock"):
        runner.run(test)
    assert runner.tries >= 5
    assert runner.failures == 0


def test_version_matches_the_distribution() -> None:
    assert plait.__version__ == importlib.metadata.version("plait")


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=True,
    )
    return done.stdout


def test_plait_testing_is_imported_on_first_use() -> None:
    code = "import sys, plait; print('plait.testing' in sys.modules, plait.testing.FakeClock())"
    assert _fresh(code).startswith("False <plait.testing.FakeClock object")


def test_import_does_not_pull_heavy_dependencies() -> None:
    code = f"import sys, plait; print([m for m in {LAZY_MODULES!r} if m in sys.modules])"
    assert _fresh(code).strip() == "[]"


def test_import_is_fast() -> None:
    code = "import time; t = time.perf_counter(); import plait; print(time.perf_counter() - t)"
    best = min(float(_fresh(code)) for _ in range(5))
    # The budget is 50 ms over a bare interpreter, measured by the benchmarks; this only
    # catches a heavy import creeping in.
    assert best < 0.15, f"import plait took {best * 1000:.0f} ms"
