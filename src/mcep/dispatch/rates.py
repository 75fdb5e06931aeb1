"""Rate limits for sending: per device, per recipient chat, per PM (item 6 of the dispatch issue).

Defaults per platform come from CHANNELS.md: WhatsApp Cloud API 80 msg/s per number and about
one message per 6 s to the same user (error 131056); Telegram about 30 msg/s per bot and
1 msg/s per chat; Signal publishes nothing and captchas come early, so its default is
conservative; Apple throttles bulk iMessage at about 200 an hour, so we stay well below.
A device's ``rate_per_minute`` overrides its platform default.

Limiter keys never carry personal data: recipients are keyed by prospect id, not handle. The
limiter and its storage (memory on the embedded default, Redis when workers share the work)
come from the composition root (``Runtime.limiter_storage``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.strategies import RateLimiter

from mcep.channels.base import Platform

DEVICE_DEFAULTS: dict[Platform, str] = {
    Platform.WHATSAPP: "80/second",
    Platform.TELEGRAM: "30/second",
    Platform.SIGNAL: "20/minute",
    Platform.IMESSAGE: "100/hour",
}
RECIPIENT_LIMITS: dict[Platform, str] = {
    Platform.WHATSAPP: "1 per 6 seconds",
    Platform.TELEGRAM: "1/second",
    Platform.SIGNAL: "1/second",
    Platform.IMESSAGE: "1/second",
}


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to pass, under one key."""

    item: RateLimitItem
    key: tuple[str, ...]


def device_limit(platform: Platform, rate_per_minute: int | None = None) -> RateLimitItem:
    if rate_per_minute is not None:
        return RateLimitItemPerMinute(rate_per_minute)
    return parse(DEVICE_DEFAULTS[platform])


def send_checks(
    *,
    platform: Platform,
    device_id: uuid.UUID,
    prospect_id: uuid.UUID,
    pm_id: uuid.UUID,
    rate_per_minute: int | None = None,
    pm_limit: str | None = None,
) -> list[Check]:
    """Every limit one send must pass: the device, the recipient's chat, and the PM's cap."""
    checks = [
        Check(device_limit(platform, rate_per_minute), ("device", str(device_id))),
        Check(parse(RECIPIENT_LIMITS[platform]), ("chat", platform.value, str(prospect_id))),
    ]
    if pm_limit:
        checks.append(Check(parse(pm_limit), ("pm", str(pm_id))))
    return checks


async def acquire(
    limiter: RateLimiter, checks: Sequence[Check], *, clock: Callable[[], float] = time.time
) -> float:
    """Take one unit from every limit, or none: 0.0 when the send may go, otherwise the
    seconds to wait before the tightest refused limit frees up."""
    for check in checks:
        if not await limiter.test(check.item, *check.key):
            return await _wait(limiter, check, clock)
    for check in checks:
        if not await limiter.hit(check.item, *check.key):  # lost a race with another worker
            return await _wait(limiter, check, clock)
    return 0.0


async def _wait(limiter: RateLimiter, check: Check, clock: Callable[[], float]) -> float:
    stats = await limiter.get_window_stats(check.item, *check.key)
    return max(stats.reset_time - clock(), 0.001)
