"""plait's command line: ``plait demo | map | advise | fetch``.

Exit status: 0 done, 1 a task failed, 2 bad usage or bad input (a one-line message on stderr,
no traceback), 130 interrupted. Each subcommand is a small handler ``(args) -> exit status``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, NoReturn

from ._options import BACKEND_CHOICES
from ._results import ERROR_MODES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
BACKENDS = BACKEND_CHOICES  # "auto" and the registered backends


class UsageError(Exception):
    """Bad usage or bad input: printed as one line, exit status 2."""


class BadInput(UsageError):
    """An input line that is not JSON (raised while the run pulls input)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="plait",
        description="Run many tasks at once with the right concurrency model.",
    )
    parser.add_argument("--version", action="version", version=f"plait {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_map(sub)
    _add_advise(sub)
    _add_fetch(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"plait {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"plait {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `plait map m:f input | head`
        silence_stdout()
        return EXIT_OK


# --- subcommands ------------------------------------------------------------------------------


def _add_demo(sub: Any) -> None:
    parser = sub.add_parser(
        "demo", help="time the four scenarios of a guide to threads, processes and asyncio in "
        "Python with every approach",
        description="Runs the four scenarios of a guide to threads, processes and asyncio in "
        "Python (the DEV Community article \"Concurrency and Parallelism in Python\", which "
        "plait grew from: many API calls, reading large files, CPU-heavy "
        "computations, background tasks), with every approach, on this machine, and prints the "
        "measured times and which approach auto chose.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (~10 s)")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(quick=args.quick)


def _add_map(sub: Any) -> None:
    parser = sub.add_parser(
        "map", help="call MODULE:FUNCTION on each JSON line of the input",
        description="Calls FUNCTION on each input line (one JSON value per line) and writes "
        "each result as a JSON line on stdout. MODULE is imported from the current directory "
        "or sys.path.",
    )
    parser.add_argument("function", metavar="MODULE:FUNCTION")
    parser.add_argument("input", nargs="?", default="-", metavar="INPUT_FILE|-",
                        help="JSON lines (default: stdin)")
    _add_run_options(parser)
    parser.add_argument("--unordered", action="store_true",
                        help="write results as they complete, not in input order")
    parser.add_argument("--errors", choices=ERROR_MODES, default="raise",
                        help="raise: stop at the first failure (exit 1); collect: one "
                        '{"index", "value"|"error"} line per input, index counted from 0 '
                        "(exit 1 if any failed); skip: successes only")
    parser.add_argument("--progress", action="store_true", help="progress bar on stderr")
    parser.add_argument("--explain", action="store_true",
                        help="say on stderr which backend runs the calls, and why")
    parser.add_argument("--traceback", action="store_true",
                        help="print the traceback of a failed task")
    parser.add_argument("--address", default=None, metavar="tcp://HOST:PORT",
                        help="the Dask scheduler for --backend dask (default: Dask's "
                        "configuration, DASK_SCHEDULER_ADDRESS, else a local cluster)")
    parser.set_defaults(handler=_map)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--workers", type=_positive, default=None)
    parser.add_argument("--chunksize", type=_positive, default=None)
    parser.add_argument("--kind", choices=("io", "cpu"), default=None,
                        help="hint for --backend auto")


def _map(args: argparse.Namespace) -> int:
    import plait

    fn = load_function(args.function)
    opts: dict[str, Any] = {
        "backend": args.backend, "workers": args.workers, "chunksize": args.chunksize,
        "kind": args.kind, "ordered": not args.unordered, "errors": args.errors,
        "progress": args.progress, "explain": args.explain,
    }
    if args.explain and args.backend != "auto":
        print(f"plait: backend={args.backend!r}, given with --backend", file=sys.stderr)
    if args.backend == "dask":
        _to_dask(fn, args.address)
    elif args.address is not None:
        raise UsageError("--address is the Dask scheduler: it goes with --backend dask")
    with open_input(args.input) as handle:
        results = plait.imap(fn, json_lines(handle, args.input), **opts)
        return _write_results(results, args)


def _to_dask(fn: Callable[..., Any], address: str | None) -> None:
    """The cluster to use, and the function's module sent by value: the workers do not have
    the current directory the module was loaded from."""
    from ._backends import info
    from ._exceptions import BackendUnavailable

    try:
        info("dask").check_available()
    except BackendUnavailable as exc:
        raise UsageError(str(exc)) from None
    import cloudpickle
    import dask

    if address is not None:
        dask.config.set({"scheduler-address": address})  # as DASK_SCHEDULER_ADDRESS would
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    if module is not None and os.path.abspath(path).startswith(os.getcwd() + os.sep):
        cloudpickle.register_pickle_by_value(module)


def _write_results(results: Iterator[Any], args: argparse.Namespace) -> int:
    out, written, failed = sys.stdout, 0, 0
    try:
        for result in results:
            if args.errors == "collect":
                failed += not result.ok
                result = _outcome_json(result)
            out.write(_dumps(result) + "\n")
            written += 1
    except (UsageError, BrokenPipeError):
        raise
    except Exception as exc:  # a task's own error, with errors="raise"
        out.flush()
        # in input order, the failed input is the one after those written; counted from 0,
        # as "index" is with --errors collect (unordered, it is not known here)
        where = f" (index {written})" if not args.unordered else ""
        if args.traceback:
            import traceback

            traceback.print_exception(exc)
        print(f"plait map: task failed{where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    out.flush()
    return EXIT_FAILED if failed else EXIT_OK


def _outcome_json(outcome: Any) -> dict[str, Any]:
    if outcome.ok:
        return {"index": outcome.index, "value": outcome.value}
    error = outcome.error
    return {"index": outcome.index, "error": f"{type(error).__name__}: {error}"}


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a result is not JSON-serializable ({exc})") from None


def _add_advise(sub: Any) -> None:
    parser = sub.add_parser(
        "advise", help="time MODULE:FUNCTION on every backend and recommend one",
        description="Runs FUNCTION on a sample of the input (repeated to about --seconds of "
        "work done one after another) under each backend and a few worker counts, prints a "
        "table of throughput, writes a chart (SVG) and recommends the fastest. The function "
        "really runs, many times.",
    )
    parser.add_argument("function", metavar="MODULE:FUNCTION")
    parser.add_argument("input", nargs="?", default=None, metavar="INPUT_FILE|-",
                        help="JSON lines (default: stdin, or the integers 0..N-1 on a terminal)")
    parser.add_argument("--limit", type=_positive, default=200,
                        help="input lines used (default 200)")
    parser.add_argument("--seconds", type=_seconds, default=1.0,
                        help="work per run, in seconds of calls one after another (default 1)")
    parser.add_argument("--chart", default="plait-advise.svg",
                        help="where to write the chart (default plait-advise.svg; '' for none)")
    parser.set_defaults(handler=_advise)


def _advise(args: argparse.Namespace) -> int:
    from ._advise import run_advise

    fn = load_function(args.function)
    items = read_sample(args.input, args.limit)
    return run_advise(fn, items, name=args.function, seconds=args.seconds, chart=args.chart or None)


def _add_fetch(sub: Any) -> None:
    """``plait fetch`` lives in ``_cli_fetch`` (the HTTP work); added when it is there."""
    try:
        module = importlib.import_module("._cli_fetch", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}._cli_fetch":
            raise
        return
    module.register(sub)


# --- helpers the subcommands share ------------------------------------------------------------


def load_function(spec: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``module:Class.method``), imported like ``python -m``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected MODULE:FUNCTION (e.g. mytasks:resize), got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does, for the console script too
    module = _import(module_name)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no function {attribute!r}") from None
    if not callable(target):
        raise UsageError(f"{spec!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"no module named {name!r} (looked in the current directory "
                             "and sys.path)") from None
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # the module itself raised while it was imported
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def open_input(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def json_lines(lines: IO[str], name: str) -> Iterator[Any]:
    """One JSON value per line, lazily; blank lines are skipped."""
    where = "stdin" if name == "-" else name
    number = 0
    try:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _parse(line, where, number)
    except UnicodeDecodeError:
        raise BadInput(f"{where}, line {number + 1}: not UTF-8 text") from None


def _parse(line: str, where: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        shown = line.strip()
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise BadInput(f"{where}, line {number} is not JSON ({exc.msg}): {shown!r}; "
                       "each line must hold one JSON value, e.g. 42, \"text\" or [1, 2]") from None


def read_sample(path: str | None, limit: int) -> list[Any]:
    """Up to ``limit`` JSON values; with no file and a terminal on stdin: 0..limit-1."""
    if path is None and sys.stdin.isatty():
        print(f"plait advise: no input given: using the integers 0..{limit - 1}", file=sys.stderr)
        return list(range(limit))
    items: list[Any] = []
    with open_input(path or "-") as handle:
        for item in json_lines(handle, path or "-"):
            items.append(item)
            if len(items) >= limit:
                break
    if not items:
        raise UsageError(f"no input values in {path or 'stdin'}")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush does not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
