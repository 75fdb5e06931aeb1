"""When a recipient may be messaged: send window and quiet hours in *their* time zone.

Pure: the instant to start from is passed in. Wall-clock times are turned into instants with
``zoneinfo``, interval by interval and day by day, so DST changes are handled by the zone data:
a 09:00 window start is 09:00 local on both sides of a clock change, and a start that falls in
a spring-forward gap maps to the first real instant after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY = timedelta(days=1)
Interval = tuple[timedelta, timedelta]
"""A half-open ``[start, end)`` span of one local day, as offsets from local midnight."""


class NoSendWindow(ValueError):
    """The window, quiet hours and days leave no instant to send in."""


def _offset(t: time) -> timedelta:
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def daily_span(start: time, end: time) -> list[Interval]:
    """A daily span; one that ends before it starts runs past midnight; equal ends = all day."""
    s, e = _offset(start), _offset(end)
    if s < e:
        return [(s, e)]
    if s == e:
        return [(timedelta(0), DAY)]
    return [(timedelta(0), e), (s, DAY)]


def subtract(intervals: Iterable[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    """``intervals`` minus every interval of ``cuts``."""
    result = list(intervals)
    for cut_start, cut_end in cuts:
        remaining: list[Interval] = []
        for start, end in result:
            if cut_end <= start or end <= cut_start:
                remaining.append((start, end))
                continue
            if start < cut_start:
                remaining.append((start, cut_start))
            if cut_end < end:
                remaining.append((cut_end, end))
        result = remaining
    return result


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Allowed local times: inside ``start``-``end``, outside quiet hours, on ``days``
    (Monday = 0)."""

    start: time = time(9)
    end: time = time(18)
    quiet_start: time | None = None
    quiet_end: time | None = None
    days: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))

    def __post_init__(self) -> None:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise NoSendWindow("quiet hours need both a start and an end")
        if not self.days or not self.days <= frozenset(range(7)):
            raise NoSendWindow("send days must be a non-empty set of weekdays 0-6 (Monday = 0)")
        if not self.daily_intervals():
            raise NoSendWindow("the quiet hours cover the whole send window")

    def daily_intervals(self) -> list[Interval]:
        """The allowed spans of any one local day, in order."""
        allowed = daily_span(self.start, self.end)
        if self.quiet_start is not None and self.quiet_end is not None:
            allowed = subtract(allowed, daily_span(self.quiet_start, self.quiet_end))
        return sorted(allowed)


def _instant(day: date, offset: timedelta, zone: ZoneInfo) -> datetime:
    # Aware + timedelta is wall-clock arithmetic; the zone then gives that wall time's offset.
    return (datetime.combine(day, time(0), tzinfo=zone) + offset).astimezone(UTC)


def next_allowed(at: datetime, *, zone: str | ZoneInfo, window: SendWindow) -> datetime:
    """The first instant at or after ``at`` (UTC) when the window allows sending in ``zone``."""
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    at_utc = at.astimezone(UTC)
    first_day = at_utc.astimezone(tz).date()
    intervals = window.daily_intervals()
    for n in range(8):
        day = first_day + timedelta(days=n)
        if day.weekday() not in window.days:
            continue
        for start, end in intervals:
            start_at, end_at = _instant(day, start, tz), _instant(day, end, tz)
            if at_utc < end_at and start_at < end_at:
                return max(at_utc, start_at)
    raise NoSendWindow("no allowed instant within a week")  # unreachable for a valid window


def is_allowed(at: datetime, *, zone: str | ZoneInfo, window: SendWindow) -> bool:
    """Whether ``at`` itself lies inside the recipient's window."""
    return next_allowed(at, zone=zone, window=window) == at.astimezone(UTC)
