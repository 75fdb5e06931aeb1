"""Device rules: registration with a sealed token, changes, removal; all audited.

Flushes; never commits. Only admins (``devices:manage``) reach any of it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.principal import Permission, Principal
from mcep.channels.base import DeviceRef
from mcep.contacts.crypto import Keyring
from mcep.errors import Conflict
from mcep.fleet import repository
from mcep.fleet.models import Device
from mcep.fleet.schemas import DeviceCreate, DeviceUpdate

_TOKEN_FIELD = "device-token"


def seal_token(keyring: Keyring, token: str) -> tuple[bytes, bytes]:
    """A fresh data key (wrapped) and the token sealed under it."""
    key, wrapped = keyring.new_data_key()
    return wrapped, key.seal(_TOKEN_FIELD, token)


def device_ref(device: Device, keyring: Keyring) -> DeviceRef:
    """What a channel adapter needs to send through ``device``, token unsealed in memory."""
    token = keyring.unwrap(device.token_key).open(_TOKEN_FIELD, device.token_enc)
    return DeviceRef(
        id=str(device.id),
        platform=device.platform,
        address=device.address,
        base_url=device.base_url,
        token=token,
        options=dict(device.options),
    )


async def _audit(
    session: AsyncSession, principal: Principal, action: str, device: Device, **details: object
) -> None:
    await audit.append(
        session,
        actor=principal.actor,
        action=f"device.{action}",
        object_type="device",
        object_id=str(device.id),
        details={"platform": device.platform.value, "address": device.address, **details},
    )


async def create(
    session: AsyncSession, principal: Principal, data: DeviceCreate, *, keyring: Keyring
) -> Device:
    """Register a device; its token is sealed at once and never shown again."""
    principal.require(Permission.DEVICES_MANAGE)
    if await repository.address_taken(session, data.platform, data.address):
        raise Conflict(f"a {data.platform} device with address {data.address!r} already exists")
    token_key, token_enc = seal_token(keyring, data.token.get_secret_value())
    device = Device(
        platform=data.platform,
        address=data.address,
        pool=data.pool,
        base_url=str(data.base_url),
        token_key=token_key,
        token_enc=token_enc,
        options=dict(data.options),
        status=data.status,
        daily_quota=data.daily_quota,
        rate_per_minute=data.rate_per_minute,
    )
    session.add(device)
    await session.flush()
    await _audit(session, principal, "created", device, pool=device.pool)
    return device


async def update(
    session: AsyncSession,
    principal: Principal,
    device_id: uuid.UUID,
    data: DeviceUpdate,
    *,
    keyring: Keyring,
) -> Device:
    """Change a device; ``null`` for a quota or rate removes that limit."""
    principal.require(Permission.DEVICES_MANAGE)
    device = await repository.get_device(session, device_id, for_update=True)
    changed = sorted(data.model_fields_set)
    for name in ("pool", "options", "status"):
        value = getattr(data, name)
        if value is not None:
            setattr(device, name, value)
    for name in ("daily_quota", "rate_per_minute"):  # null clears the limit
        if name in data.model_fields_set:
            setattr(device, name, getattr(data, name))
    if data.base_url is not None:
        device.base_url = str(data.base_url)
    if data.token is not None:
        device.token_key, device.token_enc = seal_token(keyring, data.token.get_secret_value())
    await session.flush()
    await _audit(session, principal, "updated", device, fields=changed)
    return device


async def delete(session: AsyncSession, principal: Principal, device_id: uuid.UUID) -> None:
    """Remove a device; messages that named it keep going and get another device."""
    principal.require(Permission.DEVICES_MANAGE)
    device = await repository.get_device(session, device_id, for_update=True)
    await session.delete(device)
    await session.flush()
    await _audit(session, principal, "deleted", device)
