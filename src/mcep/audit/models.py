"""The append-only, hash-chained audit table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mcep.db.base import Base, utcnow


class AuditEntry(Base):
    """One audited action. ``hash`` = sha256(prev_hash || canonical JSON of the entry).

    ``prev_hash`` is unique, so two writers can never fork the chain: the second one to
    append after the same entry fails instead of branching. Database triggers reject every
    UPDATE and DELETE (see the foundation migration).
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
