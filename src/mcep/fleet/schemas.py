"""Input and output shapes of the devices API. The provider token goes in, never out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, StringConstraints

from mcep.api.schemas import StrictModel
from mcep.channels.base import Platform
from mcep.fleet.models import DeviceStatus

Pool = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
OptionKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class DeviceCreate(StrictModel):
    platform: Platform
    address: str = Field(min_length=1, max_length=200)
    base_url: AnyHttpUrl
    token: SecretStr = Field(min_length=1, max_length=4096)
    pool: Pool = "default"
    options: dict[OptionKey, str] = Field(default_factory=dict, max_length=50)
    status: DeviceStatus = DeviceStatus.ACTIVE
    daily_quota: int | None = Field(default=None, ge=1, le=10_000_000)
    rate_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class DeviceUpdate(StrictModel):
    base_url: AnyHttpUrl | None = None
    token: SecretStr | None = Field(default=None, min_length=1, max_length=4096)
    pool: Pool | None = None
    options: dict[OptionKey, str] | None = Field(default=None, max_length=50)
    status: DeviceStatus | None = None
    daily_quota: int | None = Field(default=None, ge=1, le=10_000_000)
    rate_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class DeviceOut(BaseModel):
    id: uuid.UUID
    platform: Platform
    address: str
    pool: str
    base_url: str
    options: dict[str, str]
    status: DeviceStatus
    daily_quota: int | None
    rate_per_minute: int | None
    created_at: datetime
    updated_at: datetime
