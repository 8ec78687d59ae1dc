"""The public API is typed: mypy catches a misspelled option or a wrong type and infers result
types; help() shows every option with its type; untyped callers get the same checks at call
time, with messages that say what to write."""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import re
import shutil
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _tasks as T
import pytest

import plait
from plait import _options

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = _options.Options._fields

# --- mypy on small programs ------------------------------------------------------------------

# Each snippet is a module of its own; the expected text must be in mypy's output for it
# ("" means: mypy finds nothing). Revealed types are compared without "builtins.".
PRELUDE = """\
from __future__ import annotations
import asyncio, contextlib
import plait
from plait.testing import FakeClock

def f(x: int) -> str:
    return str(x)

async def af(x: int) -> bytes:
    return b"x"

xs = [1, 2, 3]
"""
SNIPPETS = {
    "misspelled_option": ("plait.map(f, xs, timout=1)", 'Unexpected keyword argument "timout"'),
    "misspelled_backend": ('plait.map(f, xs, backend="procss")', "No overload variant"),
    "timeout_as_text": ('plait.map(f, xs, timeout="1")', "No overload variant"),
    "imap_option_type": ("plait.imap(f, xs, workers=2.5)", "No overload variant"),
    "amap_option_type": ("plait.amap(f, xs, retries=None)", "No overload variant"),
    "explain_option": ("plait.explain(f, xs, chunksise=2)", 'Unexpected keyword argument'),
    "item_type": ('plait.map(f, ["a"])', "incompatible type"),
    "map_type": ("reveal_type(plait.map(str, [1]))", '"list[str]"'),
    "map_async_fn": ("reveal_type(plait.map(af, xs))", '"list[bytes]"'),
    "map_collect": (
        'reveal_type(plait.map(str, [1], errors="collect"))',
        re.compile(r'"list\[plait(\._outcome)?\.Outcome\[str\]\]"'),
    ),
    "map_collect_async_fn": (
        'reveal_type(plait.map(af, xs, errors="collect"))',
        re.compile(r'"list\[plait(\._outcome)?\.Outcome\[bytes\]\]"'),
    ),
    "map_skip": ('reveal_type(plait.map(f, xs, errors="skip"))', '"list[str]"'),
    "imap_type": ("reveal_type(next(plait.imap(f, xs)))", '"str"'),
    "amap_awaited": (
        "async def main() -> None:\n    reveal_type(await plait.amap(f, xs))",
        '"list[str]"',
    ),
    "amap_iterated": (
        "async def main() -> None:\n"
        '    async for o in plait.amap(af, xs, errors="collect"):\n'
        "        reveal_type(o)",
        re.compile(r'"plait(\._outcome)?\.Outcome\[bytes\]"'),
    ),
    # Everything a user may write, accepted as it is.
    "valid_calls": (
        """\
def key(x: int) -> str:
    return "host"

def setup() -> None:
    pass

out: list[str] = plait.map(
    f, range(9), backend="thread", workers=4, ordered=False, chunksize=2, progress=False,
    kind="io", explain=False, timeout=1, deadline=2.5, retries=2,
    retry_on=(ValueError, OSError), rate="5/s", burst=2, concurrency=3, limit_key=key,
    clock=FakeClock(), initializer=setup, max_tasks_per_worker=None,
)
plait.map(f, xs, retry_on=lambda e: isinstance(e, OSError), rate=2.5)
outcomes: list[plait.Outcome[str]] = plait.map(f, xs, errors="collect")
value: str = outcomes[0].unwrap()
stream = plait.imap(f, iter(xs), backend="process")
first: str = next(stream)
stream.close()
mode: typing.Literal["raise", "collect", "skip"] = "skip"
anything = plait.map(f, xs, errors=mode)
decision = plait.explain(f, xs, kind="cpu")

async def agen() -> typing.AsyncIterator[int]:
    yield 1

async def main() -> None:
    got: list[bytes] = await plait.amap(af, agen(), backend="asyncio", rate="10/s")
    async with contextlib.aclosing(plait.amap(f, xs)) as results:
        async for text in results:
            print(text.upper())
    await plait.amap(f, xs).aclose()
""",
        "",
    ),
}


def _mypy() -> str:
    found = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("mypy is not installed in this environment (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One mypy run over every snippet (a run takes seconds), its messages by snippet."""
    folder = tmp_path_factory.mktemp("typing")
    for name, (code, _) in SNIPPETS.items():
        body = "import typing\n" + code
        (folder / f"{name}.py").write_text(PRELUDE + body + "\n")
    (folder / "mypy.ini").write_text("[mypy]\nstrict = true\n")
    done = subprocess.run(
        [_mypy(), "--config-file", "mypy.ini", "--cache-dir", ".cache", *_files(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        env={"MYPYPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=280,
    )
    assert "error: Cannot find" not in done.stdout, done.stdout
    messages: dict[str, str] = {name: "" for name in SNIPPETS}
    for line in done.stdout.splitlines():
        name = line.split(".py:", 1)[0]
        if name in messages:
            messages[name] += line.replace("builtins.", "") + "\n"  # mypy < 2 spells it out
    return messages


def _files(folder: Path) -> list[str]:
    return sorted(f"{name}.py" for name in SNIPPETS)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_mypy_sees(name: str, mypy_output: dict[str, str]) -> None:
    expected = SNIPPETS[name][1]
    found = mypy_output[name]
    if expected == "":
        assert found == "", found
    elif isinstance(expected, re.Pattern):
        assert expected.search(found), found
    else:
        assert expected in found, found
        assert "error" in found or "note: Revealed type" in found, found


# --- the options are described once, and every description agrees ---------------------------


def test_every_option_is_typed_documented_and_checked() -> None:
    typed = set(_options.RunOptions.__optional_keys__) | {"errors"}
    assert typed == set(OPTIONS)
    assert set(_options.DOCS) == set(OPTIONS)
    assert set(_options._CHECKS) == set(OPTIONS)


def test_pool_options_are_the_run_options_of_one_run() -> None:
    task = set(_options.TaskOptions.__optional_keys__)
    assert task < set(_options.RunOptions.__optional_keys__)
    assert not task & {"backend", "workers", "initializer", "max_tasks_per_worker"}


def test_backend_literal_lists_the_registered_backends() -> None:
    assert typing.get_args(_options.BackendName) == _options.BACKEND_CHOICES
    assert typing.get_args(_options.ErrorMode) == ("raise", "collect", "skip")


ENTRIES: dict[str, Callable[..., Any]] = {
    "map": plait.map,
    "imap": plait.imap,
    "amap": plait.amap,
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_help_shows_every_option_with_its_type_and_default(entry: str) -> None:
    function = ENTRIES[entry]
    parameters = inspect.signature(function).parameters
    assert list(parameters) == ["fn", "items", *OPTIONS]
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)
    header = text.split("\n\n", 2)[1]  # the signature line(s)
    backends = '"auto", "inline", "thread", "process", "asyncio", "dask"'
    assert f"backend: Literal[{backends}] = 'auto'" in header
    assert "timeout: float | None = None" in header
    assert 'errors: Literal["raise", "collect", "skip"] = \'raise\'' in header
    for name in OPTIONS:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].annotation is not inspect.Parameter.empty, name
        assert re.search(rf"^ +{name} +\S", text, re.MULTILINE), f"{name} is not described"


def test_docs_list_every_option() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in OPTIONS if f"`{name}" not in text]
    assert not missing


# --- untyped callers: every option is checked when the call is made --------------------------

BAD = [
    ("backend", "procss", ValueError, "did you mean 'process'"),
    ("workers", 0, ValueError, "workers must be a positive integer"),
    ("workers", "2", ValueError, "workers"),
    ("chunksize", 2.5, ValueError, "chunksize"),
    ("errors", "ignore", ValueError, "'raise', 'collect' or 'skip'"),
    ("kind", "gpu", ValueError, "kind must be 'io', 'cpu' or None"),
    ("timeout", "1", ValueError, "timeout must be a positive, finite number of seconds"),
    ("timeout", float("inf"), ValueError, "timeout"),
    ("deadline", -1, ValueError, "deadline"),
    ("retries", -1, ValueError, "retries must be an integer >= 0"),
    ("retries", 1.5, ValueError, "retries"),
    ("retry_on", 3, TypeError, "retry_on must be exception types or a function"),
    ("retry_on", (ValueError, "OSError"), TypeError, "retry_on"),
    ("rate", "fast", ValueError, "cannot read the rate 'fast'"),
    ("rate", 0, ValueError, "rate must be positive"),
    ("burst", 0, ValueError, "burst"),
    ("concurrency", 0, ValueError, "concurrency"),
    ("limit_key", "host", TypeError, "limit_key must be callable"),
    ("clock", "x", TypeError, "clock must have now()"),
    ("initializer", 3, TypeError, "initializer must be callable"),
    ("max_tasks_per_worker", 0, ValueError, "max_tasks_per_worker"),
    ("timout", 1, TypeError, "unknown option 'timout'; did you mean 'timeout'?"),
]


class Untouched:
    """An iterable that counts what was pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(10):
            self.pulled += 1
            yield i


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize(("name", "value", "error", "message"), BAD)
def test_a_bad_option_fails_the_call_itself(
    entry: str, name: str, value: Any, error: type[Exception], message: str
) -> None:
    items = Untouched()
    with pytest.raises(error, match=re.escape(message)):
        ENTRIES[entry](T.square, items, **{name: value})  # not at the first next()
    assert items.pulled == 0


def test_every_option_has_a_bad_value_tested() -> None:
    tested = {name for name, *_ in BAD}
    assert tested >= set(OPTIONS) - {"ordered", "progress", "explain"}  # any value is a bool


def test_explain_checks_its_options() -> None:
    with pytest.raises(ValueError, match="cannot read the rate"):
        plait.explain(T.square, [1], rate="fast")


def test_good_values_pass_and_are_normalised() -> None:
    opts = _options.options(
        timeout=1, burst=None, ordered=0, retry_on=(ValueError,), rate=2, clock=None
    )
    assert (opts.timeout, opts.burst, opts.ordered) == (1.0, 1, False)
    assert isinstance(opts.timeout, float)
    assert opts.retry_on == (ValueError,)
    assert _options.options() == _options.Options()


def test_options_given_and_run_reach_the_run() -> None:
    """The fast path that skips checking defaults still passes every given option on."""
    from plait.testing import FakeClock

    clock = FakeClock()

    async def started(i: int) -> float:
        return clock.now()

    assert plait.map(started, range(3), rate="4/s", clock=clock) == [0.0, 0.25, 0.5]
    assert plait.map(T.square, range(6), backend="thread", workers=2, ordered=True) == [
        x * x for x in range(6)
    ]


def test_typed_snippets_also_run() -> None:
    """The program mypy accepts above runs, so its types describe real behaviour."""
    source = PRELUDE + "import typing\n" + textwrap.dedent(SNIPPETS["valid_calls"][0])
    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(source, "<valid_calls>", "exec"), namespace)
    assert sorted(namespace["out"]) == [str(x) for x in range(9)]  # ordered=False
    assert [o.value for o in namespace["outcomes"]] == ["1", "2", "3"]
    assert asyncio.run(namespace["main"]()) is None
