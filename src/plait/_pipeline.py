"""plait.pipeline: stages that overlap, each on its own backend, with bounded memory.

    flow = (plait.pipeline(urls)
              .map(download, backend="asyncio", workers=100, retries=3)
              .map(parse, backend="process")
              .filter(is_relevant)
              .map(store, backend="thread", workers=8))
    for record in flow: ...        # or flow.run(), or ``async for`` in a coroutine

The engine is in ``_flow``; this module is the builder, the three ways to read a flow, and
``explain``. Reading a flow from sync code runs its stages on a private event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ._flow import Control, Envelope, Item, Step, build
from ._handoff import END, Handoff, Raised
from ._options import check_callable, check_iterable, options
from ._outcome import Outcome
from ._results import ERROR_MODES

T = TypeVar("T")

_FLOW_WIDE = ("errors", "ordered", "progress")
_HANDOFF = 64  # results the reader thread may hold ahead of a sync consumer
_STOP_WAIT_S = 5.0  # how long closing a sync flow waits for its stages to release workers


class StageOutcome(Outcome[T]):
    """An ``Outcome`` of a pipeline run with ``errors="collect"``: ``stage`` is the 0-based
    position of the stage that failed (None for a value)."""

    __slots__ = ("stage",)

    def __init__(
        self, index: int, value: T | None = None, error: BaseException | None = None,
        attempts: int = 1, stage: int | None = None,
    ) -> None:
        super().__init__(index, value, error, attempts)
        self.stage = stage

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self.stage is None else f"{text[:-1]}, stage={self.stage})"


def pipeline(
    items: Any, /, *, ordered: bool = True, errors: str = "raise", progress: bool = False
) -> Pipeline:
    """Start a flow over ``items`` (sync or async iterable, endless allowed): add stages with
    ``.map``, ``.filter``, ``.flat_map``, ``.batch``; read it with ``for``, ``.run()`` or
    ``async for``. ``errors="collect"`` yields ``Outcome``s (``outcome.stage`` names the stage
    that failed); ``progress=True`` shows one bar per stage."""
    check_iterable(items)
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, not {errors!r}")
    return Pipeline(items, (), ordered=bool(ordered), errors=errors, progress=bool(progress))


class Pipeline:
    """A flow of stages; each method returns a new flow with one more stage."""

    def __init__(
        self, items: Any, steps: tuple[Step, ...], *, ordered: bool, errors: str, progress: bool
    ) -> None:
        self._items = items
        self._steps = steps
        self._ordered = ordered
        self._errors = errors
        self._progress = progress

    # --- building ------------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], /, **stage_options: Any) -> Pipeline:
        """Each item becomes ``fn(item)``. Stage options are plait.map's: backend, workers,
        timeout, retries, rate... (``errors``, ``ordered``, ``progress`` are the flow's)."""
        return self._with(Step("map", fn, _stage_options(fn, stage_options)))

    def filter(self, predicate: Callable[[Any], Any], /, **stage_options: Any) -> Pipeline:
        """Keep the items for which ``predicate(item)`` is true."""
        return self._with(Step("filter", predicate, _stage_options(predicate, stage_options)))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]], /, **stage_options: Any) -> Pipeline:
        """Each item becomes every item of ``fn(item)`` (a list, a generator...)."""
        return self._with(Step("flat_map", fn, _stage_options(fn, stage_options)))

    def batch(self, size: int, /) -> Pipeline:
        """Group items into lists of ``size`` (the last may be shorter), e.g. for bulk inserts."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"batch size must be a positive int, not {size!r}")
        return self._with(Step("batch", None, size=size))

    def _with(self, step: Step) -> Pipeline:
        return Pipeline(
            self._items, (*self._steps, step),
            ordered=self._ordered, errors=self._errors, progress=self._progress,
        )

    @property
    def stages(self) -> list[str]:
        """The stages, as labels: ``"0: map(download)"``."""
        return _labels(self._steps)

    def __repr__(self) -> str:
        return f"<plait.pipeline {' -> '.join(self.stages) or '(no stage)'}>"

    # --- reading -------------------------------------------------------------------------------

    def __iter__(self) -> Generator[Any, None, None]:
        return self._read_sync()

    def run(self) -> list[Any]:
        """The whole output as a list."""
        return list(self)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._read_async()

    def _plan(self) -> tuple[list[Step], list[str], Control]:
        steps = list(self._steps)
        if not any(step.kind != "batch" for step in steps):  # reading needs one run at least
            steps.insert(0, Step("map", _same, {"backend": "inline"}))
        length = 0 if hasattr(self._items, "__aiter__") else operator.length_hint(self._items, 0)
        control = Control(self._errors, self._ordered, self._progress, length)
        return steps, _labels(steps), control

    def _read_sync(self) -> Generator[Any, None, None]:
        steps, labels, control = self._plan()
        reader = _SyncReader(self._items, steps, labels, control)
        try:
            while True:
                envelope = reader.get()
                if envelope is None:
                    break
                yield from _shown(envelope, control.errors)
        finally:
            reader.stop()

    async def _read_async(self) -> AsyncIterator[Any]:
        steps, labels, control = self._plan()
        queue: asyncio.Queue[Envelope | _Done] = asyncio.Queue(_HANDOFF)
        task = asyncio.get_running_loop().create_task(
            _pump(self._items, steps, labels, control, queue.put)
        )
        try:
            while True:
                got = await queue.get()
                if isinstance(got, _Done):
                    if got.error is not None:
                        raise got.error
                    return
                for value in _shown(got, control.errors):
                    yield value
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _stage_options(fn: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    check_callable(fn)
    flow_wide = [name for name in _FLOW_WIDE if name in given]
    if flow_wide:
        raise TypeError(
            f"{', '.join(flow_wide)} belong to the whole flow: plait.pipeline(items, "
            f"{flow_wide[0]}=...)"
        )
    options(**given)  # refused up front, as plait.map refuses them
    return dict(given)


def _same(value: Any) -> Any:
    return value


def _labels(steps: Iterable[Step]) -> list[str]:
    labels = []
    for position, step in enumerate(steps):
        what = str(step.size) if step.fn is None else _name(step.fn)
        labels.append(f"{position}: {step.kind}({what})")
    return labels


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _shown(envelope: Envelope, errors: str) -> list[Any]:
    """What the reader gets for one envelope, by the flow's error mode."""
    if isinstance(envelope, Item):
        if errors == "collect":
            return [StageOutcome(envelope.origins[0], envelope.value, None, envelope.attempts)]
        return [envelope.value]
    if errors == "raise":
        raise envelope.error
    if errors == "skip":
        return []
    return [
        StageOutcome(origin, None, envelope.error, envelope.attempts, envelope.stage)
        for origin in envelope.origins
    ]


# --- running a flow ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Done:
    error: BaseException | None


async def _pump(
    items: Any, steps: list[Step], labels: list[str], control: Control,
    put: Callable[[Any], Any],
) -> None:
    """Read the last stage into ``put`` until the end, the first error (errors="raise"), or
    cancellation; every stage is closed before the end is reported."""
    control.reader = asyncio.current_task()
    stream = build(items, steps, labels, control, asyncio.get_running_loop())
    error: BaseException | None = None
    try:
        async for envelope in stream:
            await put(envelope)
    except asyncio.CancelledError:
        if control.error is None:
            raise  # the reader stopped: nobody waits for an end
    except BaseException as exc:
        error = exc
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    await put(_Done(control.error or error))


class _SyncReader:
    """A flow read from sync code: its stages on a private loop thread, results handed over
    through a bounded buffer."""

    def __init__(self, items: Any, steps: list[Step], labels: list[str], control: Control):
        self._handoff = Handoff(_HANDOFF)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._args = (items, steps, labels, control)
        self._thread = threading.Thread(target=self._main, name="plait-pipeline", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started.set()
        try:
            await _pump(*self._args, self._put)
        except asyncio.CancelledError:
            pass  # the reader stopped the flow: it waits for nobody
        except BaseException as exc:
            await self._handoff.put(Raised(exc), last=True)

    async def _put(self, item: Any) -> None:
        await self._handoff.put(item, last=isinstance(item, _Done))

    def get(self) -> Envelope | None:
        """The next envelope, None at the end; raises the flow's error."""
        got = self._handoff.get(alive=self._thread.is_alive)
        if got is END:
            raise RuntimeError("the pipeline's loop thread ended without a result")
        if isinstance(got, _Done):
            if got.error is not None:
                raise got.error
            return None
        return got  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop every stage (a no-op once the flow has ended) and wait for the workers."""
        if self._thread.is_alive() and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(_STOP_WAIT_S)


# --- explain -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage as ``plait.explain(flow)`` shows it."""

    label: str
    backend: str
    workers: int | None
    reason: str

    def __str__(self) -> str:
        workers = "" if self.workers is None else f", {self.workers} workers"
        return f"{self.label}: {self.backend}{workers}. {self.reason}"


class FlowPlan(list[StagePlan]):
    """``plait.explain(flow)``: one ``StagePlan`` per stage, printed one per line."""

    def __str__(self) -> str:
        return "\n".join(str(stage) for stage in self)


def explain_flow(flow: Pipeline) -> FlowPlan:
    """Each stage's backend, workers and why; nothing is run. A stage on ``backend="auto"``
    is decided when the flow runs, on that stage's own first calls: after a run, what it chose
    then."""
    from ._auto import explain
    from ._backends._base import is_async_callable

    plans = FlowPlan()
    for label, step in zip(flow.stages, flow._steps, strict=True):
        if step.fn is None:
            plans.append(StagePlan(label, "-", None, f"groups {step.size} items into a list "
                                                    "in the flow's own loop."))
            continue
        given = step.options.get("backend", "auto")
        if given == "auto" and step.chosen is not None:
            chosen = step.chosen
            plans.append(StagePlan(label, chosen.backend, chosen.workers,
                                   f"Chosen by auto when the flow last ran: {chosen.reason}"))
            continue
        if given == "auto" and not is_async_callable(step.fn):
            plans.append(StagePlan(label, "auto", step.options.get("workers"),
                                   "decided when the flow runs, by timing this stage's own "
                                   "first calls (pass backend= to fix it)."))
            continue
        decision = explain(step.fn, [], **step.options)  # a named backend: nothing measured
        plans.append(StagePlan(label, decision.backend, decision.workers, decision.reason))
    return plans

