"""A batch's rate limits at once: shared limits (device, PM) asked once per key, the chat
limit per message, and never more units taken than a limit allows, even in a race."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from mcep.channels.base import DeviceRef, OutboundMessage, Platform
from mcep.contacts.models import Channel
from mcep.dispatch.budget import admit
from mcep.dispatch.rates import send_checks
from mcep.dispatch.repository import ClaimedMessage
from mcep.dispatch.sending import Prepared

DEVICE = uuid.uuid4()
PM = uuid.uuid4()


def _prepared(prospect_id: uuid.UUID, *, per_minute: int, pm_limit: str | None = None) -> Prepared:
    claimed = ClaimedMessage(
        id=uuid.uuid4(),
        campaign_id=uuid.uuid4(),
        pm_id=PM,
        prospect_id=prospect_id,
        variant="default",
        channel=Channel.TELEGRAM,
        device_id=DEVICE,
        attempt=1,
        failures=0,
        content_enc=None,
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    text = OutboundMessage(key=claimed.key, recipient="42", body="hi")
    device = DeviceRef(str(DEVICE), Platform.TELEGRAM, "bot", "http://127.0.0.1:9", "1:x")
    checks = send_checks(
        platform=Platform.TELEGRAM,
        device_id=DEVICE,
        prospect_id=prospect_id,
        pm_id=PM,
        rate_per_minute=per_minute,
        pm_limit=pm_limit,
    )
    return Prepared(claimed, device, text, None, False, checks)


async def test_a_device_limit_admits_the_first_messages_and_the_rest_wait() -> None:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    batch = [_prepared(uuid.uuid4(), per_minute=3) for _ in range(5)]
    admission = await admit(limiter, batch)
    first = sorted(batch, key=lambda p: p.claimed.id)
    assert [p.claimed.id for p in admission.admitted] == [p.claimed.id for p in first[:3]]
    assert set(admission.waits) == {p.claimed.id for p in first[3:]}
    assert all(55 < wait <= 60 for wait in admission.waits.values())
    again = await admit(limiter, [_prepared(uuid.uuid4(), per_minute=3)])
    assert again.admitted == [] and len(again.waits) == 1  # the three units are taken


async def test_the_chat_limit_holds_a_second_message_to_the_same_person() -> None:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    person = uuid.uuid4()
    batch = [_prepared(person, per_minute=600) for _ in range(2)]
    admission = await admit(limiter, batch)
    assert len(admission.admitted) == 1
    (wait,) = admission.waits.values()
    assert 0 < wait <= 1  # Telegram: one message a second per chat


async def test_a_pm_cap_is_shared_across_devices() -> None:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    batch = [_prepared(uuid.uuid4(), per_minute=600, pm_limit="2/minute") for _ in range(4)]
    admission = await admit(limiter, batch)
    assert (len(admission.admitted), len(admission.waits)) == (2, 2)


class _StaleStats(MovingWindowRateLimiter):
    """Reports every limit as untouched, as a read taken before another worker's hit."""

    async def get_window_stats(self, item: RateLimitItem, *identifiers: Any) -> WindowStats:
        return WindowStats(reset_time=0.0, remaining=item.amount)


async def test_losing_a_race_for_a_devices_units_makes_the_messages_wait() -> None:
    storage = MemoryStorage()
    batch = [_prepared(uuid.uuid4(), per_minute=3) for _ in range(3)]
    other_worker = MovingWindowRateLimiter(storage)
    device = batch[0].checks[0]
    assert await other_worker.hit(device.item, *device.key, cost=2)
    admission = await admit(_StaleStats(storage), batch)
    assert admission.admitted == [] and len(admission.waits) == 3
