"""Frequency caps per 24 hours and per 7 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcep.dispatch.caps import CapHit, FrequencyCaps, cap_hit, cap_windows


@pytest.mark.parametrize(
    ("day", "week", "expected"),
    [(0, 0, None), (0, 2, None), (1, 1, CapHit.DAY), (0, 3, CapHit.WEEK), (1, 3, CapHit.DAY)],
)
def test_one_a_day_three_a_week(day: int, week: int, expected: CapHit | None) -> None:
    assert cap_hit(FrequencyCaps(per_day=1, per_week=3), last_day=day, last_week=week) == expected


def test_windows_are_the_last_24_hours_and_7_days() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    windows = cap_windows(now)
    assert (now - windows.day_since, now - windows.week_since) == (
        timedelta(days=1),
        timedelta(days=7),
    )


def test_inconsistent_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="per_day <= per_week"):
        FrequencyCaps(per_day=4, per_week=3)
    with pytest.raises(ValueError):
        FrequencyCaps(per_day=0, per_week=3)
