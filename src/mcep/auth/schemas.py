"""Input and output shapes of the auth endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, EmailStr, Field

from mcep.api.schemas import StrictModel
from mcep.auth.models import Role


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshIn(StrictModel):
    refresh_token: str = Field(min_length=1)


class UserCreate(StrictModel):
    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    role: Role
    pm_name: str | None = Field(default=None, min_length=1, max_length=200)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    role: Role
    pm_id: uuid.UUID | None
    pm_name: str | None
    is_active: bool
    created_at: datetime


class ApiKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """The only answer that ever carries the secret."""

    key: str
