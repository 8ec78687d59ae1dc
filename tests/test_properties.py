"""Property: with errors="collect", every input gets exactly one Outcome, whatever fails, on
every backend, ordered or not, with any chunk size."""

from __future__ import annotations

import _tasks as T
import pytest
from _tasks import TaskError
from conftest import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait


@pytest.mark.usefixtures("dask_cluster")  # backend="dask" runs on the session's cluster
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(st.tuples(st.integers(-1000, 1000), st.booleans()), max_size=40),
    backend=st.sampled_from(BACKENDS),
    ordered=st.booleans(),
    chunksize=st.one_of(st.none(), st.integers(1, 7)),
    workers=st.integers(1, 3),
)
def test_collect_never_loses_or_doubles_an_outcome(
    items: list[tuple[int, bool]], backend: str, ordered: bool, chunksize: int | None, workers: int
) -> None:
    fn = T.amaybe_fail if backend == "asyncio" else T.maybe_fail
    outcomes = plait.map(
        fn,
        iter(items),
        backend=backend,
        workers=workers,
        ordered=ordered,
        chunksize=chunksize,
        errors="collect",
    )
    assert len(outcomes) == len(items)
    indices = [o.index for o in outcomes]
    assert sorted(indices) == list(range(len(items))), "an outcome was lost or doubled"
    if ordered:
        assert indices == list(range(len(items)))
    for outcome in outcomes:
        assert isinstance(outcome, plait.Outcome)
        value, fail = items[outcome.index]
        if fail:
            assert not outcome.ok and outcome.value is None
            assert type(outcome.error) is TaskError and outcome.error.args == (value,)
        else:
            assert outcome.ok and outcome.error is None
            assert outcome.value == 2 * value


@pytest.mark.usefixtures("dask_cluster")  # backend="dask" runs on the session's cluster
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(st.tuples(st.integers(-1000, 1000), st.booleans()), max_size=40),
    backend=st.sampled_from(BACKENDS),
    ordered=st.booleans(),
)
def test_skip_and_raise_agree_with_collect(
    items: list[tuple[int, bool]], backend: str, ordered: bool
) -> None:
    fn = T.amaybe_fail if backend == "asyncio" else T.maybe_fail
    skipped = plait.map(fn, items, backend=backend, workers=2, ordered=ordered, errors="skip")
    expected = [2 * v for v, fail in items if not fail]
    assert (skipped if ordered else sorted(skipped)) == (expected if ordered else sorted(expected))
    first_failure = next((v for v, fail in items if fail), None)
    try:
        values = plait.map(fn, items, backend=backend, workers=2, ordered=ordered)
    except TaskError as exc:
        assert first_failure is not None
        if ordered:  # ordered: the first failing input is the one reported
            assert exc.args == (first_failure,)
    else:
        assert first_failure is None
        assert (values if ordered else sorted(values)) == (
            expected if ordered else sorted(expected)
        )
