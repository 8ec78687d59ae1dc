"""The clocks: a fake one that moves only when everything waits, and the real one."""

from __future__ import annotations

import asyncio
import time

import pytest

from plait._clock import REAL_CLOCK, Clock, FakeClock, RealClock


def test_fake_clock_jumps_to_each_deadline_exactly() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.5))

    started = time.perf_counter()
    asyncio.run(main())
    assert woke == [("a", 1.0), ("b", 2.5), ("c", 3.0)]
    assert time.perf_counter() - started < 1.0


def test_fake_clock_sleeps_in_sequence_add_up() -> None:
    clock = FakeClock(start=100.0)
    seen: list[float] = []

    async def main() -> None:
        for _ in range(4):
            await clock.sleep(0.25)
            seen.append(clock.now())

    asyncio.run(main())
    assert seen == [100.25, 100.5, 100.75, 101.0]


def test_a_day_of_virtual_time_takes_no_real_time() -> None:
    clock = FakeClock()

    async def main() -> None:
        for _ in range(24):
            await clock.sleep(3600)

    started = time.perf_counter()
    asyncio.run(main())
    assert clock.now() == 86400
    assert time.perf_counter() - started < 1.0


def test_fake_clock_waits_for_busy_tasks_before_jumping() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def busy() -> None:
        for _ in range(50):  # many loop turns of work at virtual time 0
            await asyncio.sleep(0)
        order.append(f"busy done at {clock.now()}")

    async def sleeper() -> None:
        await clock.sleep(1)
        order.append(f"sleeper woke at {clock.now()}")

    async def main() -> None:
        await asyncio.gather(sleeper(), busy())

    asyncio.run(main())
    assert order == ["busy done at 0.0", "sleeper woke at 1.0"]


def test_zero_and_negative_sleeps_do_not_move_time() -> None:
    clock = FakeClock()

    async def main() -> None:
        await clock.sleep(0)
        await clock.sleep(-5)

    asyncio.run(main())
    assert clock.now() == 0.0


def test_manual_advance_without_autojump() -> None:
    clock = FakeClock(autojump=False)
    woke: list[float] = []

    async def main() -> None:
        async def sleeper(seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(clock.now())

        tasks = [asyncio.create_task(sleeper(s)) for s in (1.0, 2.0)]
        await asyncio.sleep(0)
        clock.advance(0.5)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(0.5)
        await asyncio.sleep(0)
        assert woke == [1.0]
        clock.advance(5)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert woke == [1.0, 6.0]
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_a_cancelled_sleeper_does_not_hold_time_back() -> None:
    clock = FakeClock()

    async def main() -> float:
        doomed = asyncio.create_task(clock.sleep(0.5))
        await asyncio.sleep(0)
        doomed.cancel()
        await clock.sleep(2)
        return clock.now()

    assert asyncio.run(main()) == 2.0


def test_real_clock_is_monotonic_and_really_sleeps() -> None:
    clock: Clock = RealClock()
    first = clock.now()

    async def main() -> None:
        await clock.sleep(0.02)
        await clock.sleep(-1)  # no error, no wait

    started = time.perf_counter()
    asyncio.run(main())
    assert clock.now() - first >= 0.02
    assert time.perf_counter() - started < 1.0
    assert isinstance(REAL_CLOCK, RealClock)
