"""What happens to a message after one attempt: a pure decision per send result.

The worker turns each claimed message into an :data:`Attempted` value (the adapter's
:data:`~mcep.channels.base.SendResult`, or one of the reasons it never reached the provider)
and :func:`decide` turns that into a :class:`Decision`: the message's next state, what the
attempt's history row says, the event to log, and what to tell the fleet or the contacts
domain. Nothing here does I/O; the clock and the retry policy are arguments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from mcep.channels.base import (
    Accepted,
    DeviceFailure,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from mcep.dispatch.models import EventKind, MessageState
from mcep.dispatch.retry import GiveUp, RetryPolicy
from mcep.fleet.models import DeviceStatus

REASON_LENGTH = 500
# WhatsApp's spam limits: the number is throttled for quality; retry, and tell the fleet.
DEGRADING_CODES = frozenset({"131048", "131064"})
# Locked, banned or policy-blocked accounts: no message should go through them until a person
# has looked (as for a Signal captcha challenge, which carries a retry-after).
QUARANTINING_CODES = frozenset({"131031", "368", "130497", "133010", "-6"})


@dataclass(frozen=True, slots=True)
class Deferred:
    """A rate limit said wait ``at`` least until this instant; nothing was sent."""

    at: datetime
    reason: str = "rate limited"


@dataclass(frozen=True, slots=True)
class Refused:
    """We would not send: the recipient opted out, was erased, has no handle or content."""

    reason: str
    code: str


@dataclass(frozen=True, slots=True)
class NeedsDevice:
    """The message's device is gone or out of service; another one must take it."""

    reason: str


Attempted = SendResult | Deferred | Refused | NeedsDevice


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one attempt, ready to be written with the rest of its batch."""

    message_id: uuid.UUID
    attempt: int
    state: MessageState
    outcome: str
    """The attempt history's label: accepted, retry, dead, failed, device_failure, ..."""
    failures: int
    event: EventKind | None = None
    code: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    provider_message_id: str | None = None
    next_attempt_at: datetime | None = None
    device_id: uuid.UUID | None = None
    """A new device, when the message moves to another one."""
    reallocate: bool = False
    """Find the message another device (the worker fills :attr:`device_id`)."""
    opt_out: bool = False
    device_report: DeviceStatus | None = None
    """What the message's device should be marked as, if anything."""
    template: bool = False


def _reason(text: str) -> str:
    return text[:REASON_LENGTH]


def decide(
    attempted: Attempted,
    *,
    message_id: uuid.UUID,
    attempt: int,
    failures: int,
    policy: RetryPolicy,
    now: datetime,
    template: bool = False,
) -> Decision:
    """The decision for one attempt of a message that had ``failures`` transient failures."""
    base = Decision(message_id, attempt, MessageState.SENDING, "", failures, template=template)
    match attempted:
        case Accepted(provider_message_id=provider_id):
            return replace(
                base,
                state=MessageState.SENT,
                outcome="accepted",
                event=EventKind.SENT,
                provider_message_id=provider_id,
            )
        case RetryLater():
            return _retry(base, attempted, policy=policy, now=now)
        case PermanentFailure():
            return _failed(base, attempted)
        case DeviceFailure():
            return _device_failed(base, attempted, now=now)
        case Deferred(at=at, reason=reason):
            return replace(
                base,
                state=MessageState.QUEUED,
                outcome="deferred",
                reason=reason,
                next_attempt_at=at,
            )
        case Refused(reason=reason, code=code):
            return replace(
                base,
                state=MessageState.FAILED,
                outcome="refused",
                event=EventKind.FAILED,
                code=code,
                reason=_reason(reason),
            )
        case NeedsDevice(reason=reason):
            return replace(
                base,
                state=MessageState.QUEUED,
                outcome="reassigned",
                event=EventKind.REQUEUED,
                reason=_reason(reason),
                next_attempt_at=now,
                reallocate=True,
            )
    raise TypeError(f"not an attempt outcome: {attempted!r}")


def _failed(base: Decision, result: PermanentFailure) -> Decision:
    return replace(
        base,
        state=MessageState.FAILED,
        outcome="failed",
        event=EventKind.FAILED,
        code=result.code,
        reason=_reason(result.reason),
        opt_out=result.opted_out,
    )


def _device_failed(base: Decision, result: DeviceFailure, *, now: datetime) -> Decision:
    """Back in line at once, for another device to take; the device is reported."""
    return replace(
        base,
        state=MessageState.QUEUED,
        outcome="device_failure",
        event=EventKind.REQUEUED,
        code=result.code,
        reason=_reason(result.reason),
        retry_after=result.retry_after,
        next_attempt_at=now,
        reallocate=True,
        device_report=device_status_after(result),
    )


def _retry(base: Decision, result: RetryLater, *, policy: RetryPolicy, now: datetime) -> Decision:
    failed = base.failures + 1
    decision = policy.decide(failed_attempt=failed, now=now, retry_after=result.retry_after)
    report = DeviceStatus.DEGRADED if result.code in DEGRADING_CODES else None
    common = replace(
        base,
        failures=failed,
        code=result.code,
        reason=_reason(result.reason),
        retry_after=result.retry_after,
        device_report=report,
    )
    if isinstance(decision, GiveUp):
        return replace(common, state=MessageState.DEAD, outcome="dead", event=EventKind.DEAD)
    return replace(
        common,
        state=MessageState.RETRY_SCHEDULED,
        outcome="retry",
        event=EventKind.RETRY_SCHEDULED,
        next_attempt_at=decision.at,
    )


def device_status_after(failure: DeviceFailure) -> DeviceStatus:
    """Quarantine an account that is blocked or must pass a challenge (a captcha comes with a
    retry-after); anything else (a refused token, a broken endpoint) degrades it."""
    if failure.retry_after is not None or failure.code in QUARANTINING_CODES:
        return DeviceStatus.QUARANTINED
    return DeviceStatus.DEGRADED


def without_device(
    decision: Decision, *, platform: str, policy: RetryPolicy, now: datetime
) -> Decision:
    """No other device can take the message: a transient failure like any other, so a fleet
    that stays down ends in a visible dead letter rather than an endless loop."""
    retry = RetryLater(reason=f"no active {platform} device to send through", code="no_device")
    moved = _retry(replace(decision, reallocate=False), retry, policy=policy, now=now)
    return replace(moved, device_report=decision.device_report, outcome=decision.outcome)


def spread(at: datetime, *, position: int, per_second: float) -> datetime:
    """The ``position``-th message deferred on one limit, spaced at the limit's rate, so the
    deferred ones don't all come due in the same instant."""
    if per_second <= 0:
        return at
    return at + timedelta(seconds=position / per_second)
