"""Run CPython's own test_concurrent_futures against plait's drop-in executors.

    ./dev cf-suite [-k PATTERN] [--timeout S]     (run it under Python 3.13, see docs/cf-suite.md)

``concurrent.futures.ThreadPoolExecutor`` and ``ProcessPoolExecutor`` are swapped for
``plait.ThreadPoolExecutor`` and ``plait.ProcessPoolExecutor`` in every interpreter the suite
starts (its own ``python -c`` children included): a ``.pth`` file, present only while this runs
and inert without ``PLAIT_CF_SUITE_PATCH`` in the environment, installs a lazy attribute hook on
``concurrent.futures`` before any test imports it. Each test module runs in its own child
process under a time limit, so a hang is reported as one, never waited on forever.

Skipped tests are those listed in SKIPS, each with its reason (copied into docs/cf-suite.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
import unittest
from collections import Counter
from pathlib import Path

PACKAGE = "test.test_concurrent_futures"
MODULES = (
    "test_as_completed",
    "test_deadlock",
    "test_future",
    "test_init",
    "test_process_pool",
    "test_shutdown",
    "test_thread_pool",
    "test_wait",
)
PTH_NAME = "plait_cf_suite.pth"
PATCH = """
import concurrent.futures as _cf

def _plait_executors(name, _stdlib=_cf.__getattr__):
    if name in ("ThreadPoolExecutor", "ProcessPoolExecutor"):
        import plait

        value = getattr(plait, name)
        setattr(_cf, name, value)
        return value
    return _stdlib(name)

_cf.__getattr__ = _plait_executors
"""

_PROCESSES = "reads the stdlib's private `executor._processes` (multiprocessing.Process objects)"
_BROKEN = (
    "expects the stdlib's whole-pool-breaks behaviour; plait fails only the task at fault "
    "(with the error that occurred) and the pool goes on"
)
_INHERIT = (
    "passes a multiprocessing object that can only be inherited by a child multiprocessing "
    "starts itself; plait's workers are fresh interpreters"
)
# (executor kind, test method) -> why it is skipped; kind is "thread", "process" or "other".
SKIPS: dict[tuple[str, str], str] = {
    ("process", "test_killed_child"): f"{_PROCESSES}; {_BROKEN}",
    ("process", "test_saturation"): f"{_PROCESSES}; {_INHERIT} (a Semaphore)",
    ("process", "test_idle_process_reuse_one"): _PROCESSES,
    ("process", "test_idle_process_reuse_multiple"): _PROCESSES,
    ("process", "test_max_tasks_per_child"): _PROCESSES,
    ("process", "test_processes_terminate"): f"{_PROCESSES}; {_INHERIT} (a Semaphore)",
    ("process", "test_context_manager_shutdown"): _PROCESSES,
    ("process", "test_del_shutdown"): (
        "reads the stdlib's private `_executor_manager_thread`, `_processes`, `_call_queue`"
    ),
    ("process", "test_shutdown_no_wait"): (
        "reads the stdlib's private `_executor_manager_thread`, `_processes`, `_call_queue`"
    ),
    ("process", "test_shutdown_deadlock_pickle"): (
        "reads the stdlib's private `_executor_manager_thread`"
    ),
    ("process", "test_max_tasks_per_child_defaults_to_spawn_context"): (
        "reads the stdlib's private `_mp_context`"
    ),
    ("process", "test_python_finalization_error"): (
        "mocks threading's private `_start_joinable_thread` to fail the stdlib's second "
        "internal thread (its queue feeder)"
    ),
    ("process", "test_error_at_task_unpickle"): _BROKEN,
    ("process", "test_error_during_result_unpickle_in_result_handler"): _BROKEN,
    ("process", "test_exit_during_result_unpickle_in_result_handler"): _BROKEN,
    ("process", "test_initializer"): (
        f"FailingInitializer: {_INHERIT} (a Queue, as initargs); it also polls the private "
        "`_broken`"
    ),
    ("other", "test_spawn"): (
        "FailingInitializerResourcesTest: runs the process FailingInitializer test above"
    ),
    ("other", "test_forkserver"): (
        "FailingInitializerResourcesTest: runs the process FailingInitializer test above"
    ),
}
PLAIT_SKIP = "plait: "


def executor_kind(test_id: str) -> str:
    cls = test_id.split(".")[-2]
    if cls.startswith("ThreadPool"):
        return "thread"
    if cls.startswith("ProcessPool"):
        return "process"
    return "other"


def skip_reason(test_id: str) -> str | None:
    cls, method = test_id.split(".")[-2:]
    if method == "test_initializer" and "FailingInitializer" not in cls:
        return None
    reason = SKIPS.get((executor_kind(test_id), method))
    return None if reason is None else PLAIT_SKIP + reason


def _tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    found: list[unittest.TestCase] = []
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            found.extend(_tests(test))
        else:
            found.append(test)
    return found


def _apply_skips(suite: unittest.TestSuite, pattern: str | None) -> unittest.TestSuite:
    kept = unittest.TestSuite()
    for test in _tests(suite):
        if pattern and pattern not in test.id():
            continue
        reason = skip_reason(test.id())
        if reason is not None:
            name = test.id().split(".")[-1]
            setattr(test, name, unittest.skip(reason)(getattr(test, name)))
        kept.addTest(test)
    return kept


class _Recorder(unittest.TextTestResult):
    """Writes one JSON line per test as it starts and ends, so a killed run still says which
    test was running."""

    log: Path

    def _write(self, record: dict[str, str]) -> None:
        with self.log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._write({"id": test.id(), "event": "start"})

    def _outcome(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        self._write({"id": test.id(), "event": outcome, "detail": detail[-3000:]})

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._outcome(test, "passed")

    def addFailure(self, test, err) -> None:  # type: ignore[no-untyped-def]
        super().addFailure(test, err)
        self._outcome(test, "failed", self.failures[-1][1])

    def addError(self, test, err) -> None:  # type: ignore[no-untyped-def]
        super().addError(test, err)
        self._outcome(test, "failed", self.errors[-1][1] if self.errors else "")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._outcome(test, "skipped", reason)

    def addExpectedFailure(self, test, err) -> None:  # type: ignore[no-untyped-def]
        super().addExpectedFailure(test, err)
        self._outcome(test, "passed")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome(test, "failed", "unexpected success")


def run_module(module: str, log: Path, pattern: str | None) -> None:
    """In the child: run one test module, recording each test's outcome in ``log``."""
    import concurrent.futures

    import plait

    swapped: list[object] = [
        concurrent.futures.ThreadPoolExecutor,
        concurrent.futures.ProcessPoolExecutor,
    ]
    assert swapped == [plait.ThreadPoolExecutor, plait.ProcessPoolExecutor], "patch not active"

    suite = unittest.defaultTestLoader.loadTestsFromName(f"{PACKAGE}.{module}")
    _Recorder.log = log
    runner = unittest.TextTestRunner(
        resultclass=_Recorder,  # type: ignore[arg-type]
        verbosity=2,
        stream=sys.stderr,
    )
    runner.run(_apply_skips(suite, pattern))


def _install_pth(patch_file: Path) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    pth = site / PTH_NAME
    pth.write_text(
        "import os; exec(open(os.environ['PLAIT_CF_SUITE_PATCH']).read(), {}) "
        "if os.environ.get('PLAIT_CF_SUITE_PATCH') else None\n"
    )
    patch_file.write_text(PATCH)
    return pth


def _collect(log: Path) -> dict[str, tuple[str, str]]:
    """test id -> (outcome, detail); a test that started and never ended hung."""
    results: dict[str, tuple[str, str]] = {}
    if not log.exists():
        return results
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "start":
            results.setdefault(record["id"], ("hung", "killed at the module's time limit"))
        else:
            results[record["id"]] = (record["event"], record.get("detail", ""))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="pattern", help="only tests whose id contains this")
    parser.add_argument("--timeout", type=float, default=900, help="per module, seconds")
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true", help="print failure details")
    args = parser.parse_args()
    if args.module:
        run_module(args.module, Path(args.log), args.pattern)
        return 0
    if sys.version_info[:2] < (3, 13):
        print(
            "cf-suite runs CPython 3.13's test_concurrent_futures: use "
            "PLAIT_PYTHON=~/.pyenv/versions/3.13.0/bin/python3 PLAIT_VENV=.venv313 ./dev cf-suite",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="plait-cf-") as tmp:
        patch_file = Path(tmp) / "patch.py"
        pth = _install_pth(patch_file)
        try:
            results = _run_all(Path(tmp), patch_file, args)
        finally:
            pth.unlink(missing_ok=True)
    return _report(results, args.verbose)


def _run_all(tmp: Path, patch_file: Path, args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    env = {**os.environ, "PLAIT_CF_SUITE_PATCH": str(patch_file)}
    results: dict[str, tuple[str, str]] = {}
    for module in MODULES:
        log = tmp / f"{module}.jsonl"
        command = [sys.executable, __file__, "--module", module, "--log", str(log)]
        if args.pattern:
            command += ["-k", args.pattern]
        started = time.monotonic()
        output = tmp / f"{module}.out"
        with output.open("w") as sink:
            try:
                subprocess.run(command, env=env, stdout=sink, stderr=sink, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{module}: killed after {args.timeout:.0f} s", file=sys.stderr)
        found = _collect(log)
        counts = Counter(outcome for outcome, _ in found.values())
        print(f"{module}: {dict(counts)} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        if not found and not args.pattern:
            print(output.read_text()[-3000:], file=sys.stderr)
        results.update(found)
    return results


def _report(results: dict[str, tuple[str, str]], verbose: bool) -> int:
    table: dict[str, Counter[str]] = {}
    for test_id, (outcome, detail) in results.items():
        if outcome == "skipped" and detail.startswith(PLAIT_SKIP):
            outcome = "skipped by plait"
        table.setdefault(executor_kind(test_id), Counter())[outcome] += 1
    print("\nexecutor   passed  failed  hung  skipped (by the suite / by plait's list)")
    for kind in ("thread", "process", "other"):
        c = table.get(kind, Counter())
        print(
            f"{kind:<9} {c['passed']:>7} {c['failed']:>7} {c['hung']:>5} "
            f"{c['skipped']:>8} / {c['skipped by plait']}"
        )
    bad = sorted(i for i, (outcome, _) in results.items() if outcome in ("failed", "hung"))
    for test_id in bad:
        outcome, detail = results[test_id]
        print(f"{outcome.upper()}: {test_id}")
        if verbose:
            print(detail)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
