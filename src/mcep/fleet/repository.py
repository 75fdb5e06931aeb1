"""Queries over devices, and the bulk reads the allocator needs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.channels.base import Platform
from mcep.dispatch.caps import COUNTED_STATES
from mcep.dispatch.models import Message
from mcep.errors import NotFound
from mcep.fleet.allocator import DeviceSlot
from mcep.fleet.models import Device, DeviceStatus


async def get_device(
    session: AsyncSession, device_id: uuid.UUID, *, for_update: bool = False
) -> Device:
    stmt = select(Device).where(Device.id == device_id)
    device = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if device is None:
        raise NotFound("no such device")
    return device


async def list_devices(
    session: AsyncSession,
    *,
    platform: Platform | None,
    status: DeviceStatus | None,
    pool: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Device], int]:
    """One page of devices, by platform and address, with the total."""
    stmt = select(Device)
    if platform is not None:
        stmt = stmt.where(Device.platform == platform)
    if status is not None:
        stmt = stmt.where(Device.status == status)
    if pool is not None:
        stmt = stmt.where(Device.pool == pool)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(Device.platform, Device.address).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def device_slots(session: AsyncSession, *, since: datetime) -> list[DeviceSlot]:
    """Every active device with the messages it was given since ``since`` (two statements)."""
    devices = (
        await session.execute(
            select(Device.id, Device.platform, Device.daily_quota).where(
                Device.status == DeviceStatus.ACTIVE
            )
        )
    ).all()
    counts = await session.execute(
        select(Message.device_id, func.count())
        .where(
            Message.created_at >= since,
            Message.device_id.is_not(None),
            Message.state.in_(COUNTED_STATES),
        )
        .group_by(Message.device_id)
    )
    used = {device_id: n for device_id, n in counts}
    return [
        DeviceSlot(
            id=d.id, platform=d.platform, daily_quota=d.daily_quota, used_today=used.get(d.id, 0)
        )
        for d in devices
    ]


async def last_devices(
    session: AsyncSession, *, pm_id: uuid.UUID, prospect_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, Platform], uuid.UUID]:
    """The device that last messaged each prospect for this PM, per platform (stickiness)."""
    sticky: dict[tuple[uuid.UUID, Platform], uuid.UUID] = {}
    for chunk in _chunks(prospect_ids):
        rows = await session.execute(
            select(Message.prospect_id, Message.channel, Message.device_id)
            .where(
                Message.pm_id == pm_id,
                Message.prospect_id.in_(chunk),
                Message.device_id.is_not(None),
            )
            .order_by(Message.created_at)
        )
        for prospect_id, channel, device_id in rows:
            if device_id is not None:
                sticky[(prospect_id, Platform(channel.value))] = device_id
    return sticky


def _chunks(ids: Sequence[uuid.UUID], size: int = 5000) -> list[Sequence[uuid.UUID]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


async def address_taken(session: AsyncSession, platform: Platform, address: str) -> bool:
    stmt = select(Device.id).where(Device.platform == platform, Device.address == address)
    return (await session.scalar(stmt.limit(1))) is not None
