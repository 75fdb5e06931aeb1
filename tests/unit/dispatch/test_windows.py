"""Send windows and quiet hours land in the recipient's own local time, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mcep.dispatch.windows import NoSendWindow, SendWindow, is_allowed, next_allowed

NINE_TO_SIX = SendWindow(start=time(9), end=time(18))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(at: datetime, zone: str) -> datetime:
    return at.astimezone(ZoneInfo(zone))


def test_tokyo_and_new_york_each_get_their_own_window() -> None:
    now = utc(2026, 3, 2, 23, 30)  # 08:30 Tuesday in Tokyo, 18:30 Monday in New York
    tokyo = next_allowed(now, zone="Asia/Tokyo", window=NINE_TO_SIX)
    new_york = next_allowed(now, zone="America/New_York", window=NINE_TO_SIX)
    assert tokyo == utc(2026, 3, 3, 0, 0)  # 09:00 JST, half an hour later
    assert new_york == utc(2026, 3, 3, 14, 0)  # 09:00 EST next morning
    for at, zone in ((tokyo, "Asia/Tokyo"), (new_york, "America/New_York")):
        assert time(9) <= local(at, zone).time() < time(18)


def test_inside_the_window_means_now() -> None:
    now = utc(2026, 6, 1, 15, 7, 3)  # 11:07 EDT
    assert next_allowed(now, zone="America/New_York", window=NINE_TO_SIX) == now
    assert is_allowed(now, zone="America/New_York", window=NINE_TO_SIX)
    assert not is_allowed(now, zone="Asia/Tokyo", window=NINE_TO_SIX)  # 00:07 JST


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 13, 0)),  # spring forward: 09:00 EDT = 13:00 UTC
        (utc(2026, 3, 7, 23, 0), utc(2026, 3, 8, 13, 0)),
        (utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 14, 0)),  # fall back: 09:00 EST = 14:00 UTC
        (utc(2026, 10, 31, 22, 59), utc(2026, 11, 1, 14, 0)),  # 18:59 EDT, past the end
    ],
)
def test_dst_changes_keep_nine_oclock_local(at: datetime, expected: datetime) -> None:
    result = next_allowed(at, zone="America/New_York", window=NINE_TO_SIX)
    assert result == expected
    assert local(result, "America/New_York").time() == time(9)


def test_a_start_inside_the_spring_forward_gap_maps_to_a_real_instant() -> None:
    window = SendWindow(start=time(2, 30), end=time(5))
    result = next_allowed(utc(2026, 3, 8, 5, 0), zone="America/New_York", window=window)
    assert result == utc(2026, 3, 8, 7, 30)  # 03:30 EDT, the first instant that exists
    assert local(result, "America/New_York").time() == time(3, 30)


def test_quiet_hours_cut_the_window() -> None:
    window = SendWindow(start=time(9), end=time(18), quiet_start=time(12), quiet_end=time(14))
    lunch = datetime(2026, 5, 4, 12, 15, tzinfo=ZoneInfo("Europe/Paris"))
    result = next_allowed(lunch, zone="Europe/Paris", window=window)
    assert local(result, "Europe/Paris") == datetime(
        2026, 5, 4, 14, tzinfo=ZoneInfo("Europe/Paris")
    )


def test_overnight_quiet_hours_inside_an_all_day_window() -> None:
    window = SendWindow(start=time(0), end=time(0), quiet_start=time(21), quiet_end=time(8))
    zone = ZoneInfo("Asia/Tokyo")
    late = datetime(2026, 5, 4, 23, 0, tzinfo=zone)
    assert local(next_allowed(late, zone=zone, window=window), "Asia/Tokyo") == datetime(
        2026, 5, 5, 8, tzinfo=zone
    )
    evening = datetime(2026, 5, 4, 20, 59, tzinfo=zone)
    assert next_allowed(evening, zone=zone, window=window) == evening


def test_a_window_past_midnight() -> None:
    window = SendWindow(start=time(22), end=time(2))
    zone = ZoneInfo("Europe/London")
    assert is_allowed(datetime(2026, 1, 5, 23, 30, tzinfo=zone), zone=zone, window=window)
    assert is_allowed(datetime(2026, 1, 6, 1, 30, tzinfo=zone), zone=zone, window=window)
    after = next_allowed(datetime(2026, 1, 6, 3, 0, tzinfo=zone), zone=zone, window=window)
    assert after.astimezone(zone) == datetime(2026, 1, 6, 22, 0, tzinfo=zone)


def test_send_days_skip_the_weekend() -> None:
    weekdays = SendWindow(days=frozenset(range(5)))
    zone = ZoneInfo("Europe/Berlin")
    saturday = datetime(2026, 5, 9, 10, 0, tzinfo=zone)
    result = next_allowed(saturday, zone=zone, window=weekdays).astimezone(zone)
    assert (result.weekday(), result.time()) == (0, time(9))
    assert result.date() == saturday.date() + timedelta(days=2)


@pytest.mark.parametrize(
    "zone", ["Asia/Tokyo", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]
)
def test_every_hour_of_a_year_lands_in_the_window_and_never_early(zone: str) -> None:
    window = SendWindow(start=time(8), end=time(20), quiet_start=time(12), quiet_end=time(13))
    tz = ZoneInfo(zone)
    at = utc(2026, 1, 1)
    while at < utc(2027, 1, 1):
        result = next_allowed(at, zone=zone, window=window)
        wall = result.astimezone(tz).time()
        assert result >= at and time(8) <= wall < time(20) and not time(12) <= wall < time(13)
        assert result - at < timedelta(hours=13)
        at += timedelta(hours=7, minutes=13)


def test_windows_that_allow_nothing_are_refused() -> None:
    with pytest.raises(NoSendWindow, match="cover the whole"):
        SendWindow(start=time(9), end=time(18), quiet_start=time(8), quiet_end=time(19))
    with pytest.raises(NoSendWindow, match="weekdays"):
        SendWindow(days=frozenset())
    with pytest.raises(NoSendWindow, match="both"):
        SendWindow(quiet_start=time(1))
