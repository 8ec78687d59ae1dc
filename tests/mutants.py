"""Mutation testing with mutmut 3: ``./dev mutants [MODULE ...]`` (not part of the test suite).

Each module that carries a promise is mutated on its own, in a scratch copy of the project
(``build/mutants/<module>/``), and only against the test files that exercise it quickly: mutmut
then runs, for each mutant, only the tests that called the mutated function. A module's run
ends with its killed / survived / timeout / no-tests counts and its score; ``--list`` shows
the modules and their tests. ``--again`` re-runs only the last run's survivors (and mutants it
did not reach, unless ``--reached``) against today's tests, keeping the other verdicts: minutes
instead of a full run.
Surviving mutants are read with ``mutmut show NAME`` inside that
module's folder. See docs/testing.md for the figures and the mutants known to be equivalent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutants"

# module -> (files mutated, test files, a pytest -k filter or ""). Tests are picked for speed:
# the module's own unit tests plus the end-to-end tests that check its promises. A survivor
# costs a run of every selected test that calls the mutated function, so the slow, randomised
# property test and (where the module does not depend on it) the process backend stay out.
_CORE = ["__init__.py", "_base.py", "_pool.py", "_thread.py", "_asyncio.py", "_inline.py"]

MODULES: dict[str, tuple[list[str], list[str], str]] = {
    "chunks": (["_chunks.py"], ["test_chunks.py", "test_conformance.py", "test_isolation.py"],
               "not process and not fork"),
    "scheduler": (
        ["_scheduler.py"],
        ["test_conformance.py", "test_policies.py", "test_escapes.py", "test_mut_scheduler.py"],
        "not process and not exactly_one",
    ),
    "policies": (["_policies.py"], ["test_policies.py"], "not exactly_one"),
    "retry": (["_retry.py"], ["test_retry.py", "test_policies.py"], "not exactly_one"),
    "ratelimit": (["_ratelimit.py"], ["test_ratelimit.py", "test_policies.py"],
                  "not exactly_one"),
    # (the public-names test reads the module's namespace, which mutmut fills with mutants)
    "http": (["http/*.py"], ["test_http.py", "test_mut_http.py"], "not public_names"),
    # fetch_all(backend="dask") and the sharding over a cluster: their tests need the real Dask
    # cluster of tests/_dask_cluster.py, which each mutant's test run starts anew (~3 s), so
    # they are a module of their own rather than a slower "http"
    "http-dask": (
        ["http/_fetch.py", "_dask_fetch.py"], ["test_dask_fetch.py", "test_mut_dask_fetch.py"], ""
    ),
    # the stable backends without the process backend, which is measured on its own (its
    # tests start worker processes, so a run of them takes far longer)
    "backends-core": (
        [f"_backends/{f}" for f in _CORE],
        ["test_backends.py", "test_pool.py", "test_conformance.py", "test_policies.py",
         "test_escapes.py", "test_chunks.py", "test_mut_backends.py"],
        # (the deleted-directory test runs a child in a folder without mutmut's configuration,
        # which mutmut's own hooks then fail to read: it can only fail there)
        "not process and not exactly_one and not fork and not was_deleted",
    ),
    "backends-process": (
        ["_backends/_process.py", "_backends/_process_worker.py", "_backends/_boot.py",
         "_backends/_wire.py", "_backends/_template.py", "_backends/_reuse.py",
         "_backends/_early.py"],
        # The process backend's own tests only: with test_conformance's and test_policies'
        # process cases (their promises are measured with "scheduler", "policies" and
        # "backends-core") 1302 mutants ran at ~0.1 a second on 2 shared cores, far too slow.
        ["test_process_faults.py", "test_process_roundtrip.py", "test_process_groups.py",
         "test_process_reuse.py", "test_mut_process.py"],
        # Left out: the tests that run a program in a temporary folder, which fail there (its
        # workers import the mutated code and cannot find mutmut's configuration; only tests
        # that run the parent in this process can be mapped to a mutant anyway), and the two
        # deadline tests, the slowest (2-3 s each; the deadline is the scheduler's promise).
        # And the shadowed-stdlib test, whose child program's workers see the csv module
        # that mutmut's own trampoline imports in every mutated interpreter.
        "not exactly_one and not round_trip_from and not empty_sys_path_entry"
        " and not replaced_after_timeouts and not what_tasks_print and not deadline"
        " and not shadows_the_stdlib",
    ),
}

_STATUS = {  # mutmut's exit codes per mutant, as in mutmut.__main__.status_by_exit_code
    "killed": "killed",
    "survived": "survived",
    "timeout": "timeout",
    "no tests": "no_tests",
    "suspicious": "suspicious",
    "skipped": "skipped",
    "segfault": "killed",
    "caught by type check": "killed",
}


def _config(files: list[str], tests: list[str], keyword: str) -> str:
    only = ", ".join(json.dumps(f"src/plait/{f}") for f in files)
    present = [f"tests/{t}" for t in tests if (ROOT / "tests" / t).exists()]
    selection = ", ".join(json.dumps(a) for a in present + (["-k", keyword] if keyword else []))
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = [{only}]\n"
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        # pytest-timeout's own limit, so that a mutant that hangs a test fails it fast
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--timeout=60"]\n'
        # the fork server forks from a process that has not run a test: no plait threads
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
    )


def _prepare(name: str) -> Path:
    files, tests, keyword = MODULES[name]
    folder = WORK / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text + _config(files, tests, keyword))
    return folder


def _counts(folder: Path) -> dict[str, int]:
    mutmut = Path(sys.executable).parent / "mutmut"
    done = subprocess.run(
        [str(mutmut), "results", "--all", "true"], cwd=folder, capture_output=True, text=True
    )
    counts: dict[str, int] = {}
    for line in done.stdout.splitlines():
        if ":" not in line:
            continue
        status = line.rsplit(":", 1)[1].strip()
        key = _STATUS.get(status, status)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _survivors(folder: Path) -> list[str]:
    mutmut = Path(sys.executable).parent / "mutmut"
    done = subprocess.run([str(mutmut), "results"], cwd=folder, capture_output=True, text=True)
    return [line.split(":")[0].strip() for line in done.stdout.splitlines() if ":" in line]


def _verdicts(folder: Path) -> dict[str, tuple[int | None, str | None]]:
    """Each mutant's exit code and its function's hash, from mutmut's files of the last run."""
    found: dict[str, tuple[int | None, str | None]] = {}
    for meta in (folder / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        hashes = data.get("hash_by_function_name", {})
        for key, code in data["exit_code_by_key"].items():
            found[key] = (code, hashes.get(key.rsplit("__mutmut_", 1)[0]))
    return found


def _refresh(name: str) -> Path:
    """The last run's folder with today's source, tests and selection (for ``--again``)."""
    files, tests, keyword = MODULES[name]
    folder = WORK / name
    for part in ("src", "tests"):
        shutil.rmtree(folder / part)
        shutil.copytree(ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text + _config(files, tests, keyword))
    # mutmut maps tests to functions from its stats, which it re-collects only for new tests:
    # a function that is new or newly called by an old test would be mapped to the new tests
    # alone, and its mutants would "survive" the tests never run. Collect them anew.
    (folder / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    return folder


def _keep_old(folder: Path, old: dict[str, tuple[int | None, str | None]], rerun: set[str]) -> None:
    """Give back the verdicts of the mutants not re-run (mutmut resets them all when the test
    selection changes): more tests can only kill more, so a killed mutant stays killed. Only
    where its function is unchanged; a changed function's mutants are new ones."""
    for meta in (folder / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        hashes = data.get("hash_by_function_name", {})
        codes = data["exit_code_by_key"]
        for key, code in codes.items():
            before = old.get(key)
            same = before is not None and before[1] == hashes.get(key.rsplit("__mutmut_", 1)[0])
            if code is None and key not in rerun and same and before is not None:
                codes[key] = before[0]
        meta.write_text(json.dumps(data))


def run(
    name: str, max_children: int, again: bool = False, reached: bool = False
) -> dict[str, int]:
    mutmut = Path(sys.executable).parent / "mutmut"
    rerun: list[str] = []
    if again and (WORK / name / "mutants").exists():
        old = _verdicts(WORK / name)
        # survived (0) and "no tests" (33); and not yet run (None) unless --reached
        redo = (0, 33) if reached else (0, 33, None)
        rerun = sorted(k for k, (code, _) in old.items() if code in redo)
        folder = _refresh(name)
    else:
        folder, old = _prepare(name), {}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    with open(folder / "mutmut.log", "w") as log:  # its progress output: for a failed run
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", str(max_children), *rerun], cwd=folder,
            env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    if rerun:
        _keep_old(folder, old, set(rerun))
    counts = _counts(folder)
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    # a mutant mutmut did not get to is not a killed one: it counts against the score
    tested = killed + counts.get("survived", 0) + counts.get("not checked", 0)
    score = 100.0 * killed / tested if tested else 0.0
    took = time.monotonic() - started
    print(f"{name:16} score {score:5.1f}%  {counts}  ({took / 60:.1f} min)", flush=True)
    if done.returncode != 0 or counts.get("not checked"):
        print(f"    INCOMPLETE: mutmut exited with {done.returncode} and left "
              f"{counts.get('not checked', 0)} mutants unchecked; see {folder / 'mutmut.log'} "
              "(e.g. 'failed to collect stats': a selected test fails without any mutant)",
              flush=True)
    for line in _per_file(folder):
        print(line, flush=True)
    for survivor in _survivors(folder):
        print(f"    survived or untested: {survivor}", flush=True)
    return counts


def _per_file(folder: Path) -> list[str]:
    """One line per mutated file: its counts and score, as for the module."""
    mutmut = Path(sys.executable).parent / "mutmut"
    done = subprocess.run(
        [str(mutmut), "results", "--all", "true"], cwd=folder, capture_output=True, text=True
    )
    files: dict[str, dict[str, int]] = {}
    for line in done.stdout.splitlines():
        if ":" not in line:
            continue
        name, status = (part.strip() for part in line.rsplit(":", 1))
        module = name.split(".x", 1)[0]  # plait._backends._wire.xǁFdConnectionǁ... -> module
        key = _STATUS.get(status, status)
        counts = files.setdefault(module, {})
        counts[key] = counts.get(key, 0) + 1
    lines = []
    for module, counts in sorted(files.items()):
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        tested = killed + counts.get("survived", 0) + counts.get("not checked", 0)
        score = 100.0 * killed / tested if tested else 0.0
        lines.append(f"    {module:36} {score:5.1f}%  {counts}")
    return lines


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for name, (files, tests, keyword) in MODULES.items():
            print(f"{name:16} {' '.join(files):16} {' '.join(tests)} {keyword and '-k ' + keyword}")
        return 0
    again = "--again" in argv
    reached = "--reached" in argv  # with --again: leave the mutants never run for later
    argv = [a for a in argv if a not in ("--again", "--reached")]
    children = 2
    if "-j" in argv:
        at = argv.index("-j")
        children = int(argv[at + 1])
        del argv[at : at + 2]
    names = argv or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {list(MODULES)}", file=sys.stderr)
        return 2
    for name in names:
        run(name, children, again, reached)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
