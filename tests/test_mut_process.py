"""Process backend promises pinned down by mutation testing (``./dev mutants backends-process``,
issue 9), with real worker processes: each worker and the template lead their own session (a
Ctrl-C in the terminal reaches the parent only; a kill of the group reaches what a task started),
errors that cannot cross back say why, and a chunk with an unpicklable item keeps its timeout.
"""

from __future__ import annotations

import os

import _tasks as T
import pytest

import plait
from plait._backends import _template

pytestmark = pytest.mark.timeout(30)


def _session(_: object) -> tuple[int, int, int]:
    return os.getpid(), os.getsid(0), os.getpgid(0)


def test_spawned_workers_lead_their_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_PROCESS_START", "spawn")
    with plait.Pool(backend="process", workers=2) as pool:
        found = set(pool.map(_session, range(4), chunksize=1))
    assert found and all(pid == sid == pgid for pid, sid, pgid in found)
    assert all(pid != os.getpid() for pid, _, _ in found)


def test_forked_workers_and_the_template_lead_their_own_session() -> None:
    found = set(plait.map(_session, range(4), backend="process", workers=2, chunksize=1))
    assert all(pid == sid == pgid for pid, sid, pgid in found)
    template = _template.pid()
    assert template is not None and os.getsid(template) == template != os.getsid(0)


def test_an_exception_that_cannot_be_pickled_is_named_with_the_reason() -> None:
    outcomes = plait.map(
        T.raise_unpicklable_on_two, range(3), backend="process", workers=1, errors="collect"
    )
    error = outcomes[2].error
    assert type(error) is plait.SerializationError
    assert str(error) == "the task raised UnpicklableError: bad 2 (it cannot be pickled)"
    assert "raise_unpicklable_on_two" in str(error.__cause__)  # the worker's traceback


def test_an_exception_that_cannot_be_rebuilt_names_what_failed() -> None:
    outcomes = plait.map(
        T.raise_unrebuildable_on_two, range(3), backend="process", workers=1, errors="collect"
    )
    message = str(outcomes[2].error)
    assert "(it cannot be rebuilt in the parent: TypeError: " in message, message
