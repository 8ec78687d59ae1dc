"""The progress bar: imported only when asked for, counts failures, a widget in a notebook."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import subprocess_env

import plait
from plait._progress import Bar, NoProgress, progress


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())


def one_in_three_fails(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(x)
    return x


def test_tqdm_is_imported_only_when_a_bar_is_asked_for() -> None:
    result = run_python("""
        import sys, plait
        plait.map(abs, range(5), backend="thread")
        print("tqdm" in sys.modules)
        plait.map(abs, range(5), backend="thread", progress=True)
        print("tqdm" in sys.modules)
    """)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_the_bar_counts_failures(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(True, 5, "plait")
    assert isinstance(bar, Bar)
    bar.update(3, failed=1)
    bar.update(2)
    bar.update(0, failed=1)
    bar.close()
    assert bar.failed == 2
    err = capsys.readouterr().err
    assert "5/5" in err and "failed=2" in err, err
    clean = progress(True, 2, "plait")
    clean.update(2)
    clean.close()
    assert "failed" not in capsys.readouterr().err  # no failure, no counter
    off = progress(False, 5, "plait")
    assert isinstance(off, NoProgress)
    off.update(3, failed=1)
    off.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("backend", ["inline", "thread", "process", "asyncio"])
def test_a_run_with_errors_collect_shows_its_failures(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    outcomes = plait.map(one_in_three_fails, range(9), backend=backend, errors="collect",
                         progress=True)
    assert sum(not o.ok for o in outcomes) == 3
    assert "failed=3" in capsys.readouterr().err


NOTEBOOK = """
    # A Jupyter kernel as tqdm.auto detects one, with stand-ins for IPython and ipywidgets.
    import sys, types

    shown = []

    class Widget:
        def __init__(self, *args, **options):
            self.__dict__.update(options)
            self.layout = types.SimpleNamespace()
            self.style = types.SimpleNamespace()

        def close(self):
            pass

        def __getattr__(self, name):
            return ""

    class ZMQInteractiveShell:
        pass

    def module(name, **attributes):
        sys.modules[name] = made = types.ModuleType(name)
        made.__dict__.update(attributes)

    module("ipykernel")
    module("ipykernel.zmqshell")
    module("IPython", get_ipython=ZMQInteractiveShell)
    module("IPython.display", display=lambda *shown_now, **_: shown.extend(shown_now))
    module("ipywidgets", FloatProgress=Widget, HBox=Widget, HTML=Widget, __version__="8.1.0")

    import plait

    plait.map(abs, range(9), backend="thread", progress=True)
    print([type(widget).__name__ for widget in shown])
"""


def test_in_a_notebook_the_bar_is_a_widget() -> None:
    result = run_python(NOTEBOOK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['TqdmHBox']"  # tqdm.notebook's widget, displayed once
    assert "task/s" not in result.stderr and "9/9" not in result.stderr  # no text bar
