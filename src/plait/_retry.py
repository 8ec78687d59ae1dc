"""Retries: exponential backoff with full jitter, a ``retry_on`` test, an injected clock and dice.

    Backoff(initial_s=0.1, multiplier=2, max_s=10)   the cap of the n-th wait: 0.1, 0.2, 0.4, ...
    Retry(retries=3, retry_on=..., clock=, random=)  whether to try again, and how long to wait
    retry_after_s(header)                            seconds a Retry-After header asks for

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") waits a uniform random time
between 0 and the cap, which spreads the retries of many callers that failed together. Pass
``random=lambda: 1.0`` to get the caps themselves, e.g. in a test.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._checks import is_count
from ._clock import REAL_CLOCK, Clock

T = TypeVar("T")

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
OnRetry = Callable[[int, BaseException, float], None]  # (attempt that failed, its error, wait)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Longest waits between attempts: ``initial_s * multiplier ** (n - 1)``, up to ``max_s``."""

    initial_s: float = 0.1
    multiplier: float = 2.0
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0 or self.multiplier < 1:
            raise ValueError("backoff needs initial_s >= 0, max_s >= 0 and multiplier >= 1")

    def cap(self, failures: int) -> float:
        """The longest wait after the ``failures``-th failed attempt (1 for the first)."""
        if failures < 1 or self.initial_s == 0:
            return 0.0
        if self.multiplier > 1:
            ratio = max(self.max_s, self.initial_s) / self.initial_s
            if failures - 1 >= math.log(ratio, self.multiplier):
                return self.max_s
        return min(self.max_s, self.initial_s * self.multiplier ** (failures - 1))


class Retry:
    """Whether and when to try again; ``await call(fn)`` runs the whole loop."""

    def __init__(
        self,
        retries: int = 3,
        *,
        retry_on: RetryOn = Exception,
        backoff: Backoff | None = None,
        clock: Clock = REAL_CLOCK,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not is_count(retries, 0):
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        self.retries = retries
        self.backoff = backoff if backoff is not None else Backoff()
        self.clock = clock
        self._matches = _matcher(retry_on)
        self._random = random

    def should_retry(self, error: BaseException, failures: int) -> bool:
        """True if the attempt number ``failures`` failed with ``error`` and may be tried again."""
        return failures <= self.retries and self._matches(error)

    def delay(self, failures: int) -> float:
        """A full-jitter wait after the ``failures``-th failure: uniform in [0, cap]."""
        return self._random() * self.backoff.cap(failures)

    async def call(self, fn: Callable[[], Awaitable[T]], *, on_retry: OnRetry | None = None) -> T:
        """Await ``fn()`` until it succeeds or may not be retried; the last error is raised."""
        failures = 0
        while True:
            try:
                return await fn()
            except Exception as error:
                failures += 1
                if not self.should_retry(error, failures):
                    raise
                wait = self.delay(failures)
                if on_retry is not None:
                    on_retry(failures, error, wait)
            await self.clock.sleep(wait)


def _matcher(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    kinds = (retry_on,) if isinstance(retry_on, type) else retry_on
    if isinstance(kinds, tuple):
        if not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
            raise TypeError(_BAD_RETRY_ON.format(retry_on))
        return lambda error: isinstance(error, kinds)
    if callable(kinds):
        return kinds
    raise TypeError(_BAD_RETRY_ON.format(retry_on))


_BAD_RETRY_ON = "retry_on must be exception types or a function of the exception, got {!r}"


def retry_after_s(header: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if header is None:
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        import email.utils  # only for the rare HTTP-date form; it is slow to import

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), 1e9)
