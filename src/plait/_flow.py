"""The engine under ``plait.pipeline``: each stage is a ``plait.amap`` run on one event loop.

Items travel as envelopes that remember which inputs they came from (``origins``). Stage k's
input is a plain iterator (``_StageInput``) that the stage's own run pulls lazily: from the
caller's items for the first stage, else through a ``_Hop`` that awaits the previous stage's
output on the loop. So every stage is an ordinary run (its ``backend="auto"`` samples its own
first calls, its window bounds what it holds) and memory stays bounded by the windows.

A failed item becomes a ``Failure`` envelope that later stages pass through untouched (a tiny
``_Pass`` marker crosses to their workers, never the error), so order and the count of
outcomes are kept. Stopping is cancellation: the task that reads the last stage is cancelled,
and each stage, as it closes, closes its input and then the stage before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._backends._base import is_async_callable
from ._bridge import in_thread
from ._handoff import END, Handoff, Raised
from ._progress import Bar, NoProgress, progress

_HOP_SIZE = 64  # envelopes read ahead of the next stage, on top of its own window
_SETUP_WAIT_S = 5.0  # a stopped flow waits this long for a stage still sampling its input


@dataclass(slots=True)
class Item:
    origins: tuple[int, ...]
    value: Any
    attempts: int = 1


@dataclass(slots=True)
class Failure:
    origins: tuple[int, ...]
    error: BaseException
    stage: int
    attempts: int = 1


Envelope = Item | Failure


class _Pass:
    """Stands in, in a stage's input, for an item that failed earlier: returned as it is."""

    __slots__ = ()


@dataclass(slots=True)
class Step:
    """One stage as the user declared it."""

    kind: str  # "map", "filter", "flat_map" or "batch"
    fn: Callable[..., Any] | None
    options: dict[str, Any] = field(default_factory=dict)
    size: int = 0  # batch
    chosen: Any = None  # backend="auto": the Decision of the flow's last run, for explain


# --- what runs in the workers: the user's function behind a pass-through --------------------


class _Call:
    def __init__(self, fn: Callable[..., Any], kind: str) -> None:
        self.fn, self.kind = fn, kind

    def __call__(self, value: Any) -> Any:
        if isinstance(value, _Pass):
            return value
        return _shape(self.kind, self.fn(value))


class _AsyncCall(_Call):
    async def __call__(self, value: Any) -> Any:
        if isinstance(value, _Pass):
            return value
        return _shape(self.kind, await self.fn(value))


def _shape(kind: str, result: Any) -> Any:
    if kind == "filter":
        return bool(result)  # the item itself stays in the parent: only a bool comes back
    if kind == "flat_map":
        return list(result)
    return result


def worker_call(step: Step) -> _Call:
    assert step.fn is not None
    return (_AsyncCall if is_async_callable(step.fn) else _Call)(step.fn, step.kind)


# --- the flow's shared state -------------------------------------------------------------------


class Control:
    """What every stage of one run shares: the error mode and the first error (raise mode)."""

    def __init__(self, errors: str, ordered: bool, show_progress: bool, length: int) -> None:
        self.errors = errors
        self.ordered = ordered
        self.show_progress = show_progress
        self.length = length
        self.error: BaseException | None = None
        self.reader: asyncio.Task[Any] | None = None  # cancelled to stop the whole flow

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            if self.reader is not None:
                self.reader.cancel()


# --- between stages ----------------------------------------------------------------------------


class _Hop:
    """A plain iterator over an async stream on ``loop``, for the next stage's run to pull (from
    its sampler or input reader thread, never from the loop itself). A task on the loop reads
    the stream into a small bounded hand-off, so a pull costs a lock, not a loop round trip."""

    def __init__(self, stream: AsyncIterator[Envelope], loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._handoff = Handoff(_HOP_SIZE)
        self._task = loop.create_task(self._pump())

    def __iter__(self) -> _Hop:
        return self

    def __next__(self) -> Envelope:
        got = self._handoff.get(alive=lambda: not self._task.done())
        if got is END:
            raise StopIteration
        return got  # type: ignore[no-any-return]

    async def _pump(self) -> None:
        try:
            async for envelope in self._stream:
                await self._handoff.put(envelope)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self._handoff.put(Raised(exc), last=True)
        finally:
            await self._handoff.put(END, last=True)

    async def close(self) -> None:
        """No more pulls; the read under way is cancelled (that closes the stream it awaited)."""
        self._handoff.close()
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await _aclose(self._stream)


def numbered(items: Any) -> Iterator[Envelope]:
    for index, value in enumerate(items):
        yield Item((index,), value)


async def anumbered(items: Any) -> AsyncIterator[Envelope]:
    index = 0
    async for value in items:
        yield Item((index,), value)
        index += 1


def batched(envelopes: Iterator[Envelope], size: int) -> Iterator[Envelope]:
    """``size`` items to a list; a failed one goes on at once, on its own."""
    values: list[Any] = []
    origins: list[int] = []
    for envelope in envelopes:
        if isinstance(envelope, Failure):
            yield envelope
            continue
        values.append(envelope.value)
        origins.extend(envelope.origins)
        if len(values) >= size:
            yield Item(tuple(origins), values)
            values, origins = [], []
    if values:
        yield Item(tuple(origins), values)


async def abatched(envelopes: AsyncIterator[Envelope], size: int) -> AsyncIterator[Envelope]:
    values: list[Any] = []
    origins: list[int] = []
    try:
        async for envelope in envelopes:
            if isinstance(envelope, Failure):
                yield envelope
                continue
            values.append(envelope.value)
            origins.extend(envelope.origins)
            if len(values) >= size:
                yield Item(tuple(origins), values)
                values, origins = [], []
        if values:
            yield Item(tuple(origins), values)
    finally:
        await _aclose(envelopes)


class _StageInput:
    """What a stage's run reads: values (or ``_Pass``), with each one's envelope kept by its
    position so the outcome that comes back can be matched to it."""

    def __init__(self, envelopes: Iterator[Envelope], keep: dict[int, Envelope]) -> None:
        self._envelopes = envelopes
        self._keep = keep
        self._position = 0

    def __iter__(self) -> _StageInput:
        return self

    def __next__(self) -> Any:
        envelope = next(self._envelopes)
        self._keep[self._position] = envelope
        self._position += 1
        return envelope.value if isinstance(envelope, Item) else _Pass()


# --- one stage ---------------------------------------------------------------------------------


async def run_stage(
    index: int, step: Step, envelopes: Iterator[Envelope], hop: _Hop | None,
    upstream: AsyncIterator[Envelope] | None, control: Control, label: str,
) -> AsyncIterator[Envelope]:
    """Stage ``index``: its run over ``envelopes``, as envelopes again."""
    from ._api import amap

    keep: dict[int, Envelope] = {}
    source = _StageInput(envelopes, keep)
    options = {"ordered": control.ordered, **step.options, "errors": "collect"}
    setup = in_thread(lambda: amap(worker_call(step), source, **options), "plait-stage-setup")
    results: Any = None
    started = False
    bar = progress(control.show_progress, control.length if index == 0 else None, label)
    try:
        results = await asyncio.shield(setup)
        step.chosen = results._decision or step.chosen
        started = True
        async for outcome in results:
            before = keep.pop(outcome.index)
            _count(bar, index, before, outcome)
            for envelope in _envelopes(index, step, before, outcome):
                if isinstance(envelope, Failure) and control.errors == "raise":
                    control.fail(envelope.error)
                yield envelope
    finally:
        bar.close()
        if hop is not None:
            await hop.close()
        if results is None:  # stopped while the run was being planned (sampling)
            with contextlib.suppress(BaseException):
                results = await asyncio.wait_for(asyncio.shield(setup), _SETUP_WAIT_S)
        if results is not None:
            await _discard(results, started)
        if upstream is not None:
            await _aclose(upstream)


def _envelopes(index: int, step: Step, before: Envelope, outcome: Any) -> list[Envelope]:
    if isinstance(before, Failure):
        return [before]
    if outcome.error is not None:
        return [Failure(before.origins, outcome.error, index, outcome.attempts)]
    if step.kind == "filter":
        return [before] if outcome.value else []
    if step.kind == "flat_map":
        return [Item(before.origins, value, outcome.attempts) for value in outcome.value]
    return [Item(before.origins, outcome.value, outcome.attempts)]


def _count(bar: NoProgress | Bar, index: int, before: Envelope, outcome: Any) -> None:
    """One item through this stage; one that failed earlier only passed by: not counted."""
    if isinstance(before, Item):
        bar.update(1, failed=0 if outcome.error is None else 1)


async def _discard(results: Any, started: bool) -> None:
    """Close a stage's run; one never started is started and cancelled at once, which runs
    the cleanup that releases its workers."""
    if not started:
        first = asyncio.ensure_future(results.__anext__())
        await asyncio.sleep(0)
        if not first.done():
            first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    with contextlib.suppress(RuntimeError):  # already closed by the cancellation
        await results.aclose()


async def _aclose(stream: Any) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        with contextlib.suppress(RuntimeError):
            await closer()


# --- the whole flow ----------------------------------------------------------------------------


def build(
    items: Any, steps: list[Step], labels: list[str], control: Control,
    loop: asyncio.AbstractEventLoop,
) -> AsyncIterator[Envelope]:
    """The last stage's output stream (nothing runs until it is read)."""
    stream: AsyncIterator[Envelope] | None = None
    if hasattr(items, "__aiter__"):
        stream = anumbered(items)
    envelopes: Iterator[Envelope] | None = None if stream is not None else numbered(items)
    batches: list[int] = []
    for position, (step, label) in enumerate(zip(steps, labels, strict=True)):
        if step.kind == "batch":
            batches.append(step.size)
            continue
        hop = None
        if envelopes is None:
            assert stream is not None
            hop = _Hop(stream, loop)
            envelopes = hop
        for size in batches:
            envelopes = batched(envelopes, size)
        batches = []
        stream = run_stage(position, step, envelopes, hop, stream, control, label)
        envelopes = None
    assert stream is not None  # the pipeline adds a stage if it has none
    for size in batches:
        stream = abatched(stream, size)
    return stream
