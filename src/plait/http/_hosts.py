"""Politeness per host: requests in flight (fixed, or adaptive), the start rate, and the
Retry-After pauses that hold every request to a host together."""

from __future__ import annotations

from .._clock import Clock
from .._ratelimit import KeyedRateLimiter, KeyedSlots
from ._config import FetchConfig


class HostGate:
    """``await enter(host)`` before a request, ``leave(host)`` after it, whatever happened."""

    def __init__(self, config: FetchConfig, clock: Clock) -> None:
        self._clock = clock
        self._max_retry_after = config.max_retry_after
        self._adaptive = config.adaptive
        per_host = config.per_host or (config.concurrency if config.adaptive else None)
        self._max_per_host = per_host or config.concurrency
        self._slots: KeyedSlots[str] | None = KeyedSlots(per_host) if per_host else None
        self._rates: KeyedRateLimiter[str] | None = None
        if config.rate is not None:
            self._rates = KeyedRateLimiter(config.rate, burst=config.burst, clock=clock)
        self._pauses: dict[str, float] = {}
        self._grown: dict[str, int] = {}  # adaptive: successes since the last change, per host
        self._cut_at: dict[str, float] = {}  # adaptive: when a host's concurrency was last halved

    async def enter(self, host: str) -> None:
        if self._pauses:
            await self._wait_pause(host)
        if self._slots is not None:
            await self._slots.acquire(host)
        try:
            if self._rates is not None:
                await self._rates.acquire(host)
            if self._pauses:  # a pause may have begun while this request waited for its turn
                await self._wait_pause(host)
        except BaseException:
            self.leave(host)
            raise

    def leave(self, host: str) -> None:
        if self._slots is not None:
            self._slots.release(host)

    def paused(self, host: str) -> bool:
        """A pause holds ``host``: a retry waits for it in ``enter``, with no backoff of its own."""
        return host in self._pauses

    async def _wait_pause(self, host: str) -> None:
        while (until := self._pauses.get(host)) is not None:
            delay = until - self._clock.now()
            if delay <= 0:
                if self._pauses.get(host) == until:
                    del self._pauses[host]
                return
            await self._clock.sleep(delay)

    def overloaded(self, host: str, retry_after_s: float | None, started: float) -> None:
        """The host answered 429 or 503 to a request sent at ``started``."""
        if retry_after_s is not None:
            self.pause(host, retry_after_s)
        if self._adaptive:
            self._cut(host, started)

    def pause(self, host: str, seconds: float) -> None:
        """No request to ``host`` starts for ``seconds``: they all wait together."""
        until = self._clock.now() + min(seconds, self._max_retry_after)
        if until > self._pauses.get(host, float("-inf")):
            self._pauses[host] = until
            if self._rates is not None:
                self._rates.get(host).pause_until(until)

    def _cut(self, host: str, started: float) -> None:
        """Halve the host's concurrency, once per overload: only for requests sent after the
        last cut (the others were sent under the old limit)."""
        if self._slots is None or started < self._cut_at.get(host, float("-inf")):
            return
        slots = self._slots.get(host)
        slots.limit = max(1, slots.limit // 2)
        self._cut_at[host] = self._clock.now()
        self._grown[host] = 0

    def succeeded(self, host: str) -> None:
        """Adaptive: grow the host's concurrency by one after a full round of successes."""
        if not self._adaptive or self._slots is None:
            return
        slots = self._slots.get(host)
        if slots.limit >= self._max_per_host:
            return
        grown = self._grown.get(host, 0) + 1
        if grown >= slots.limit:
            slots.limit += 1
            grown = 0
        self._grown[host] = grown
