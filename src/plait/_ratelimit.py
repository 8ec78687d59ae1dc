"""Rate limits and concurrency caps, each usable alone or keyed (e.g. one per host).

    Rate.parse("50/s") / ("1000/min") / (2.5)   how many starts per period
    RateLimiter(rate, burst=, clock=)           GCRA: starts spaced evenly, ``burst`` at once
    KeyedRateLimiter                            one RateLimiter per key, created on first use
    Slots(limit)                                a FIFO semaphore whose limit can change while in use
    KeyedSlots                                  one Slots per key, dropped when idle

GCRA (the generic cell rate algorithm) keeps one number, the theoretical arrival time (TAT) of the
next start. A start is allowed at ``max(now, TAT - tolerance)`` where the tolerance is
``(burst - 1) * interval``; each start pushes TAT on by one interval. 5 starts at "2/s" with
burst 1 begin at 0, 0.5, 1.0, 1.5 and 2.0; with burst 3 at 0, 0, 0, 0.5 and 1.0. Starts are
reserved in the order callers arrive, so waiting callers never race each other.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._checks import is_count
from ._clock import REAL_CLOCK, Clock

K = TypeVar("K")

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(\d+(?:\.\d*)?)?\s*([a-z]+)\s*$")
_PRUNE_AT = 1024  # keyed limiters drop idle keys once they hold this many


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` starts every ``per_s`` seconds."""

    count: float
    per_s: float = 1.0

    @property
    def interval_s(self) -> float:
        return self.per_s / self.count

    @classmethod
    def parse(cls, spec: str | float | Rate) -> Rate:
        """``"50/s"``, ``"1000/min"``, ``"3/5s"``, ``"10/hour"``, or starts per second."""
        if isinstance(spec, Rate):
            return spec
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            if not 0 < spec < math.inf:  # also refuses NaN
                raise ValueError(f"a rate must be positive and finite, got {spec!r}")
            return cls(float(spec))
        match = _RATE.match(spec.lower()) if isinstance(spec, str) else None
        if match is None or _unit(match.group(3)) is None:
            raise ValueError(
                f"cannot read the rate {spec!r}; "
                "write it like '50/s', '1000/min', '3/5s' or '10/hour'"
            )
        count, multiple = float(match.group(1)), match.group(2)
        per_s = (float(multiple) if multiple else 1.0) * (_unit(match.group(3)) or 1.0)
        if not (0 < count < math.inf and 0 < per_s < math.inf):
            raise ValueError(f"a rate must be positive and finite, got {spec!r}")
        return cls(count, per_s)


class RateLimiter:
    """GCRA limiter: ``await acquire()`` returns when the next start is allowed."""

    def __init__(
        self, rate: str | float | Rate, *, burst: int = 1, clock: Clock = REAL_CLOCK
    ) -> None:
        if not is_count(burst, 1):
            raise ValueError(f"burst must be a positive integer, got {burst!r}")
        self.rate = Rate.parse(rate)
        self.burst = burst
        self._clock = clock
        self._interval = self.rate.interval_s
        self._tolerance = (burst - 1) * self._interval
        self._tat = float("-inf")
        self._not_before = float("-inf")

    def reserve(self) -> float:
        """Book the next start; return how long to wait for it (0 if it may begin now)."""
        now = self._clock.now()
        earliest = max(now, self._not_before)
        tat = max(self._tat, earliest)
        start = max(earliest, tat - self._tolerance)
        self._tat = tat + self._interval
        return start - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay <= 0:
            return
        booked = self._tat
        try:
            await self._clock.sleep(delay)
        except asyncio.CancelledError:
            if self._tat == booked:  # nobody booked after us: give the start back
                self._tat -= self._interval
            raise

    def pause_until(self, when: float) -> None:
        """Allow no start before ``when`` (e.g. a server's Retry-After); then the burst again."""
        self._not_before = max(self._not_before, when)

    def idle(self) -> bool:
        """True when the limiter is back to a fresh state (a full burst is available)."""
        now = self._clock.now()
        return self._tat <= now and self._not_before <= now


class KeyedRateLimiter(Generic[K]):
    """One GCRA limiter per key (e.g. per host), all with the same rate and burst."""

    def __init__(
        self, rate: str | float | Rate, *, burst: int = 1, clock: Clock = REAL_CLOCK
    ) -> None:
        self.rate = Rate.parse(rate)
        self.burst = burst
        self._clock = clock
        self._limiters: dict[K, RateLimiter] = {}
        RateLimiter(self.rate, burst=burst, clock=clock)  # check the arguments now

    def get(self, key: K) -> RateLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            if len(self._limiters) >= _PRUNE_AT:
                self._prune()
            limiter = RateLimiter(self.rate, burst=self.burst, clock=self._clock)
            self._limiters[key] = limiter
        return limiter

    async def acquire(self, key: K) -> None:
        await self.get(key).acquire()

    def __len__(self) -> int:
        return len(self._limiters)

    def _prune(self) -> None:
        self._limiters = {key: lim for key, lim in self._limiters.items() if not lim.idle()}


class Slots:
    """A first-come-first-served semaphore whose ``limit`` may be raised or lowered at any time.

    Lowering the limit never interrupts holders; new holders wait until the count is below it.
    """

    def __init__(self, limit: int) -> None:
        self._limit = _check_limit(limit)
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = _check_limit(value)
        self._wake()

    @property
    def in_use(self) -> int:
        return self._in_use

    def idle(self) -> bool:
        return self._in_use == 0 and not self._waiters

    async def acquire(self) -> None:
        if self._in_use < self._limit and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class KeyedSlots(Generic[K]):
    """One ``Slots`` per key with the same starting limit; a key's entry goes when it is idle."""

    def __init__(self, limit: int) -> None:
        self.limit = _check_limit(limit)
        self._slots: dict[K, Slots] = {}

    def get(self, key: K) -> Slots:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = Slots(self.limit)
        return slots

    async def acquire(self, key: K) -> Slots:
        slots = self.get(key)
        await slots.acquire()
        return slots

    def release(self, key: K) -> None:
        slots = self._slots[key]
        slots.release()
        if slots.idle() and slots.limit == self.limit:
            del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)


def _unit(word: str) -> float | None:
    """Seconds in a unit word; a plural ("mins", "hours") is accepted, "ms" is not minutes."""
    if word in _UNITS:
        return _UNITS[word]
    if len(word) > 2 and word.endswith("s"):
        return _UNITS.get(word[:-1])
    return None


def _check_limit(limit: int) -> int:
    if not is_count(limit, 1):
        raise ValueError(f"a concurrency limit must be a positive integer, got {limit!r}")
    return limit
