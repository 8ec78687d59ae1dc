"""Policies behave the same on every backend: timeouts, retries, rates, caps, deadline, set-up.

Schedules are checked with a fake clock (exact times, no sleeping)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import _policy_tasks as P
import pytest
from conftest import children, pid_alive, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait._clock import FakeClock

STOPPABLE = ["thread", "process", "asyncio"]


def _sleeper(backend: str) -> Any:
    return P.asleep_for if backend == "asyncio" else P.sleep_for


def _no_timed_threads_left() -> None:
    alive = lambda: [t for t in threading.enumerate() if t.name == "plait-timed-task"]  # noqa: E731
    assert wait_until(lambda: not alive(), 10)


RELEASE = threading.Event()  # lets the thread backend's abandoned task end after the test


def _blocker(backend: str) -> Any:
    """A task that never ends on its own within the test's time limit, but for item 0.01."""
    if backend == "asyncio":
        return P.asleep_for
    if backend == "thread":
        return _wait_for_release
    return P.sleep_for


def _wait_for_release(seconds: float) -> float:
    if seconds > 1:
        RELEASE.wait(60)
    return seconds


@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", STOPPABLE)
def test_timeout_fails_only_the_slow_task(backend: str) -> None:
    # The slow task runs for 60 s (or until released): map returning at all, well inside the
    # test's 20 s limit, shows that nobody waited for it.
    RELEASE.clear()
    try:
        outcomes = plait.map(
            _blocker(backend),
            [0.01, 60, 0.01, 0.02],
            backend=backend,
            workers=2,
            timeout=0.3,
            errors="collect",
        )
    finally:
        RELEASE.set()
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1].error, plait.TaskTimeout)
    assert isinstance(outcomes[1].error, TimeoutError)
    assert [o.value for o in outcomes if o.ok] == [0.01, 0.01, 0.02]
    _no_timed_threads_left()


@pytest.mark.timeout(20)
def test_process_timeout_kills_and_replaces_the_worker() -> None:
    with plait.Pool(backend="process", workers=1) as pool:
        first = pool.map(P.pid_of, [None])[0]
        outcomes = list(pool.imap(P.sleep_for, [60], timeout=0.3, errors="collect"))
        assert isinstance(outcomes[0].error, plait.TaskTimeout)
        assert "killed and replaced" in str(outcomes[0].error)
        assert not pid_alive(first), "the timed-out worker is still running"
        second = pool.map(P.pid_of, [None])[0]  # a stale result would be 60, not a pid
        assert second != first and pid_alive(second)
        assert first not in children(), "the killed worker was not reaped"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("limit", [{"rate": "100/s"}, {"concurrency": 2}, {"limit_key": str}])
def test_timeout_holds_with_rate_and_concurrency_limits(limit: dict[str, Any]) -> None:
    opts = {"concurrency": 2, **limit} if "limit_key" in limit else limit
    outcomes = plait.map(
        P.asleep_for, [0.01, 60, 0.01], backend="asyncio", timeout=0.3, errors="collect", **opts
    )
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, plait.TaskTimeout)


def test_policies_are_off_by_default() -> None:
    from plait._policies import Policies

    off = Policies()
    assert not off.active and not off.per_task and off.retry is None
    limited = Policies(rate="1/s")
    assert limited.limiter is not None and limited.limiter.burst == 1 and limited.per_task


def test_inline_refuses_a_timeout_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="backend='thread', 'process'"):
        plait.map(P.sleep_for, [0.01], backend="inline", timeout=1)


@pytest.mark.parametrize("backend", ["inline", "thread", "process"])
def test_retries_record_attempts_and_wait_on_the_clock(backend: str, tmp_path: Path) -> None:
    clock = FakeClock()
    items = [(str(tmp_path / f"calls{i}"), failures) for i, failures in enumerate([0, 2, 5])]
    outcomes = plait.map(P.flaky, items, backend=backend, retries=3, errors="collect", clock=clock)
    assert [o.attempts for o in outcomes] == [1, 3, 4]
    assert outcomes[0].value == "ok after 1" and outcomes[1].value == "ok after 3"
    assert isinstance(outcomes[2].error, P.Flaky)  # quarantined after 1 + 3 attempts
    assert str(outcomes[2].error) == "call 4"  # the last attempt's error
    assert [len(Path(path).read_text()) for path, _ in items] == [1, 3, 4]
    assert clock.now() > 0  # the backoff waited, in virtual time only


def test_retry_on_limits_what_is_retried() -> None:
    outcomes = plait.map(
        P.value_error,
        [1, 2],
        backend="thread",
        retries=3,
        retry_on=P.Flaky,
        errors="collect",
        clock=FakeClock(),
    )
    assert [o.attempts for o in outcomes] == [1, 1]
    assert all(isinstance(o.error, ValueError) for o in outcomes)


def test_default_retry_on_never_retries_a_serialization_error() -> None:
    outcomes = plait.map(
        P.raise_serialization_error, [1], backend="thread", retries=3, errors="collect",
        clock=FakeClock(),
    )
    assert isinstance(outcomes[0].error, plait.SerializationError)
    assert outcomes[0].attempts == 1  # it would fail the same way every time
    again = plait.map(P.value_error, [1], backend="thread", retries=3, errors="collect",
                      clock=FakeClock())
    assert again[0].attempts == 4  # while any other error is retried


def test_an_argument_that_cannot_be_sent_is_not_retried() -> None:
    outcomes = plait.map(
        P.pid_of, [1, threading.Lock()], backend="process", workers=1, retries=2,
        errors="collect", clock=FakeClock(),
    )
    assert outcomes[0].ok and outcomes[0].attempts == 1
    assert isinstance(outcomes[1].error, plait.SerializationError)
    assert outcomes[1].attempts == 1


def test_errors_raise_after_retries_are_spent() -> None:
    with pytest.raises(P.Flaky):
        plait.map(P.always_fails, [1], backend="thread", retries=2, clock=FakeClock())


def test_a_task_that_keeps_killing_workers_is_quarantined() -> None:
    outcomes = plait.map(
        P.crash_on_three,
        range(6),
        backend="process",
        workers=2,
        retries=1,
        errors="collect",
        clock=FakeClock(),
    )
    assert [o.ok for o in outcomes] == [True, True, True, False, True, True]
    assert isinstance(outcomes[3].error, plait.WorkerCrashed)
    assert "exit code 3" in str(outcomes[3].error)
    assert outcomes[3].attempts == 2


@pytest.mark.parametrize("backend", ["asyncio", "inline"])
def test_rate_schedules_starts_exactly(backend: str) -> None:
    clock = FakeClock()
    starts: list[float] = []

    def record(x: int) -> int:
        starts.append(clock.now())
        return x

    async def arecord(x: int) -> int:
        return record(x)

    fn = arecord if backend == "asyncio" else record
    assert plait.map(fn, range(5), backend=backend, rate="2/s", clock=clock) == list(range(5))
    assert sorted(starts) == [0.0, 0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_rate_with_burst_on_worker_backends(backend: str) -> None:
    clock = FakeClock()
    assert plait.map(P.pid_of, range(6), backend=backend, rate="1/s", burst=3, clock=clock)
    assert clock.now() == pytest.approx(3.0)  # 3 at once, then one per second


def test_pool_map_timeout_bounds_the_whole_call_as_in_executor_map() -> None:
    with plait.Pool(backend="thread", workers=2) as pool, pytest.raises(TimeoutError):
        pool.map(P.sleep_for, [0.2] * 20, timeout=0.3)


def test_rate_per_key() -> None:
    clock = FakeClock()
    starts: dict[str, list[float]] = {"a": [], "b": []}

    async def record(item: tuple[str, int]) -> int:
        starts[item[0]].append(clock.now())
        return item[1]

    items = [(key, i) for i in range(3) for key in "ab"]
    plait.map(record, items, backend="asyncio", rate="1/s", limit_key=lambda it: it[0], clock=clock)
    assert starts == {"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0, 2.0]}


def _peaks(fn: Any, keys: str, tmp_path: Path, **opts: Any) -> list[tuple[int, int]]:
    items = [(str(tmp_path), key, 0.1) for key in keys]
    peaks: list[tuple[int, int]] = plait.map(fn, items, chunksize=1, **opts)
    return peaks


@pytest.mark.parametrize("backend", ["thread", "process", "asyncio"])
def test_concurrency_cap_is_independent_of_workers(backend: str, tmp_path: Path) -> None:
    fn = P.arunning_peak if backend == "asyncio" else P.running_peak
    peaks = _peaks(fn, "a" * 12, tmp_path, backend=backend, workers=4, concurrency=2)
    assert max(everyone for _, everyone in peaks) == 2


def test_concurrency_cap_on_the_inline_backend_is_one_at_a_time(tmp_path: Path) -> None:
    peaks = _peaks(P.running_peak, "a" * 3, tmp_path, backend="inline", concurrency=2)
    assert max(everyone for _, everyone in peaks) == 1


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_concurrency_applies_per_limit_key(backend: str, tmp_path: Path) -> None:
    fn = P.arunning_peak if backend == "asyncio" else P.running_peak
    peaks = _peaks(
        fn, "ab" * 8, tmp_path, backend=backend, workers=8, concurrency=2,
        limit_key=lambda item: item[1],
    )
    assert max(mine for mine, _ in peaks) == 2  # at most 2 per key...
    assert max(everyone for _, everyone in peaks) == 4  # ...and the two keys run side by side


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["process", "asyncio"])
def test_deadline_delivers_the_results_before_it(backend: str) -> None:
    # A consumer that takes one result, then looks away until the deadline has passed, still
    # gets every result finished before it (the window holds 4 chunks: 4 quick tasks), and
    # only then the TaskTimeout.
    items = [0.0] * 4 + [60.0] * 4
    stream = plait.imap(
        _sleeper(backend), items, backend=backend, workers=2, chunksize=1, deadline=1
    )
    got = [next(stream)]
    time.sleep(2)  # a lower bound: the deadline has passed when we look again
    message = "the run passed its deadline of 1 s; the tasks still running were stopped"
    with pytest.raises(plait.TaskTimeout, match=f"^{message}$"):
        got.extend(stream)
    assert got == [0.0] * 4


@pytest.mark.parametrize("backend", STOPPABLE)
def test_deadline_stops_the_run(backend: str) -> None:
    # 40 tasks of 0.2 s on 2 workers need 4 s; a deadline of 0.5 s stops the run long before:
    # most of the input is never even read (a thread that runs cannot be killed, so the tasks
    # are short enough to be waited for).
    pulled = 0

    def items() -> Any:
        nonlocal pulled
        for _ in range(40):
            pulled += 1
            yield 0.2

    with pytest.raises(plait.TaskTimeout, match="deadline"):
        plait.map(_sleeper(backend), items(), backend=backend, workers=2, deadline=0.5)
    assert pulled < 40


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_initializer_runs_once_in_each_worker_before_its_tasks(
    backend: str, tmp_path: Path
) -> None:
    P.INIT_CALLS.clear()
    reports = plait.map(
        P.init_calls_here, [str(tmp_path)] * 6, backend=backend, workers=2, chunksize=1,
        initializer=P.count_init,
    )
    workers = {worker for worker, _ in reports}
    assert len(workers) == 2  # the first two tasks met, so both workers ran tasks
    assert all(calls == 1 for _, calls in reports), reports  # once, before the first task
    if backend == "process":
        assert P.INIT_CALLS == {}  # in the workers, not in the parent
    else:
        assert dict.fromkeys(workers, 1) == P.INIT_CALLS


def test_max_tasks_per_worker_recycles_processes() -> None:
    pids = plait.map(P.pid_of, range(8), backend="process", workers=1, max_tasks_per_worker=2)
    assert len(set(pids)) == 4
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2, 2]


def test_worker_settings_need_a_backend_that_has_workers() -> None:
    with pytest.raises(ValueError, match="backend='thread' or 'process'"):
        plait.map(P.pid_of, [1], backend="asyncio", initializer=P.set_marker)
    with pytest.raises(ValueError, match="backend='process'"):
        plait.map(P.pid_of, [1], backend="thread", max_tasks_per_worker=2)


@pytest.mark.parametrize(
    ("option", "value"), [("timeout", 0), ("retries", -1), ("rate", "fast"), ("concurrency", 0)]
)
def test_bad_policy_values_say_what_is_expected(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option if option != "rate" else "50/s"):
        plait.map(P.pid_of, [1], backend="thread", **{option: value})


def test_amap_honours_policies() -> None:
    async def main() -> list[Any]:
        stream = plait.amap(
            P.asleep_for, [0.01, 2, 0.01], backend="asyncio", timeout=0.2, errors="collect"
        )
        return [o async for o in stream]

    outcomes = asyncio.run(main())
    assert [o.ok for o in outcomes] == [True, False, True]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flags=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=12),
    backend=st.sampled_from(["thread", "asyncio", "process"]),
    retries=st.integers(0, 2),
    ordered=st.booleans(),
    use_timeout=st.booleans(),
)
def test_exactly_one_outcome_per_input_under_failures_retries_and_timeouts(
    flags: list[tuple[bool, bool]], backend: str, retries: int, ordered: bool, use_timeout: bool
) -> None:
    items = [(i, fails, hangs and use_timeout) for i, (fails, hangs) in enumerate(flags)]
    fn = P.aproperty_task if backend == "asyncio" else P.property_task
    outcomes = plait.map(
        fn,
        items,
        backend=backend,
        workers=3,
        retries=retries,
        ordered=ordered,
        timeout=0.5 if use_timeout else None,
        errors="collect",
        clock=FakeClock(),
    )
    indexes = [o.index for o in outcomes]
    assert sorted(indexes) == list(range(len(items)))  # never lost, never doubled
    if ordered:
        assert indexes == list(range(len(items)))
    for outcome in outcomes:
        value, fails, hangs = items[outcome.index]
        if hangs:
            assert isinstance(outcome.error, plait.TaskTimeout)
            assert outcome.attempts == retries + 1
        elif fails:
            assert isinstance(outcome.error, P.Flaky)
            assert outcome.attempts == retries + 1
        else:
            assert outcome.ok and outcome.value == value * 2 and outcome.attempts == 1
    _no_timed_threads_left()
