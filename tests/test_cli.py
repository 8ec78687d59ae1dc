"""The command line as a user runs it: ``python -m plait ...`` in a subprocess.

Each test writes a small module of task functions into its own folder and runs plait there,
so ``MODULE:FUNCTION`` is imported from the current directory as the docs say.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from conftest import subprocess_env

TASKS = textwrap.dedent('''
    import time

    def double(x):
        return 2 * x

    def same(x):
        return x

    def fail_on_three(x):
        if x == 3:
            raise ValueError("three is bad")
        return x

    def nap(x):
        time.sleep(0.01)
        return x

    def as_set(x):
        return {x}

    NOT_A_FUNCTION = 42
''')


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    (tmp_path / "numbers.jsonl").write_text("".join(f"{i}\n" for i in range(10)))
    return tmp_path


def plait_cli(folder: Path, *args: str, stdin: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *args], cwd=folder, input=stdin, capture_output=True,
        text=True, timeout=timeout, env=subprocess_env(),
    )


def lines(text: str) -> list[object]:
    return [json.loads(line) for line in text.splitlines()]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


# --- plait map ----------------------------------------------------------------------------------


def test_map_writes_one_json_line_per_input(folder: Path) -> None:
    result = plait_cli(folder, "map", "tasks:double", "numbers.jsonl")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [2 * i for i in range(10)]


def test_map_reads_stdin_and_any_json_values(folder: Path) -> None:
    given = '"ab"\n\n[1, 2]\n{"k": 1.5}\n'
    result = plait_cli(folder, "map", "tasks:same", "-", stdin=given)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["ab", [1, 2], {"k": 1.5}]


@pytest.mark.parametrize("backend", ["auto", "inline", "thread", "process", "asyncio"])
def test_map_on_every_backend(folder: Path, backend: str) -> None:
    result = plait_cli(folder, "map", "tasks:nap", "numbers.jsonl", "--backend", backend,
                       "--workers", "3", "--chunksize", "2")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == list(range(10))


def test_map_unordered_gives_every_result(folder: Path) -> None:
    result = plait_cli(folder, "map", "tasks:nap", "numbers.jsonl", "--unordered",
                       "--backend", "thread")
    assert result.returncode == 0
    assert sorted(lines(result.stdout)) == list(range(10))  # type: ignore[type-var]


def test_map_explain_and_progress_go_to_stderr(folder: Path) -> None:
    result = plait_cli(folder, "map", "tasks:nap", "numbers.jsonl", "--explain", "--progress")
    assert result.returncode == 0
    assert lines(result.stdout) == list(range(10))
    assert "plait: backend='thread'" in result.stderr
    assert re.search(r"took \d+\.\d ms", result.stderr), result.stderr
    given = plait_cli(folder, "map", "tasks:nap", "numbers.jsonl", "--explain",
                      "--backend", "process")
    assert "backend='process', given with --backend" in given.stderr


def test_map_a_failing_task_exits_1_after_the_results_before_it(folder: Path) -> None:
    result = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl")
    assert result.returncode == 1
    assert lines(result.stdout) == [0, 1, 2]
    assert result.stderr.strip() == "plait map: task failed (index 3): ValueError: three is bad"
    traced = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl", "--traceback")
    assert "Traceback" in traced.stderr and traced.returncode == 1


def test_map_errors_collect_and_skip(folder: Path) -> None:
    collected = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl",
                          "--errors", "collect")
    assert collected.returncode == 1
    rows = lines(collected.stdout)
    assert rows[3] == {"index": 3, "error": "ValueError: three is bad"}
    assert rows[4] == {"index": 4, "value": 4} and len(rows) == 10
    skipped = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl", "--errors", "skip")
    assert skipped.returncode == 0
    assert lines(skipped.stdout) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_map_numbers_inputs_from_0_in_every_mode(folder: Path) -> None:
    """The input named in the one-line failure is the "index" that --errors collect writes."""
    raised = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl")
    collected = plait_cli(folder, "map", "tasks:fail_on_three", "numbers.jsonl",
                          "--errors", "collect", "--unordered", "--backend", "thread")
    named = re.search(r"\(index (\d+)\)", raised.stderr)
    assert named is not None, raised.stderr
    rows = [json.loads(line) for line in collected.stdout.splitlines()]
    failed = [row["index"] for row in rows if "error" in row]
    assert failed == [int(named[1])] == [3]


@pytest.mark.parametrize(("args", "words"), [
    (["map", "nosuchmodule:double", "numbers.jsonl"], ["no module named 'nosuchmodule'"]),
    (["map", "tasks:nosuch", "numbers.jsonl"], ["module 'tasks' has no function 'nosuch'"]),
    (["map", "tasks:NOT_A_FUNCTION", "numbers.jsonl"], ["is a int, not a function"]),
    (["map", "tasks", "numbers.jsonl"], ["expected MODULE:FUNCTION"]),
    (["map", "tasks:double", "missing.jsonl"], ["cannot read 'missing.jsonl'"]),
    (["map", "tasks:double", "numbers.jsonl", "--workers", "0"], ["positive integer"]),
    (["map", "tasks:double", "numbers.jsonl", "--backend", "gpu"], ["invalid choice"]),
    (["map"], ["required"]),
    (["nosuchcommand"], ["invalid choice"]),
])
def test_bad_usage_is_one_line_and_exit_2(folder: Path, args: list[str], words: list[str]) -> None:
    assert_one_line_error(plait_cli(folder, *args), *words)


def test_input_that_is_not_json_lines_is_exit_2(folder: Path) -> None:
    (folder / "bad.jsonl").write_text("1\n2\nthis is not json\n4\n")
    result = plait_cli(folder, "map", "tasks:double", "bad.jsonl")
    assert_one_line_error(result, "bad.jsonl, line 3 is not JSON", "'this is not json'")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    assert_one_line_error(plait_cli(folder, "map", "tasks:double", "binary.jsonl"), "UTF-8")


def test_a_module_that_fails_to_import_is_exit_2(folder: Path) -> None:
    (folder / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    result = plait_cli(folder, "map", "broken:f", "numbers.jsonl")
    assert_one_line_error(result, "importing 'broken' failed: RuntimeError: broken on purpose")


def test_a_result_that_is_not_json_is_exit_2(folder: Path) -> None:
    result = plait_cli(folder, "map", "tasks:as_set", "numbers.jsonl")
    assert_one_line_error(result, "not JSON-serializable")


def test_no_command_prints_help_and_exits_2(folder: Path) -> None:
    result = plait_cli(folder)
    assert result.returncode == 2 and "demo" in result.stderr and "advise" in result.stderr


def test_help_and_version(folder: Path) -> None:
    result = plait_cli(folder, "--help")
    assert result.returncode == 0
    for command in ("demo", "map", "advise"):
        assert command in result.stdout
    demo = plait_cli(folder, "demo", "--help").stdout
    for text in (result.stdout, demo):  # the guide is named where it is cited
        assert "a guide to threads, processes and asyncio in Python" in " ".join(text.split())
        assert "seed" not in text
    assert plait_cli(folder, "--version").stdout.startswith("plait ")


# --- plait advise -------------------------------------------------------------------------------


def test_advise_prints_a_table_writes_a_chart_and_recommends(folder: Path) -> None:
    result = plait_cli(folder, "advise", "tasks:nap", "numbers.jsonl", "--seconds", "0.15",
                       "--chart", "chart.svg")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("inline", "thread x 4", "thread x 64", "process x 1", "auto: thread"):
        assert label in out, out
    assert "Fastest: " in out and "Recommendation: " in out
    svg = ElementTree.parse(folder / "chart.svg").getroot()
    assert svg.tag.endswith("svg")
    texts = [element.text or "" for element in svg.iter() if element.tag.endswith("text")]
    assert any("thread x 64" in text for text in texts)
    assert any("(fastest)" in text for text in texts)
    assert_advise_consistent(out, svg)


Row = tuple[str, float, int, int]  # label, items/s, % of best, done


def advise_rows(out: str) -> list[Row]:
    found = re.findall(r"^(\S.*?)\s{2,}([\d,]+)\s+(\d+)%\s+([\d,]+)\s+\d+$", out, re.M)
    return [(label, float(rate.replace(",", "")), int(share), int(done.replace(",", "")))
            for label, rate, share, done in found]


def assert_advise_consistent(out: str, svg: ElementTree.Element) -> None:
    """The header, table, summary and chart of `plait advise` agree with one another."""
    rows = advise_rows(out)
    labels = [label for label, *_ in rows]
    done = [n for *_, n in rows]
    header = re.search(r"each run did ([\d,]+)(?: to ([\d,]+))? items", out)
    assert header is not None, out
    low, high = (int(n.replace(",", "")) for n in (header[1], header[2] or header[1]))
    assert (low, high) == (min(done), max(done))
    fastest = re.search(r"^Fastest: (.+) \(([\d,]+) items/s\)\.$", out, re.M)
    assert fastest is not None, out
    # the table shows rates rounded to an item a second: two rows may tie there (CI saw
    # "thread x 64" and "auto: thread x 256" at the same figure); the summary names the one
    # that was faster before rounding, which must be one of the top rows
    best = next(row for row in rows if row[0] == fastest[1])
    assert best[1] == max(row[1] for row in rows) and best[2] == 100
    auto = next(row for row in rows if row[0].startswith("auto: "))
    chosen = auto[0].removeprefix("auto: ")
    assert chosen == "inline" or chosen in labels  # the grid covers auto's choice
    if auto is best:
        assert f"auto chose {chosen} and was the fastest." in out
    else:
        assert f"auto chose {chosen}: {auto[2]}% of the fastest" in out
    advice = out.split("Recommendation: ")[1].splitlines()[0]
    if auto is best or chosen == best[0] or auto[1] >= 0.9 * best[1]:
        assert advice.startswith("plait.map(fn, items) (auto) is as good as any; to skip its "
                                 "measuring, name its choice (")
    else:
        backend, _, workers = best[0].partition(" x ")
        assert f"backend={backend!r}" in advice and (not workers or f"workers={workers}" in advice)
    texts: dict[str | None, list[str]] = {}
    for element in svg.iter():
        texts.setdefault(element.get("class"), []).append(element.text or "")
    assert set(texts["legend"]) == {label.split(" x ")[0].split(":")[0] for label in labels}
    assert len(texts["tick"]) >= 2
    assert [t for t in texts[None] if t.endswith("(fastest)")] == [f"{best[1]:,.0f} (fastest)"]


def test_advise_summary_when_auto_beats_every_row_of_the_grid() -> None:
    from plait import Decision
    from plait._advise import Run, configurations, recommendation, svg_chart, table

    choice = Decision("thread", 256, None, "they mostly wait.")
    runs = [Run("inline", 1, 50, 0, 1.0), Run("thread", 64, 6000, 0, 1.0),
            Run("thread", 256, 6500, 0, 1.0), Run("auto", None, 7000, 0, 1.0, choice)]
    summary = recommendation(runs)
    assert summary.splitlines()[0] == "Fastest: auto: thread x 256 (7,000 items/s)."
    assert "auto chose thread x 256 and was the fastest." in summary
    advice = ("Recommendation: plait.map(fn, items) (auto) is as good as any; to skip its "
              "measuring, name its choice (backend='thread', workers=256).")
    assert summary.endswith(advice)
    assert "100%" in table(runs).splitlines()[-1]
    chart = ElementTree.fromstring(svg_chart(runs, "t"))
    marked = [e.text for e in chart.iter() if (e.text or "").endswith("(fastest)")]
    assert marked == ["7,000 (fastest)"]
    grid = configurations(len, 2, choice)
    assert ("thread", 256) in grid and grid.count(("thread", 256)) == 1
    assert ("process", 4) in configurations(len, 2, Decision("process", 4, None, ""))
    slower = [*runs[:3], Run("auto", None, 3000, 0, 1.0, choice)]
    summary = recommendation(slower)
    assert "auto chose thread x 256: 46% of the fastest (the same configuration" in summary
    assert summary.endswith(advice)  # the same advice as when auto was the fastest
    other = recommendation([*runs[:2], Run("auto", None, 3000, 0, 1.0, choice)])
    assert other.endswith("backend='thread', workers=64)")
    close = recommendation([*runs[:2], Run("auto", None, 5700, 0, 1.0, choice)])  # 95%
    assert close.endswith(advice)  # within 10% of the fastest: the same advice


def test_advise_without_input_uses_integers_and_bad_input_is_exit_2(folder: Path) -> None:
    result = plait_cli(folder, "advise", "tasks:double", "-", "--seconds", "0.05",
                       "--chart", "", stdin="1\n2\n3\n")
    assert result.returncode == 0, result.stderr
    assert "Recommendation" in result.stdout and not (folder / "plait-advise.svg").exists()
    assert_one_line_error(plait_cli(folder, "advise", "tasks:double", "-", stdin=""),
                          "no input values")
    assert_one_line_error(plait_cli(folder, "advise", "nope:double", "numbers.jsonl"),
                          "no module named 'nope'")
