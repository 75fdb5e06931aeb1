"""Tables of the fleet domain: the sender accounts MCEP sends through.

A device's provider token is a secret: it is stored only sealed (envelope encryption under a
per-device data key wrapped by the master key, as prospects' fields are) and the API never
returns it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mcep.channels.base import Platform
from mcep.db.base import Base, TimestampMixin, str_enum, utcnow


class DeviceStatus(enum.StrEnum):
    ACTIVE = "active"
    DEGRADED = "degraded"
    QUARANTINED = "quarantined"
    OFFLINE = "offline"


class Device(TimestampMixin, Base):
    """One sender account: a WhatsApp number, a Telegram bot, a Signal number, an iMessage Mac."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("platform", "address"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    platform: Mapped[Platform] = mapped_column(str_enum(Platform), index=True)
    address: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(64), default="default")
    base_url: Mapped[str] = mapped_column(String(500))
    token_key: Mapped[bytes] = mapped_column(LargeBinary)
    token_enc: Mapped[bytes] = mapped_column(LargeBinary)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[DeviceStatus] = mapped_column(
        str_enum(DeviceStatus), default=DeviceStatus.ACTIVE
    )
    daily_quota: Mapped[int | None]
    rate_per_minute: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
