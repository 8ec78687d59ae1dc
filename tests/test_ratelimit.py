"""Rate limits (GCRA) and concurrency caps, checked with exact virtual times."""

from __future__ import annotations

import asyncio

import pytest

from plait._clock import FakeClock
from plait._ratelimit import KeyedRateLimiter, KeyedSlots, Rate, RateLimiter, Slots


@pytest.mark.parametrize(
    ("spec", "count", "per_s"),
    [
        ("50/s", 50, 1), ("1000/min", 1000, 60), ("3/5s", 3, 5), ("10/hour", 10, 3600),
        ("2.5/sec", 2.5, 1), (" 7 / 2 mins ", 7, 120), ("1/day", 1, 86400), (4, 4, 1),
        (0.5, 0.5, 1), ("3/hrs", 3, 3600), ("4/secs", 4, 1),
    ],
)
def test_rate_parse(spec: str | float, count: float, per_s: float) -> None:
    rate = Rate.parse(spec)
    assert (rate.count, rate.per_s) == (count, per_s)
    assert Rate.parse(rate) is rate


@pytest.mark.parametrize(
    "spec",
    ["", "fast", "50", "50/ms", "-1/s", "5/fortnight", "5/months", "1/dogs"],
)
def test_rate_parse_rejects_with_an_example(spec: str) -> None:
    # "5/months" is not 5 a minute: only a whole unit word, or its plural, is a unit
    example = "write it like '50/s', '1000/min', '3/5s' or '10/hour'"
    with pytest.raises(ValueError, match=f"^cannot read the rate {spec!r}; {example}$"):
        Rate.parse(spec)


@pytest.mark.parametrize("spec", ["0/s", "1/0s", 0, -2])
def test_a_rate_must_be_positive(spec: str | float) -> None:
    with pytest.raises(ValueError, match=f"^a rate must be positive and finite, got {spec!r}$"):
        Rate.parse(spec)


@pytest.mark.parametrize("spec", [None, [1]])
def test_rate_parse_refuses_other_values(spec: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(spec)  # type: ignore[arg-type]


def starts(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """When each of n callers that arrive together at time 0 is allowed to start."""
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.now())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(main())
    return times


def test_five_starts_at_two_per_second() -> None:
    clock = FakeClock()
    assert starts(RateLimiter("2/s", clock=clock), clock, 5) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_burst_lets_a_few_start_at_once_then_spaces_the_rest() -> None:
    clock = FakeClock()
    assert starts(RateLimiter("2/s", burst=3, clock=clock), clock, 6) == [0, 0, 0, 0.5, 1.0, 1.5]


def test_per_minute_rate() -> None:
    clock = FakeClock()
    times = starts(RateLimiter("1000/min", clock=clock), clock, 4)
    assert times == pytest.approx([0.0, 0.06, 0.12, 0.18])


def test_a_quiet_spell_restores_the_burst_but_no_more() -> None:
    clock = FakeClock()
    limiter = RateLimiter("1/s", burst=2, clock=clock)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 1.0]
    clock.advance(10)
    assert limiter.idle()
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 1.0]


def test_sequential_caller_is_spaced_from_its_own_previous_start() -> None:
    clock = FakeClock()
    limiter = RateLimiter("4/s", clock=clock)
    seen: list[float] = []

    async def main() -> None:
        for _ in range(3):
            await limiter.acquire()
            seen.append(clock.now())
            await clock.sleep(0.1)  # work shorter than the interval

    asyncio.run(main())
    assert seen == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    ("burst", "expected"), [(5, [3.0, 3.0, 3.0]), (1, [3.0, 3.1, 3.2])]
)
def test_pause_until_holds_every_start_back(burst: int, expected: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter("10/s", burst=burst, clock=clock)
    limiter.pause_until(3.0)
    assert not limiter.idle()
    assert starts(limiter, clock, 3) == pytest.approx(expected)


def test_a_cancelled_wait_gives_its_start_back() -> None:
    clock = FakeClock(start=100.0, autojump=False)
    limiter = RateLimiter("1/s", clock=clock)

    async def main() -> None:
        await limiter.acquire()  # start at 100
        waiter = asyncio.create_task(limiter.acquire())  # booked for 101
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    assert limiter.reserve() == 1.0  # the next one gets 101, not 102


def test_idle_exactly_when_a_full_burst_is_back() -> None:
    clock = FakeClock(autojump=False)
    limiter = RateLimiter("1/s", burst=3, clock=clock)
    assert limiter.burst == 3 and limiter.idle()
    limiter.reserve()  # one start at 0: the next is owed at 1.0
    clock.advance(0.5)
    assert not limiter.idle()
    clock.advance(0.5)
    assert limiter.idle()  # at 1.0 exactly
    limiter.pause_until(2.0)
    assert not limiter.idle()
    clock.advance(1.0)
    assert limiter.idle()  # at the end of the pause exactly


def test_bad_burst() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter("1/s", burst=0)
    with pytest.raises(ValueError, match="burst"):
        KeyedRateLimiter("1/s", burst=True)


def test_keyed_limiter_keeps_keys_apart() -> None:
    clock = FakeClock()
    limiter: KeyedRateLimiter[str] = KeyedRateLimiter("2/s", clock=clock)
    seen: list[tuple[str, float]] = []

    async def one(key: str) -> None:
        await limiter.acquire(key)
        seen.append((key, clock.now()))

    async def main() -> None:
        await asyncio.gather(*(one(k) for k in "abab"))

    asyncio.run(main())
    assert sorted(seen) == [("a", 0.0), ("a", 0.5), ("b", 0.0), ("b", 0.5)]


def test_keyed_limiter_forgets_idle_keys() -> None:
    clock = FakeClock()
    limiter: KeyedRateLimiter[int] = KeyedRateLimiter("1/s", clock=clock)
    for key in range(1024):
        limiter.get(key).reserve()
    clock.advance(5)
    limiter.get(-1).reserve()
    assert len(limiter) == 1


def finish_times(limit: int, durations: list[float]) -> list[float]:
    clock = FakeClock()
    slots = Slots(limit)
    done: list[float] = []

    async def job(seconds: float) -> None:
        async with slots:
            await clock.sleep(seconds)
        done.append(clock.now())

    async def main() -> None:
        await asyncio.gather(*(job(s) for s in durations))

    asyncio.run(main())
    return done


def test_slots_cap_how_many_run_at_once() -> None:
    assert finish_times(2, [1, 1, 1, 1, 1]) == [1, 1, 2, 2, 3]
    assert finish_times(5, [1, 1, 1]) == [1, 1, 1]


def test_slots_are_first_come_first_served() -> None:
    order: list[int] = []
    slots = Slots(1)

    async def job(i: int) -> None:
        async with slots:
            order.append(i)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(job(i) for i in range(6)))

    asyncio.run(main())
    assert order == list(range(6))


def test_raising_the_limit_wakes_waiters_and_lowering_waits_for_holders() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        waiters = [asyncio.create_task(slots.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        assert slots.in_use == 1
        slots.limit = 3
        await asyncio.sleep(0)
        assert slots.in_use == 3 and sum(w.done() for w in waiters) == 2
        slots.limit = 1
        slots.release()
        slots.release()
        await asyncio.sleep(0)
        assert slots.in_use == 1 and not waiters[2].done()  # still one over the new limit
        slots.release()
        await asyncio.wait_for(waiters[2], 1)
        assert slots.in_use == 1

    asyncio.run(main())


def test_a_waiter_cancelled_as_it_is_handed_a_slot_gives_it_back() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # hands the slot to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.in_use == 0 and slots.idle()
        other = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiter2 = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiter2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter2
        assert other.done() and slots.in_use == 1

    asyncio.run(main())


def test_keyed_slots_cap_per_key_and_drop_idle_keys() -> None:
    clock = FakeClock()
    slots: KeyedSlots[str] = KeyedSlots(1)
    done: list[tuple[str, float]] = []

    async def job(key: str) -> None:
        await slots.acquire(key)
        try:
            await clock.sleep(1)
        finally:
            slots.release(key)
        done.append((key, clock.now()))

    async def main() -> None:
        await asyncio.gather(*(job(k) for k in "aab"))

    asyncio.run(main())
    assert sorted(done) == [("a", 1.0), ("a", 2.0), ("b", 1.0)]
    assert len(slots) == 0


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, None])
def test_bad_limits(limit: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        Slots(limit)  # type: ignore[arg-type]
