"""Rate limits for a whole batch at once: which messages may go now, and how long the others
wait.

Per message the limits are those of :func:`mcep.dispatch.rates.send_checks`: its device, its
recipient's chat, its PM. A batch has a few devices and PMs but a different chat per message,
so the shared limits are asked once per key (how much is left, then one ``hit`` taking that
many units), and only the chat limits once per message: a handful of storage calls per batch
instead of four per message. A message goes only when every one of its limits let it.

The ``hit`` that takes a shared key's units is atomic in the storage, so workers racing for
the same device never exceed its limit together: the one that loses sees its hit refused and
its messages wait.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from limits import RateLimitItem
from limits.aio.strategies import RateLimiter

from mcep.dispatch.rates import Check
from mcep.dispatch.sending import Prepared

Key = tuple[str, ...]
SHARED = frozenset({"device", "pm"})
MIN_WAIT = 0.001


@dataclass
class Admission:
    """The batch's messages that may be sent now, and the seconds each other one must wait."""

    admitted: list[Prepared] = field(default_factory=list)
    waits: dict[uuid.UUID, float] = field(default_factory=dict)


async def admit(
    limiter: RateLimiter,
    batch: Sequence[Prepared],
    *,
    clock: Callable[[], float] = time.time,
) -> Admission:
    """Take the batch's units from every limit, message by message in id order."""
    items: dict[Key, RateLimitItem] = {}
    for prepared in batch:
        for check in _shared(prepared.checks):
            items[check.key] = check.item
    left: dict[Key, int] = {}
    resets: dict[Key, float] = {}
    for key, item in items.items():
        stats = await limiter.get_window_stats(item, *key)
        left[key], resets[key] = stats.remaining, stats.reset_time
    admission = Admission()
    candidates = []
    for prepared in sorted(batch, key=lambda p: p.claimed.id):
        keys = [check.key for check in _shared(prepared.checks)]
        short = [key for key in keys if left[key] <= 0]
        if short:
            admission.waits[prepared.claimed.id] = _wait(max(resets[k] for k in short), clock)
            continue
        for key in keys:
            left[key] -= 1
        candidates.append(prepared)
    for prepared in candidates:
        refused = await _per_message(limiter, prepared.checks, clock)
        if refused is None:
            admission.admitted.append(prepared)
        else:
            admission.waits[prepared.claimed.id] = refused
    await _take_shared(limiter, admission, items, resets, clock)
    return admission


def _shared(checks: Sequence[Check]) -> list[Check]:
    return [check for check in checks if check.key[0] in SHARED]


def _wait(reset_time: float, clock: Callable[[], float]) -> float:
    return max(reset_time - clock(), MIN_WAIT)


async def _per_message(
    limiter: RateLimiter, checks: Sequence[Check], clock: Callable[[], float]
) -> float | None:
    """Take the message's own limits (its chat); the wait if one refuses."""
    for check in checks:
        if check.key[0] in SHARED:
            continue
        if not await limiter.hit(check.item, *check.key):
            stats = await limiter.get_window_stats(check.item, *check.key)
            return _wait(stats.reset_time, clock)
    return None


async def _take_shared(
    limiter: RateLimiter,
    admission: Admission,
    items: dict[Key, RateLimitItem],
    resets: dict[Key, float],
    clock: Callable[[], float],
) -> None:
    """One hit per shared key for all its admitted messages; if another worker took the
    units first, those messages wait instead."""
    users: dict[Key, list[Prepared]] = defaultdict(list)
    for prepared in admission.admitted:
        for check in _shared(prepared.checks):
            users[check.key].append(prepared)
    lost: set[uuid.UUID] = set()
    for key, group in users.items():
        if not await limiter.hit(items[key], *key, cost=len(group)):
            for message in group:
                lost.add(message.claimed.id)
                admission.waits[message.claimed.id] = _wait(resets[key], clock)
    if lost:
        admission.admitted = [p for p in admission.admitted if p.claimed.id not in lost]
