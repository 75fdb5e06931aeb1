"""The retry policy: how long to wait after a transient failure, and when to give up.

Pure (the clock is an argument), in the manner of procrastinate's ``RetryStrategy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_DELAYS: tuple[float, ...] = (60.0, 300.0, 900.0)


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at`` (``delay`` seconds after the failure)."""

    at: datetime
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Retries are exhausted: the message is dead."""

    attempts: int


RetryDecision = Retry | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Wait ``delays[n-1]`` after the n-th failed attempt; after the last delay, give up.

    With the default (1, 5, 15 minutes) a message gets four attempts in all.
    """

    delays: tuple[float, ...] = DEFAULT_DELAYS

    @classmethod
    def of(cls, delays: Sequence[float]) -> RetryPolicy:
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must be 0 or more seconds")
        return cls(tuple(float(d) for d in delays))

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def decide(
        self, *, failed_attempt: int, now: datetime, retry_after: float | None = None
    ) -> RetryDecision:
        """What to do after attempt number ``failed_attempt`` (1-based) failed transiently.

        The provider's own ``retry_after`` is a floor: the next try is never sooner.
        """
        if failed_attempt < 1:
            raise ValueError("attempts are numbered from 1")
        if failed_attempt > len(self.delays):
            return GiveUp(attempts=failed_attempt)
        delay = max(self.delays[failed_attempt - 1], retry_after or 0.0)
        return Retry(at=now + timedelta(seconds=delay), delay=delay)
