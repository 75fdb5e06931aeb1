"""Retries: 1, 5, 15 minutes then dead, on an injected clock; a provider retry-after is a floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcep.dispatch.retry import GiveUp, Retry, RetryPolicy

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_default_schedule_is_one_five_fifteen_minutes_then_dead() -> None:
    policy = RetryPolicy()
    clock = T0
    schedule = []
    attempt = 1
    while True:
        decision = policy.decide(failed_attempt=attempt, now=clock)
        if isinstance(decision, GiveUp):
            break
        schedule.append(decision.at - clock)
        clock = decision.at  # the next attempt runs exactly when due, and fails again
        attempt += 1
    assert schedule == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)]
    assert decision == GiveUp(attempts=4) and policy.max_attempts == 4
    assert clock == T0 + timedelta(minutes=21)


def test_provider_retry_after_is_never_undercut() -> None:
    fast = RetryPolicy.of([5, 5, 5])
    decision = fast.decide(failed_attempt=1, now=T0, retry_after=30)
    assert decision == Retry(at=T0 + timedelta(seconds=30), delay=30)
    # The policy's own longer delay still wins over a shorter provider hint.
    assert RetryPolicy().decide(failed_attempt=1, now=T0, retry_after=30) == Retry(
        at=T0 + timedelta(seconds=60), delay=60
    )
    assert RetryPolicy().decide(failed_attempt=2, now=T0, retry_after=86400) == Retry(
        at=T0 + timedelta(days=1), delay=86400
    )


def test_retry_after_does_not_buy_extra_attempts() -> None:
    assert isinstance(RetryPolicy().decide(failed_attempt=4, now=T0, retry_after=30), GiveUp)


def test_a_profile_can_choose_its_own_delays() -> None:
    policy = RetryPolicy.of([10])
    assert policy.decide(failed_attempt=1, now=T0) == Retry(T0 + timedelta(seconds=10), 10)
    assert policy.decide(failed_attempt=2, now=T0) == GiveUp(2)
    assert RetryPolicy.of([]).decide(failed_attempt=1, now=T0) == GiveUp(1)


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="from 1"):
        RetryPolicy().decide(failed_attempt=0, now=T0)
    with pytest.raises(ValueError, match="0 or more"):
        RetryPolicy.of([60, -1])
