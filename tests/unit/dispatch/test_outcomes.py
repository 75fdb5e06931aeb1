"""The decision after one attempt: pure, with the clock and the retry policy as arguments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mcep.channels.base import Accepted, DeviceFailure, PermanentFailure, RetryLater
from mcep.dispatch.models import EventKind, MessageState
from mcep.dispatch.outcomes import (
    Attempted,
    Decision,
    Deferred,
    NeedsDevice,
    Refused,
    decide,
    device_status_after,
    spread,
    without_device,
)
from mcep.dispatch.retry import RetryPolicy
from mcep.fleet.models import DeviceStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()


def _decide(attempted: Attempted, *, failures: int = 0) -> Decision:
    return decide(
        attempted, message_id=uuid.uuid4(), attempt=1, failures=failures, policy=POLICY, now=NOW
    )


def test_accepted_is_sent_with_the_providers_id() -> None:
    decision = _decide(Accepted("wamid.1"))
    assert (decision.state, decision.event, decision.outcome) == (
        MessageState.SENT,
        EventKind.SENT,
        "accepted",
    )
    assert decision.provider_message_id == "wamid.1" and decision.next_attempt_at is None


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, timedelta(minutes=1)), (1, timedelta(minutes=5)), (2, timedelta(minutes=15))],
)
def test_transient_failures_follow_the_policy(failures: int, wait: timedelta) -> None:
    decision = _decide(RetryLater("busy", code="131000"), failures=failures)
    assert decision.state is MessageState.RETRY_SCHEDULED
    assert (decision.next_attempt_at, decision.failures) == (NOW + wait, failures + 1)
    assert decision.event is EventKind.RETRY_SCHEDULED and decision.device_report is None


def test_the_fourth_transient_failure_is_dead() -> None:
    decision = _decide(RetryLater("busy"), failures=3)
    assert (decision.state, decision.event, decision.failures) == (
        MessageState.DEAD,
        EventKind.DEAD,
        4,
    )


def test_the_providers_retry_after_is_a_floor() -> None:
    decision = _decide(RetryLater("429", retry_after=90.0))
    assert decision.next_attempt_at == NOW + timedelta(seconds=90)
    assert decision.retry_after == 90.0


def test_a_spam_limit_retries_and_degrades_the_device() -> None:
    decision = _decide(RetryLater("device degraded: spam", code="131048"))
    assert decision.state is MessageState.RETRY_SCHEDULED
    assert decision.device_report is DeviceStatus.DEGRADED


def test_permanent_failures_keep_their_reason_and_opt_out() -> None:
    decision = _decide(PermanentFailure("blocked by the user", code="403", opted_out=True))
    assert (decision.state, decision.reason, decision.code, decision.opt_out) == (
        MessageState.FAILED,
        "blocked by the user",
        "403",
        True,
    )
    assert len(_decide(PermanentFailure("x" * 900)).reason or "") == 500


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (DeviceFailure("token rejected", code="190"), DeviceStatus.DEGRADED),
        (DeviceFailure("account locked", code="131031"), DeviceStatus.QUARANTINED),
        (
            DeviceFailure("captcha", code="RATE_LIMIT_FAILURE", retry_after=86400),
            DeviceStatus.QUARANTINED,
        ),
    ],
)
def test_device_failures_requeue_on_another_device(
    failure: DeviceFailure, status: DeviceStatus
) -> None:
    decision = _decide(failure, failures=2)
    assert (decision.state, decision.reallocate, decision.failures) == (
        MessageState.QUEUED,
        True,
        2,
    )
    assert decision.device_report is status is device_status_after(failure)
    assert decision.next_attempt_at == NOW and decision.event is EventKind.REQUEUED


def test_without_another_device_a_device_failure_is_a_counted_retry() -> None:
    decision = _decide(DeviceFailure("token rejected", code="401"))
    moved = without_device(decision, platform="telegram", policy=POLICY, now=NOW)
    assert (moved.state, moved.failures, moved.reallocate) == (
        MessageState.RETRY_SCHEDULED,
        1,
        False,
    )
    assert moved.device_report is DeviceStatus.DEGRADED and moved.outcome == "device_failure"
    assert moved.reason == "no active telegram device to send through"


def test_deferred_refused_and_reassigned() -> None:
    later = NOW + timedelta(seconds=3)
    deferred = _decide(Deferred(at=later), failures=1)
    assert (deferred.state, deferred.event, deferred.failures, deferred.next_attempt_at) == (
        MessageState.QUEUED,
        None,
        1,
        later,
    )
    refused = _decide(Refused("the prospect opted out", "opted_out"))
    assert (refused.state, refused.outcome, refused.opt_out) == (
        MessageState.FAILED,
        "refused",
        False,
    )
    moved = _decide(NeedsDevice("the message's device is quarantined"))
    assert moved.reallocate and moved.device_report is None


def test_spread_spaces_deferred_messages_at_the_limits_rate() -> None:
    assert [spread(NOW, position=i, per_second=2.0) - NOW for i in range(3)] == [
        timedelta(0),
        timedelta(seconds=0.5),
        timedelta(seconds=1),
    ]
