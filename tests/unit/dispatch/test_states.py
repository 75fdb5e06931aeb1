"""Message states only move forward; provider statuses never move a message back."""

from __future__ import annotations

import pytest

from mcep.channels.base import DeliveryStatus
from mcep.dispatch.models import MessageState as S
from mcep.dispatch.states import (
    TERMINAL,
    InvalidTransition,
    apply_status,
    can_move,
    move,
    predecessors,
)

LADDER = [S.SENDING, S.SENT, S.DELIVERED, S.READ]


def test_the_happy_path() -> None:
    state = S.QUEUED
    for target in LADDER:
        state = move(state, target)
    assert state is S.READ


def test_a_late_delivered_never_overwrites_read() -> None:
    assert apply_status(S.READ, DeliveryStatus.DELIVERED) is None
    assert apply_status(S.READ, DeliveryStatus.SENT) is None
    assert apply_status(S.DELIVERED, DeliveryStatus.SENT) is None
    assert apply_status(S.DELIVERED, DeliveryStatus.DELIVERED) is None  # a duplicate report


def test_statuses_move_forward_even_past_missing_steps() -> None:
    assert apply_status(S.SENT, DeliveryStatus.READ) is S.READ
    assert apply_status(S.SENT, DeliveryStatus.DELIVERED) is S.DELIVERED
    # The webhook raced ahead of the worker's own "sent" commit.
    assert apply_status(S.SENDING, DeliveryStatus.DELIVERED) is S.DELIVERED
    # A failure reported after acceptance (WhatsApp 131026 arrives as a status).
    assert apply_status(S.SENT, DeliveryStatus.FAILED) is S.FAILED
    assert apply_status(S.DELIVERED, DeliveryStatus.FAILED) is None


def test_no_status_moves_a_message_down_the_ladder() -> None:
    for i, current in enumerate(LADDER):
        for status in DeliveryStatus:
            new = apply_status(current, status)
            if new in LADDER:
                assert LADDER.index(new) > i


def test_terminal_states_stay_put_except_replay_of_dead() -> None:
    for state in TERMINAL:
        for target in S:
            assert can_move(state, target) == (state is S.DEAD and target is S.QUEUED)
    with pytest.raises(InvalidTransition, match="a cancelled message cannot become sending"):
        move(S.CANCELLED, S.SENDING)


def test_guards_for_set_based_updates() -> None:
    assert predecessors(S.SENT) == {S.SENDING}
    assert predecessors(S.SENDING) == {S.QUEUED, S.RETRY_SCHEDULED}
    assert predecessors(S.QUEUED) == {S.SENDING, S.DEAD}  # lease expiry, replay
    assert predecessors(S.CANCELLED) == {S.QUEUED, S.RETRY_SCHEDULED}  # never one in flight
    assert predecessors(S.READ) == {S.SENDING, S.SENT, S.DELIVERED}
