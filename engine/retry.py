"""Backoff policies: how long a failed task waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: ``delay = uniform(jitter_floor, 1) * min(cap,
    base * factor ** (attempt - 1))``. Jitter spreads a burst of failures so that their retries
    do not all come due in the same instant."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: float = 0.5
    """Fraction of the delay that is randomised (0 = none, 1 = full jitter)."""

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        r = (rng or random).random()
        return raw * (1 - self.jitter) + raw * self.jitter * r


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same delay every time (plus a little jitter)."""

    seconds: float = 5.0
    jitter: float = 0.1

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        r = (rng or random).random()
        return self.seconds * (1 - self.jitter + self.jitter * r)


RetryPolicy = Backoff | Fixed
DEFAULT_POLICY: RetryPolicy = Backoff()
