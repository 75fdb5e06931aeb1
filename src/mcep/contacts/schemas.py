"""Input and output shapes of the prospects API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from mcep.api.schemas import StrictModel
from mcep.contacts.models import Channel, ConsentStatus

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
AttributeValue = str | int | float | bool | None


class Handles(StrictModel):
    whatsapp: str | None = None
    telegram: str | None = None
    signal: str | None = None
    imessage: str | None = None


class ConsentIn(StrictModel):
    channel: Channel
    status: ConsentStatus = ConsentStatus.GRANTED
    source: str = Field(min_length=1, max_length=200)
    at: datetime | None = None


class OptOutIn(StrictModel):
    source: str = Field(min_length=1, max_length=200)


class ProspectCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    timezone: str
    handles: Handles = Field(default_factory=Handles)
    consents: list[ConsentIn] = Field(default_factory=list, max_length=8)
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class ProspectUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    timezone: str | None = None
    handles: Handles | None = None
    attributes: dict[AttributeKey, AttributeValue] | None = Field(default=None, max_length=100)
    tags: list[Tag] | None = Field(default=None, max_length=50)


class ConsentOut(BaseModel):
    status: ConsentStatus
    source: str
    at: datetime


class ProspectOut(BaseModel):
    id: uuid.UUID
    pm_id: uuid.UUID
    name: str | None
    phone: str | None
    timezone: str
    handles: dict[Channel, str]
    consents: dict[Channel, ConsentOut]
    opted_out: bool
    opted_out_at: datetime | None
    attributes: dict[str, AttributeValue]
    tags: list[str]
    score: float | None
    erased: bool
    created_at: datetime
    updated_at: datetime


class ConsentEntryOut(BaseModel):
    channel: Channel
    status: ConsentStatus
    source: str
    at: datetime
