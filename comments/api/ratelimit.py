"""A per-client token bucket, kept in the node's memory."""

from __future__ import annotations

import math

from twisted.internet.interfaces import IReactorTime

__all__ = ["RateLimiter"]


class RateLimiter:
    """
    Allows each key ``capacity`` actions at once, refilled at ``capacity / per_seconds`` per second.

    NOTE: each node counts on its own, so a cluster of N web nodes lets a client through up
    to N times as often. A shared counter needs the Redis tier.
    """

    def __init__(self, clock: IReactorTime, *, capacity: int, per_seconds: float, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._capacity = float(capacity)
        self._rate = capacity / per_seconds
        self._max_keys = max_keys
        self._buckets: dict[str | None, tuple[float, float]] = {}

    def take(self, key: str | None) -> int | None:
        """Spend one token for ``key``; return None when allowed, else the seconds to wait."""
        now = self._clock.seconds()
        tokens, updated = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - updated) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self._rate))
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def refund(self, key: str | None) -> None:
        """Give back the token spent for ``key`` on an action that was then rejected."""
        entry = self._buckets.get(key)
        if entry is not None:
            tokens, updated = entry
            self._buckets[key] = (min(self._capacity, tokens + 1.0), updated)
