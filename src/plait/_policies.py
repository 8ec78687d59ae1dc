"""The per-task policies the scheduler applies on every backend alike: timeout, retries with
backoff, rate limits and a concurrency cap (both optionally per key), and a whole-run deadline.

All of them are off by default and then cost nothing: the scheduler keeps its fast path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._backends._base import Backend, ChunkResult
from ._clock import REAL_CLOCK, Clock
from ._exceptions import SerializationError
from ._ratelimit import KeyedRateLimiter, KeyedSlots
from ._retry import Retry, RetryOn


def _retryable(error: BaseException) -> bool:
    """By default every task error is retried, except one that will fail the same way."""
    return isinstance(error, Exception) and not isinstance(error, SerializationError)


class Policies:
    def __init__(
        self,
        *,
        timeout_s: float | None = None,
        deadline_s: float | None = None,
        retries: int = 0,
        retry_on: RetryOn | None = None,
        rate: str | float | None = None,
        burst: int = 1,
        concurrency: int | None = None,
        limit_key: Callable[[Any], Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or REAL_CLOCK
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.retry = None
        if retries:
            self.retry = Retry(retries, retry_on=retry_on or _retryable, clock=self.clock)
        self.limiter = (
            None if rate is None else KeyedRateLimiter[Any](rate, burst=burst, clock=self.clock)
        )
        self.slots = None if concurrency is None else KeyedSlots[Any](concurrency)
        self.key = limit_key or _no_key

    @property
    def active(self) -> bool:
        return any(
            p is not None
            for p in (self.timeout_s, self.deadline_s, self.retry, self.limiter, self.slots)
        )

    @property
    def per_task(self) -> bool:
        """Timeouts, rates and caps count tasks, so chunks hold one item."""
        return self.timeout_s is not None or self.limiter is not None or self.slots is not None

    async def run(self, backend: Backend, handle: Any, items: Sequence[Any]) -> ChunkResult:
        """Run a chunk under the limits, then retry its failed items."""
        result = await self._dispatch(backend, handle, items)
        if self.retry is not None and result.errors:
            await self._retry_failed(backend, handle, items, result)
        return result

    async def _dispatch(self, backend: Backend, handle: Any, items: Sequence[Any]) -> ChunkResult:
        if self.limiter is None and self.slots is None:
            return await backend.run(handle, items, self.timeout_s)
        key = self.key(items[0])
        if self.limiter is not None:
            await self.limiter.acquire(key)
        if self.slots is None:
            return await backend.run(handle, items, self.timeout_s)
        await self.slots.acquire(key)
        try:
            return await backend.run(handle, items, self.timeout_s)
        finally:
            self.slots.release(key)

    async def _retry_failed(
        self, backend: Backend, handle: Any, items: Sequence[Any], result: ChunkResult
    ) -> None:
        assert self.retry is not None and result.errors is not None
        attempts: dict[int, int] = {}
        for i, error in list(result.errors.items()):
            failures = 1
            while self.retry.should_retry(error, failures):
                await self.clock.sleep(self.retry.delay(failures))
                again = await self._dispatch(backend, handle, [items[i]])
                failures += 1
                if not again.errors:
                    result.values[i] = again.values[0]
                    del result.errors[i]
                    break
                error = again.errors[0]
            else:
                result.errors[i] = error  # quarantined: its attempts are spent
            attempts[i] = failures
        result.attempts = attempts
        if not result.errors:
            result.errors = None


def _no_key(item: Any) -> None:
    return None
