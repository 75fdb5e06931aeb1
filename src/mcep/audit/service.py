"""Appending to and verifying the audit chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit.chain import GENESIS_HASH, EntryFields, entry_hash
from mcep.audit.models import AuditEntry

# Any fixed 64-bit number: the advisory lock that serialises appends on PostgreSQL.
_APPEND_LOCK = 0x6D636570_61756474


async def append(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction; it commits or rolls back with the change."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    prev = await session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    prev_hash = prev or GENESIS_HASH
    at = at or datetime.now(UTC)
    fields = EntryFields(
        at=at,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=details or {},
    )
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=fields.details,
        prev_hash=prev_hash,
        hash=entry_hash(prev_hash, fields),
    )
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    broken_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


async def verify(session: AsyncSession, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain in order; report the first entry whose links or content don't hold."""
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.id > last_id)
                .order_by(AuditEntry.id)
                .limit(batch)
            )
        ).all()
        if not rows:
            return VerifyResult(checked=checked)
        for entry in rows:
            problem = _check(entry, prev_hash)
            if problem:
                return VerifyResult(checked=checked, broken_id=entry.id, reason=problem)
            prev_hash = entry.hash
            checked += 1
            last_id = entry.id
        session.expunge_all()


def _check(entry: AuditEntry, prev_hash: str) -> str:
    if entry.prev_hash != prev_hash:
        return "its prev_hash does not match the hash of the entry before it"
    fields = EntryFields(
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        details=entry.details,
    )
    if entry_hash(prev_hash, fields) != entry.hash:
        return "its content does not match its hash"
    return ""
