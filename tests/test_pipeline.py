"""plait.pipeline: stages on their own backends that overlap, with one outcome per input and
nothing left behind however the flow ends."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pipeline_tasks import Stage, StageError, aplus_one, crash_on_three, plus_one, slow_double
from conftest import assert_no_leaks_now, children, pool_threads, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ctrl_c import _interrupt_once_started

import plait
from plait._backends import _reuse

pytestmark = pytest.mark.timeout(60)


def is_even(x: int) -> bool:
    return x % 2 == 0


def twice(x: int) -> list[int]:
    return [x, x]


# --- what comes out -----------------------------------------------------------------------------


def test_stages_on_different_backends_compose_in_order() -> None:
    flow = (
        plait.pipeline(range(30))
        .map(slow_double, backend="thread", workers=8)
        .map(plus_one, backend="process", workers=2)
        .map(aplus_one)  # auto: a coroutine function runs on asyncio
        .map(plus_one, backend="inline")
    )
    assert flow.run() == [2 * x + 3 for x in range(30)]
    assert list(flow) == [2 * x + 3 for x in range(30)]  # a flow can be read again


def test_filter_flat_map_and_batch() -> None:
    flow = plait.pipeline(range(10)).filter(is_even).flat_map(twice).map(plus_one).batch(4)
    assert flow.run() == [[1, 1, 3, 3], [5, 5, 7, 7], [9, 9]]
    assert plait.pipeline(range(5)).batch(2).run() == [[0, 1], [2, 3], [4]]
    assert plait.pipeline(range(5)).batch(2).map(sum).run() == [1, 5, 4]
    assert plait.pipeline([]).map(plus_one).run() == []


def test_unordered_flow_gives_every_result() -> None:
    flow = plait.pipeline(range(40), ordered=False).map(slow_double, backend="thread")
    assert sorted(flow.map(plus_one, backend="thread").run()) == [2 * x + 1 for x in range(40)]


def test_builder_returns_new_flows() -> None:
    base = plait.pipeline(range(3))
    doubled = base.map(slow_double)
    assert base.run() == [0, 1, 2] and doubled.run() == [0, 2, 4]
    assert base.stages == [] and doubled.stages == ["0: map(slow_double)"]


def test_async_input_and_async_for() -> None:
    async def numbers() -> object:
        for i in range(10):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        flow = plait.pipeline(numbers()).map(aplus_one).map(slow_double, backend="thread")
        return [x async for x in flow]

    assert asyncio.run(main()) == [2 * (x + 1) for x in range(10)]


def test_async_for_stopped_early_releases_everything() -> None:
    async def main() -> list[int]:
        got = []
        flow = plait.pipeline(itertools.count()).map(plus_one, backend="process", workers=2)
        async for x in flow:
            got.append(x)
            if len(got) == 5:
                break
        return got

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]


# --- errors ------------------------------------------------------------------------------------


def test_collect_gives_one_outcome_per_input_with_the_failed_stage() -> None:
    flow = (
        plait.pipeline(range(10), errors="collect")
        .map(Stage(0, frozenset({2})), backend="thread")
        .map(Stage(1, frozenset({5})), backend="process", workers=2)
        .map(Stage(2, frozenset({2, 7})), backend="inline")
    )
    outcomes = flow.run()
    assert [o.index for o in outcomes] == list(range(10))
    assert all(isinstance(o, plait.Outcome) for o in outcomes)
    failed = {o.index: o.stage for o in outcomes if not o.ok}
    assert failed == {2: 0, 5: 1, 7: 2}  # item 2 failed at stage 0 and never reached stage 2
    assert all(isinstance(o.error, StageError) for o in outcomes if not o.ok)
    assert [o.value for o in outcomes if o.ok] == [0, 1, 3, 4, 6, 8, 9]


def test_collect_after_a_filter_and_a_batch_names_the_position() -> None:
    flow = (
        plait.pipeline(range(6), errors="collect")
        .filter(is_even)
        .batch(2)
        .map(sorted, backend="thread")
        .map(sum)
    )
    assert [o.value for o in flow.run()] == [2, 4]
    failing = plait.pipeline(range(4), errors="collect").batch(2).map(_fail_batches)
    outcomes = failing.run()
    assert [(o.index, o.stage) for o in outcomes] == [(0, 1), (1, 1), (2, 1), (3, 1)]


def _fail_batches(batch: list[int]) -> int:
    raise StageError(batch)


def test_skip_drops_failed_items() -> None:
    flow = plait.pipeline(range(6), errors="skip").map(Stage(0, frozenset({1, 4})))
    assert flow.run() == [0, 2, 3, 5]


def test_raise_stops_every_stage_promptly() -> None:
    first = Stage(0, frozenset({3}))
    later = Stage(1)
    flow = (
        plait.pipeline(itertools.count())
        .map(first, backend="thread", workers=2, chunksize=1)
        .map(later, backend="thread", workers=2, chunksize=1)
    )
    with pytest.raises(StageError) as caught:
        flow.run()
    assert caught.value.args == (0, 3)
    assert len(first.calls) < 200 and len(later.calls) < 200  # an endless input: it stopped


def test_raise_does_not_wait_for_a_slow_later_stage() -> None:
    release = threading.Event()
    before = pool_threads()

    def stuck_on_zero(x: int) -> int:
        if x == 0:
            release.wait(30)  # a slow call in the last stage: the error must not wait for it
        return x

    flow = (
        plait.pipeline(range(10))
        .map(Stage(0, frozenset({3})), backend="thread", chunksize=1)
        .map(stuck_on_zero, backend="thread", workers=2, chunksize=1)
    )
    started = time.monotonic()
    try:
        with pytest.raises(StageError):
            flow.run()
        assert time.monotonic() - started < 10
    finally:
        release.set()
    assert wait_until(lambda: pool_threads() <= before, 5)


def test_a_crashed_process_worker_fails_its_item_only() -> None:
    flow = (
        plait.pipeline(range(8), errors="collect")
        .map(plus_one, backend="thread")
        .map(crash_on_three, backend="process", workers=2)  # gets x + 1: item 2 crashes
        .map(plus_one, backend="thread")
    )
    outcomes = flow.run()
    assert [o.index for o in outcomes] == list(range(8))
    crashed = [o for o in outcomes if not o.ok]
    assert [(o.index, o.stage) for o in crashed] == [(2, 1)]
    assert isinstance(crashed[0].error, plait.WorkerCrashed)


def test_options_are_checked_when_the_flow_is_built() -> None:
    with pytest.raises(TypeError, match="whole flow"):
        plait.pipeline(range(3)).map(plus_one, errors="collect")
    with pytest.raises(ValueError):
        plait.pipeline(range(3)).map(plus_one, backend="nope")
    with pytest.raises(ValueError):
        plait.pipeline(range(3)).map(plus_one, timeout=-1)
    with pytest.raises(ValueError):
        plait.pipeline(range(3)).batch(0)
    with pytest.raises(ValueError):
        plait.pipeline(range(3), errors="ignore")
    with pytest.raises(TypeError):
        plait.pipeline(range(3)).map(42)  # type: ignore[arg-type]


# --- overlap and bounded memory ----------------------------------------------------------------


def test_stages_overlap() -> None:
    """Stage 0's last item waits until stage 1 has started on item 0: without overlap this
    could never happen (the wait would time out)."""
    second_started = threading.Event()
    overlapped = []

    def first(x: int) -> int:
        if x == 19:
            overlapped.append(second_started.wait(20))
        return x

    def second(x: int) -> int:
        second_started.set()
        return x

    flow = plait.pipeline(range(20)).map(first, backend="thread", workers=4)
    assert flow.map(second, backend="thread", workers=2).run() == list(range(20))
    assert overlapped == [True]


def test_endless_input_is_read_only_as_far_as_the_windows() -> None:
    pulled = itertools.count()

    def numbers() -> Iterator[int]:
        for i in itertools.count():
            next(pulled)
            yield i

    flow = (
        plait.pipeline(numbers())
        .map(plus_one, backend="thread", workers=4)
        .map(slow_double, backend="thread", workers=2)
    )
    reader = iter(flow)
    assert [next(reader) for _ in range(10)] == [2 * (x + 1) for x in range(10)]
    # The stages keep going only until their windows are full (up to 2 x workers chunks of
    # up to 4096 microsecond items each), then reading stops: no growth after that.
    assert wait_until(lambda: _settled(pulled), 10)
    read = next(pulled)
    time.sleep(0.3)
    again = next(pulled)
    reader.close()
    assert again == read + 1, f"still reading: {read} then {again}"
    assert read < 100_000, f"{read} items read ahead of a consumer that took 10"


def _settled(counter: itertools.count[int]) -> bool:
    first = next(counter)
    time.sleep(0.2)
    return next(counter) == first + 1


def test_stopping_early_leaves_nothing_behind() -> None:
    before = pool_threads()
    kids = children()
    flow = (
        plait.pipeline(itertools.count())
        .map(slow_double, backend="thread", workers=4)
        .map(plus_one, backend="process", workers=2)
        .map(aplus_one)
    )
    for i, _ in enumerate(flow):
        if i == 20:
            break
    # Strict, at once: leaving the loop returns once every stage has released its workers.
    assert_no_leaks_now(before | {t for t in pool_threads() if t.name == "plait-input"}, kids)


@pytest.mark.parametrize("second", ["process", "thread"])
def test_ctrl_c_stops_a_pipeline_within_two_seconds(tmp_path: Path, second: str) -> None:
    _interrupt_once_started(tmp_path, f"""
        import itertools, os, sys, time, plait
        folder = sys.argv[1]
        def fast(x):
            return x
        def block(x):
            open(os.path.join(folder, f"{{os.getpid()}}-{{x}}"), "w").close()
            time.sleep(30)
        flow = plait.pipeline(itertools.count()).map(fast, backend="thread").map(
            block, backend="{second}", workers=2)
        for x in flow:
            print(x)
    """)


# --- explain and progress ----------------------------------------------------------------------


def test_explain_shows_each_stage() -> None:
    flow = (
        plait.pipeline(range(3))
        .map(slow_double, backend="thread", workers=8)
        .map(plus_one)
        .map(aplus_one)
        .batch(2)
    )
    plan = plait.explain(flow)
    assert [(s.backend, s.workers) for s in plan] == [
        ("thread", 8), ("auto", None), ("asyncio", 100), ("-", None)
    ]
    text = str(plan)
    assert "0: map(slow_double): thread, 8 workers" in text and "3: batch(2)" in text
    assert plait.explain(plus_one, [1, 2], backend="thread").backend == "thread"  # as before
    with pytest.raises(TypeError):
        plait.explain(plus_one)  # type: ignore[call-overload]


def test_explain_after_a_run_shows_what_auto_chose() -> None:
    flow = plait.pipeline(range(200)).map(plus_one).map(slow_double, backend="thread")
    assert plait.explain(flow)[0].backend == "auto"  # not run yet: decided when it runs
    assert flow.run() == [2 * (x + 1) for x in range(200)]
    first = plait.explain(flow)[0]
    assert first.backend == "inline"  # microsecond calls: auto runs them in the loop's thread
    assert first.reason.startswith("Chosen by auto when the flow last ran: The first")


def test_progress_shows_one_bar_per_stage(capsys: pytest.CaptureFixture[str]) -> None:
    flow = (
        plait.pipeline(range(20), progress=True, errors="collect")
        .map(Stage(0, frozenset({4})), backend="thread")
        .map(plus_one, backend="thread")
    )
    assert len(flow.run()) == 20
    err = capsys.readouterr().err
    assert "0: map(Stage)" in err and "1: map(plus_one)" in err
    assert "failed=1" in err


# --- the property ------------------------------------------------------------------------------


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    length=st.integers(0, 30),
    fails=st.lists(st.frozensets(st.integers(0, 29), max_size=6), min_size=1, max_size=3),
    backends=st.lists(st.sampled_from(["thread", "inline", "thread"]), min_size=3, max_size=3),
    ordered=st.booleans(),
    stop_after=st.one_of(st.none(), st.integers(0, 30)),
)
def test_property_one_outcome_per_input_nothing_doubled_nothing_left(
    length: int, fails: list[frozenset[int]], backends: list[str], ordered: bool,
    stop_after: int | None,
) -> None:
    before, kids = pool_threads(), children()
    stages = [Stage(k, f) for k, f in enumerate(fails)]
    flow = plait.pipeline(range(length), errors="collect", ordered=ordered)
    for stage, backend in zip(stages, backends, strict=False):
        flow = flow.map(stage, backend=backend, workers=3)
    outcomes = []
    for outcome in flow:
        outcomes.append(outcome)
        if stop_after is not None and len(outcomes) >= stop_after:
            break
    indices = [o.index for o in outcomes]
    assert len(set(indices)) == len(indices), "an outcome was doubled"
    if stop_after is None or stop_after > length:
        assert sorted(indices) == list(range(length)), "an outcome was lost"
    if ordered:
        assert indices == sorted(indices)
    for outcome in outcomes:
        first_failure = next((k for k, f in enumerate(fails) if outcome.index in f), None)
        assert outcome.stage == first_failure
        assert outcome.ok == (first_failure is None)
    for k, stage in enumerate(stages):  # every input reached each stage at most once
        assert all(type(i) is int for i in stage.calls), f"stage {k} was called on a marker"
        assert len(stage.calls) == len(set(stage.calls)), f"stage {k} ran an item twice"
        expected = [i for i in range(length) if not any(i in f for f in fails[:k])]
        assert set(stage.calls) <= set(expected), f"stage {k} ran an item that had failed"
        if stop_after is None:
            assert sorted(stage.calls) == expected, f"stage {k} missed an item"
    assert wait_until(
        lambda: pool_threads() <= before and children() - _reuse.idle_pids() <= kids, 5
    )


@settings(max_examples=5, deadline=None)
@given(fails=st.frozensets(st.integers(0, 11), max_size=4), stop_after=st.integers(1, 13))
def test_property_with_a_process_stage(fails: frozenset[int], stop_after: int) -> None:
    kids = children()
    flow = (
        plait.pipeline(range(12), errors="collect")
        .map(Stage(0, fails), backend="process", workers=2)
        .map(plus_one, backend="thread")
    )
    outcomes = []
    for outcome in flow:
        outcomes.append(outcome)
        if len(outcomes) >= stop_after:
            break
    assert [o.index for o in outcomes] == list(range(min(stop_after, 12)))
    assert all((o.stage == 0) == (o.index in fails) for o in outcomes)
    assert wait_until(lambda: children() - _reuse.idle_pids() <= kids, 5)


def test_an_input_that_fails_fails_the_flow() -> None:
    def numbers() -> Iterator[int]:
        yield from range(5)
        raise OSError("the input broke")

    flow = plait.pipeline(numbers()).map(plus_one, backend="thread").map(plus_one)
    with pytest.raises(OSError, match="the input broke"):
        flow.run()


def test_demo_pipeline_scenario_runs_both_ways() -> None:
    pytest.importorskip("aiohttp")
    from plait import _demo

    scenario = _demo.pipelines(_demo.Sizes(urls=160, repeats=1))
    assert [row.backend for row in scenario.rows] == ["pipeline", "map"]
    assert all(row.seconds and row.seconds > 0 for row in scenario.rows)
    report = _demo.report([scenario], _demo.QUICK)
    assert "Pipelines" in report and "plait.pipeline: the stages overlap" in report


def test_auto_decides_on_the_stages_own_calls() -> None:
    """Stage 1 gets its input from stage 0, yet backend="auto" still samples its own calls:
    microsecond calls run inline (in the sampling thread, then on the flow's loop), not on
    the threads plait picks for an input it cannot sample."""
    where: list[str] = []

    def tiny(x: int) -> int:
        where.append(threading.current_thread().name)
        return x + 1

    flow = plait.pipeline(range(300)).map(slow_double, backend="thread").map(tiny)
    assert flow.run() == [2 * x + 1 for x in range(300)]
    assert set(where) <= {"plait-stage-setup", "plait-pipeline"}, set(where)
