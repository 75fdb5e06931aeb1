"""Device routes: fleet admins register, inspect, change and remove sender accounts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.channels.base import Platform
from mcep.fleet import repository, service
from mcep.fleet.models import DeviceStatus
from mcep.fleet.schemas import DeviceCreate, DeviceOut, DeviceUpdate

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", response_model=Page[DeviceOut])
async def list_devices(
    principal: CurrentPrincipal,
    session: Session,
    page: Annotated[PageParams, Depends()],
    platform: Platform | None = None,
    status: DeviceStatus | None = None,
    pool: str | None = None,
) -> Page[DeviceOut]:
    principal.require(Permission.DEVICES_MANAGE)
    rows, total = await repository.list_devices(
        session, platform=platform, status=status, pool=pool, limit=page.limit, offset=page.offset
    )
    items = [DeviceOut.model_validate(d, from_attributes=True) for d in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
async def create_device(
    body: DeviceCreate, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> DeviceOut:
    device = await service.create(session, principal, body, keyring=runtime.keyring)
    return DeviceOut.model_validate(device, from_attributes=True)


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(
    device_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> DeviceOut:
    principal.require(Permission.DEVICES_MANAGE)
    device = await repository.get_device(session, device_id)
    return DeviceOut.model_validate(device, from_attributes=True)


@router.patch("/{device_id}", response_model=DeviceOut)
async def update_device(
    device_id: uuid.UUID,
    body: DeviceUpdate,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
) -> DeviceOut:
    device = await service.update(session, principal, device_id, body, keyring=runtime.keyring)
    return DeviceOut.model_validate(device, from_attributes=True)


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(
    device_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> None:
    await service.delete(session, principal, device_id)
