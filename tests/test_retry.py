"""Backoff schedules and the retry loop, checked with a fake clock and fixed dice."""

from __future__ import annotations

import asyncio
import email.utils
import random
import re

import pytest

from plait._clock import FakeClock
from plait._retry import Backoff, Retry, retry_after_s


def test_backoff_caps_double_up_to_the_maximum() -> None:
    backoff = Backoff(initial_s=0.1, multiplier=2, max_s=1.0)
    caps = [backoff.cap(n) for n in range(1, 7)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.cap(0) == 0.0
    assert backoff.cap(10_000) == 1.0  # no overflow after many failures


def test_backoff_edge_cases() -> None:
    assert Backoff(initial_s=0).cap(5) == 0.0
    assert Backoff(initial_s=0.5, multiplier=1, max_s=10).cap(40) == 0.5
    assert Backoff(initial_s=0.1, max_s=0).cap(3) == 0.0  # no waiting at all is allowed
    assert Backoff(initial_s=0.1, max_s=0.5).cap(9) == 0.5
    message = "^backoff needs initial_s >= 0, max_s >= 0 and multiplier >= 1$"
    for bad in ({"multiplier": 0.5}, {"initial_s": -1}, {"max_s": -0.1}):
        with pytest.raises(ValueError, match=message):
            Backoff(**bad)


def test_full_jitter_is_uniform_between_zero_and_the_cap() -> None:
    retry = Retry(5, backoff=Backoff(1.0, 2.0, 100.0), random=random.Random(7).random)
    for failures in (1, 2, 3, 4):
        waits = [retry.delay(failures) for _ in range(2000)]
        cap = 2.0 ** (failures - 1)
        assert min(waits) >= 0 and max(waits) <= cap
        assert sum(waits) / len(waits) == pytest.approx(cap / 2, rel=0.1)
    assert Retry(random=lambda: 0.5).delay(3) == pytest.approx(0.2)


def run_with_failures(retry: Retry, clock: FakeClock, failures: int) -> tuple[list[float], int]:
    """Call a function that fails ``failures`` times; return when each call began."""
    calls: list[float] = []

    async def flaky() -> int:
        calls.append(clock.now())
        if len(calls) <= failures:
            raise ConnectionError(f"failure {len(calls)}")
        return len(calls)

    return calls, asyncio.run(retry.call(flaky))


def test_retry_schedule_exact_with_fake_clock() -> None:
    clock = FakeClock()
    retry = Retry(3, backoff=Backoff(0.1, 2, 10), clock=clock, random=lambda: 1.0)
    calls, result = run_with_failures(retry, clock, failures=3)
    assert result == 4
    assert calls == pytest.approx([0.0, 0.1, 0.3, 0.7])


def test_retries_run_out_and_the_last_error_is_raised_unchanged() -> None:
    clock = FakeClock()
    retry = Retry(2, clock=clock, random=lambda: 1.0)
    errors: list[BaseException] = []

    async def always() -> None:
        error = ConnectionError(f"attempt {len(errors) + 1}")
        errors.append(error)
        raise error

    with pytest.raises(ConnectionError) as caught:
        asyncio.run(retry.call(always))
    assert caught.value is errors[-1] and len(errors) == 3
    assert clock.now() == pytest.approx(0.1 + 0.2)


def test_errors_that_do_not_match_retry_on_are_not_retried() -> None:
    clock = FakeClock()
    retry = Retry(5, retry_on=ConnectionError, clock=clock)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("no")

    with pytest.raises(KeyError):
        asyncio.run(retry.call(broken))
    assert calls == 1 and clock.now() == 0


@pytest.mark.parametrize(
    ("retry_on", "error", "expected"),
    [
        (ConnectionError, ConnectionResetError(), True),
        (ConnectionError, TimeoutError(), False),
        ((KeyError, TimeoutError), TimeoutError(), True),
        (lambda e: "again" in str(e), ValueError("try again"), True),
        (lambda e: "again" in str(e), ValueError("never"), False),
        (Exception, KeyboardInterrupt(), False),
    ],
)
def test_retry_on_types_tuples_and_predicates(
    retry_on: object, error: BaseException, expected: bool
) -> None:
    retry = Retry(1, retry_on=retry_on)  # type: ignore[arg-type]
    assert retry.should_retry(error, 1) is expected
    assert retry.should_retry(error, 2) is False  # out of retries


def test_bad_arguments_say_what_is_wanted() -> None:
    bad_kinds = (ValueError, "nope")
    with pytest.raises(TypeError, match=re.escape(f"got {bad_kinds!r}")):
        Retry(retry_on=bad_kinds)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^retry_on must be .*, got 42$"):
        Retry(retry_on=42)  # type: ignore[arg-type]
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="retries must be an integer"):
            Retry(bad)  # type: ignore[arg-type]
    assert Retry(0).should_retry(ValueError(), 1) is False


def test_the_defaults_are_three_retries_of_every_exception_with_the_documented_backoff() -> None:
    retry = Retry()
    assert retry.retries == 3 and retry.backoff == Backoff(0.1, 2.0, 10.0)
    assert retry.should_retry(ValueError(), 3) and not retry.should_retry(ValueError(), 4)
    assert not retry.should_retry(KeyboardInterrupt(), 1)  # Exception, not BaseException


def test_on_retry_hook_sees_each_failure_and_its_wait() -> None:
    clock = FakeClock()
    retry = Retry(3, clock=clock, random=lambda: 0.5)
    seen: list[tuple[int, str, float]] = []
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError(f"boom {attempts}")
        return "ok"

    result = asyncio.run(retry.call(flaky, on_retry=lambda n, e, w: seen.append((n, str(e), w))))
    assert result == "ok"
    assert [(n, text) for n, text, _ in seen] == [(1, "boom 1"), (2, "boom 2")]
    assert [wait for _, _, wait in seen] == pytest.approx([0.05, 0.1])


def test_retry_after_header_forms() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s(" 1.5 ") == 1.5
    assert retry_after_s("-4") == 0.0
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None
    assert retry_after_s("nan") is None
    assert retry_after_s("inf") == 1e9
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_s(date, now=lambda: 1_000_000.0) == pytest.approx(30.0)
    assert retry_after_s(date, now=lambda: 2_000_000.0) == 0.0
