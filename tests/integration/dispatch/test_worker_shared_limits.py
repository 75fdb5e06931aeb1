"""Workers share rate limits through Redis (``MCEP_REDIS_URL``), on SQLite and PostgreSQL: two
dispatchers, each with its own connection to the buckets, send no more through one device
than its limit allows between them."""

from __future__ import annotations

import asyncio
import os

import pytest
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from mcep.auth.models import Role
from mcep.channels.base import ChannelAdapter, Platform
from mcep.contacts.models import Channel
from mcep.dispatch.models import MessageState
from mcep.runtime import Runtime
from tests.conftest import make_actor
from tests.integration.dispatch import world
from tests.integration.dispatch.world import Clock

REDIS_URL = os.environ.get("MCEP_TEST_REDIS_URL")


def _redis_limiter() -> MovingWindowRateLimiter:
    assert REDIS_URL is not None
    storage = storage_from_string(f"async+{REDIS_URL}", implementation="redispy")
    assert isinstance(storage, Storage)
    return MovingWindowRateLimiter(storage)


@pytest.mark.skipif(not REDIS_URL, reason="needs MCEP_TEST_REDIS_URL")
async def test_two_workers_share_one_devices_limit_through_redis(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    await world.add_device(runtime, "http://127.0.0.1:9", Platform.WHATSAPP, rate_per_minute=3)
    prospects = await world.add_prospects(runtime, pm, [Channel.WHATSAPP], 6)
    campaign_id = await world.launch(runtime, pm, prospects, now=world.T0)
    provider = world.AcceptAll(Platform.WHATSAPP)
    adapters: dict[Platform, ChannelAdapter] = {Platform.WHATSAPP: provider}
    workers = [
        world.dispatcher(runtime, adapters, clock=Clock(), owner=f"worker-{n}", batch=3)
        for n in range(2)
    ]
    for worker in workers:
        worker.limiter = _redis_limiter()
    reports = await asyncio.gather(*(worker.run_batch() for worker in workers))

    assert sorted(r.claimed for r in reports) == [3, 3]
    assert len(provider.sent) == 3  # the device's 3 a minute, between both workers
    assert await world.states(runtime, campaign_id) == {
        MessageState.SENT: 3,
        MessageState.QUEUED: 3,
    }
