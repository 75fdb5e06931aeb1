"""Rate limits per device, per recipient chat and per PM, against the in-memory storage."""

from __future__ import annotations

import uuid

from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from mcep.channels.base import Platform
from mcep.dispatch.rates import Check, acquire, device_limit, send_checks


def limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(MemoryStorage())


def test_platform_defaults_and_override() -> None:
    assert (
        device_limit(Platform.WHATSAPP).amount,
        device_limit(Platform.WHATSAPP).get_expiry(),
    ) == (80, 1)
    assert device_limit(Platform.TELEGRAM).amount == 30
    assert device_limit(Platform.IMESSAGE).get_expiry() == 3600
    override = device_limit(Platform.WHATSAPP, rate_per_minute=5)
    assert (override.amount, override.get_expiry()) == (5, 60)


async def test_telegram_allows_one_message_per_second_per_chat() -> None:
    rl = limiter()
    device, pm = uuid.uuid4(), uuid.uuid4()
    alice, bob = uuid.uuid4(), uuid.uuid4()

    def checks(prospect: uuid.UUID) -> list[Check]:
        return send_checks(
            platform=Platform.TELEGRAM, device_id=device, prospect_id=prospect, pm_id=pm
        )

    assert await acquire(rl, checks(alice)) == 0.0
    wait = await acquire(rl, checks(alice))
    assert 0 < wait <= 1.0
    assert await acquire(rl, checks(bob)) == 0.0  # another chat is not held up


async def test_refusal_takes_nothing_from_the_other_limits() -> None:
    rl = limiter()
    device, pm = uuid.uuid4(), uuid.uuid4()

    def send(prospect: uuid.UUID, on: uuid.UUID = device) -> list[Check]:
        return send_checks(
            platform=Platform.SIGNAL,
            device_id=on,
            prospect_id=prospect,
            pm_id=pm,
            rate_per_minute=2,
        )

    assert await acquire(rl, send(uuid.uuid4())) == 0.0
    assert await acquire(rl, send(uuid.uuid4())) == 0.0
    third = uuid.uuid4()
    assert await acquire(rl, send(third)) > 0
    # The device refused, so the third recipient's chat budget is untouched.
    assert await acquire(rl, send(third, on=uuid.uuid4())) == 0.0


async def test_pm_cap() -> None:
    rl = limiter()
    pm = uuid.uuid4()

    def send() -> list[Check]:
        return send_checks(
            platform=Platform.WHATSAPP,
            device_id=uuid.uuid4(),
            prospect_id=uuid.uuid4(),
            pm_id=pm,
            pm_limit="3/minute",
        )

    results = [await acquire(rl, send()) for _ in range(4)]
    assert results[:3] == [0.0, 0.0, 0.0] and 0 < results[3] <= 60
