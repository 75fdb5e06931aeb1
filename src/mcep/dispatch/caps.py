"""Frequency caps: how many campaign messages a prospect may get per 24 hours and per 7 days.

A message counts from the moment it is queued until it is cancelled, failed or dead: a
queued message will reach the prospect soon, so it uses up the cap as a sent one does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from mcep.dispatch.models import MessageState

COUNTED_STATES = frozenset(
    {
        MessageState.QUEUED,
        MessageState.SENDING,
        MessageState.SENT,
        MessageState.DELIVERED,
        MessageState.READ,
        MessageState.RETRY_SCHEDULED,
    }
)


class CapHit(enum.StrEnum):
    DAY = "frequency_cap_day"
    WEEK = "frequency_cap_week"


@dataclass(frozen=True, slots=True)
class FrequencyCaps:
    per_day: int = 1
    per_week: int = 3

    def __post_init__(self) -> None:
        if self.per_day < 1 or self.per_week < self.per_day:
            raise ValueError("caps need 1 <= per_day <= per_week")


@dataclass(frozen=True, slots=True)
class CapWindows:
    """Messages touching the prospect at or after these instants count against the caps."""

    day_since: datetime
    week_since: datetime


def cap_windows(now: datetime) -> CapWindows:
    return CapWindows(day_since=now - timedelta(days=1), week_since=now - timedelta(days=7))


def cap_hit(caps: FrequencyCaps, *, last_day: int, last_week: int) -> CapHit | None:
    """Which cap one more message would break, given the counts in each window."""
    if last_day >= caps.per_day:
        return CapHit.DAY
    if last_week >= caps.per_week:
        return CapHit.WEEK
    return None
