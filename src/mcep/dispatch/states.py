"""Message state machine: which moves are legal, and provider statuses that only move forward.

::

    queued ─> sending ─> sent ─> delivered ─> read
      ^  \\       │ \\       \\          (a late "delivered" never overwrites "read")
      │   \\      │  └> retry_scheduled ─> sending ...
      │    \\     └> failed | dead                 dead ─(replay)─> queued
      │     └> cancelled | failed (opted out before sending)
      └── sending (lease expired, device failed)
"""

from __future__ import annotations

from mcep.channels.base import DeliveryStatus
from mcep.dispatch.models import MessageState as S

_ALLOWED: dict[S, frozenset[S]] = {
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.FAILED}),
    S.RETRY_SCHEDULED: frozenset({S.SENDING, S.CANCELLED, S.FAILED}),
    S.SENDING: frozenset(
        {S.SENT, S.DELIVERED, S.READ, S.RETRY_SCHEDULED, S.QUEUED, S.FAILED, S.DEAD}
    ),
    S.SENT: frozenset({S.DELIVERED, S.READ, S.FAILED}),
    S.DELIVERED: frozenset({S.READ}),
    S.READ: frozenset(),
    S.FAILED: frozenset(),
    S.DEAD: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset(),
}

WAITING = frozenset({S.QUEUED, S.RETRY_SCHEDULED})
"""States a worker may claim from (when due) and a cancel or opt-out may stop."""
TERMINAL = frozenset({S.READ, S.FAILED, S.DEAD, S.CANCELLED})
"""States nothing automatic moves out of (only a replay moves ``dead``)."""

_STATUS_TARGET = {
    DeliveryStatus.SENT: S.SENT,
    DeliveryStatus.DELIVERED: S.DELIVERED,
    DeliveryStatus.READ: S.READ,
    DeliveryStatus.FAILED: S.FAILED,
}


class InvalidTransition(ValueError):
    def __init__(self, current: S, target: S) -> None:
        super().__init__(f"a {current} message cannot become {target}")
        self.current, self.target = current, target


def can_move(current: S, target: S) -> bool:
    return target in _ALLOWED[current]


def move(current: S, target: S) -> S:
    """``target`` if the move is legal; raises :class:`InvalidTransition` otherwise."""
    if not can_move(current, target):
        raise InvalidTransition(current, target)
    return target


def predecessors(target: S) -> frozenset[S]:
    """States that may move to ``target``: the guard of a set-based
    ``UPDATE ... WHERE state IN (...)`` so a concurrent writer can never move a row back."""
    return frozenset(state for state, targets in _ALLOWED.items() if target in targets)


def apply_status(current: S, status: DeliveryStatus) -> S | None:
    """The new state after a provider status report, or ``None`` when it is stale.

    Statuses only move a message forward: "delivered" after "read" changes nothing, and a
    report that races ahead of our own "sent" write (the webhook beat the commit) is applied.
    """
    target = _STATUS_TARGET[status]
    return target if can_move(current, target) else None
