"""Prospect rules: validation, encryption of personal fields, consent, opt-out, erasure.

Flushes; never commits: the request or CLI command that calls it owns the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.principal import Permission, Principal
from mcep.contacts import repository
from mcep.contacts.crypto import DataKey, Keyring
from mcep.contacts.identity import (
    PHONE_CHANNELS,
    normalize_handle,
    normalize_phone,
    validate_timezone,
)
from mcep.contacts.models import (
    Channel,
    ConsentEntry,
    Prospect,
    ProspectConsent,
    ProspectHandle,
    ProspectTag,
)
from mcep.contacts.schemas import (
    ConsentIn,
    ConsentOut,
    Handles,
    ProspectCreate,
    ProspectOut,
    ProspectUpdate,
)
from mcep.db.bulk import bulk_insert
from mcep.errors import Conflict, ValidationFailed


@dataclass
class PreparedProspect:
    """The rows that make up one new prospect, ready for a set-based insert."""

    prospect: dict[str, Any]
    handles: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)


def _resolve_handles(
    phone: str | None, handles: Handles, *, default_region: str | None
) -> dict[Channel, str]:
    """Validated handles; the phone number stands in for WhatsApp, Signal and iMessage."""
    resolved: dict[Channel, str] = {}
    for channel in Channel:
        raw = getattr(handles, channel.value)
        if raw:
            resolved[channel] = normalize_handle(
                channel, raw, field=f"handles.{channel.value}", default_region=default_region
            )
        elif phone and channel in PHONE_CHANNELS:
            resolved[channel] = phone
    return resolved


def _seal_handles(key: DataKey, handles: dict[Channel, str]) -> bytes:
    return key.seal("handles", json.dumps({c.value: h for c, h in handles.items()}))


def prepare(
    data: ProspectCreate,
    *,
    pm_id: uuid.UUID,
    keyring: Keyring,
    now: datetime,
    default_region: str | None = None,
) -> PreparedProspect:
    """Validate and encrypt one prospect (pure but for randomness); raises ValidationFailed."""
    phone = (
        normalize_phone(data.phone, field="phone", default_region=default_region)
        if data.phone
        else None
    )
    timezone = validate_timezone(data.timezone)
    handles = _resolve_handles(phone, data.handles, default_region=default_region)
    if not handles:
        raise ValidationFailed.of(
            "phone", "a phone number or at least one channel handle is required"
        )
    key, wrapped = keyring.new_data_key()
    pid = uuid.uuid4()
    prepared = PreparedProspect(
        prospect={
            "id": pid,
            "pm_id": pm_id,
            "wrapped_key": wrapped,
            "name_enc": key.seal("name", data.name),
            "phone_enc": key.seal("phone", phone) if phone else None,
            "handles_enc": _seal_handles(key, handles),
            "phone_hash": keyring.identity_hash("phone", phone) if phone else None,
            "timezone": timezone,
            "attributes": dict(data.attributes),
            "opted_out": False,
            "created_at": now,
            "updated_at": now,
        },
        handles=[
            {"prospect_id": pid, "channel": c, "handle_hash": keyring.identity_hash(c.value, h)}
            for c, h in handles.items()
        ],
        tags=[{"prospect_id": pid, "tag": t} for t in sorted(set(data.tags))],
    )
    for consent in _latest_consents(data.consents):
        row = {
            "prospect_id": pid,
            "channel": consent.channel,
            "status": consent.status,
            "source": consent.source,
            "at": consent.at or now,
        }
        prepared.consents.append(row)
        prepared.ledger.append({"id": uuid.uuid4(), **row})
    return prepared


def _latest_consents(consents: Sequence[ConsentIn]) -> list[ConsentIn]:
    latest: dict[Channel, ConsentIn] = {}
    for consent in consents:
        latest[consent.channel] = consent
    return list(latest.values())


async def insert_prepared(session: AsyncSession, batch: Sequence[PreparedProspect]) -> None:
    """Insert many prepared prospects with one statement per table."""
    # COPY on PostgreSQL, executemany elsewhere: the rows are complete, and this is a hot path.
    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (Prospect.__table__, [p.prospect for p in batch]),
        (ProspectHandle.__table__, [r for p in batch for r in p.handles]),
        (ProspectTag.__table__, [r for p in batch for r in p.tags]),
        (ProspectConsent.__table__, [r for p in batch for r in p.consents]),
        (ConsentEntry.__table__, [r for p in batch for r in p.ledger]),
    ]
    for table, rows in tables:
        await bulk_insert(session, table, rows)


async def create(
    session: AsyncSession,
    principal: Principal,
    data: ProspectCreate,
    *,
    keyring: Keyring,
    default_region: str | None,
) -> Prospect:
    principal.require(Permission.OWNED_WRITE)
    pm_id = principal.owner_pm_id()
    prepared = prepare(
        data, pm_id=pm_id, keyring=keyring, now=datetime.now(UTC), default_region=default_region
    )
    phone_hash = prepared.prospect["phone_hash"]
    if phone_hash and await repository.phone_taken(session, pm_id, phone_hash):
        raise Conflict("this PM already has a prospect with this phone number")
    await insert_prepared(session, [prepared])
    pid: uuid.UUID = prepared.prospect["id"]
    await audit.append(
        session,
        actor=principal.actor,
        action="prospect.created",
        object_type="prospect",
        object_id=str(pid),
        details={
            "pm_id": str(pm_id),
            "channels": sorted(h["channel"].value for h in prepared.handles),
        },
    )
    return await repository.get_prospect(session, principal, pid)


async def update(
    session: AsyncSession,
    principal: Principal,
    prospect_id: uuid.UUID,
    data: ProspectUpdate,
    *,
    keyring: Keyring,
    default_region: str | None,
) -> Prospect:
    principal.require(Permission.OWNED_WRITE)
    prospect = await repository.get_prospect(session, principal, prospect_id, for_update=True)
    if prospect.wrapped_key is None:
        raise Conflict("this prospect was erased and can no longer be changed")
    key = keyring.unwrap(prospect.wrapped_key)
    changed = sorted(data.model_fields_set)
    if data.name is not None:
        prospect.name_enc = key.seal("name", data.name)
    if data.timezone is not None:
        prospect.timezone = validate_timezone(data.timezone)
    if data.attributes is not None:
        prospect.attributes = dict(data.attributes)
    if data.tags is not None:
        prospect.tags = [ProspectTag(tag=t) for t in sorted(set(data.tags))]
    if data.phone is not None or data.handles is not None:
        await _update_identity(
            session, prospect, key, data, keyring=keyring, default_region=default_region
        )
    prospect.updated_at = datetime.now(UTC)
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action="prospect.updated",
        object_type="prospect",
        object_id=str(prospect.id),
        details={"fields": changed},
    )
    return prospect


async def _update_identity(
    session: AsyncSession,
    prospect: Prospect,
    key: DataKey,
    data: ProspectUpdate,
    *,
    keyring: Keyring,
    default_region: str | None,
) -> None:
    current = decrypt_identity(prospect, keyring)
    phone = current.phone
    if data.phone is not None:
        phone = normalize_phone(data.phone, field="phone", default_region=default_region)
        phone_hash = keyring.identity_hash("phone", phone)
        if await repository.phone_taken(session, prospect.pm_id, phone_hash, excluding=prospect.id):
            raise Conflict("this PM already has a prospect with this phone number")
        prospect.phone_enc, prospect.phone_hash = key.seal("phone", phone), phone_hash
    handles = _resolve_handles(phone, data.handles or Handles(), default_region=default_region)
    if data.handles is None:
        handles = {
            **current.handles,
            **{c: h for c, h in handles.items() if c not in current.handles},
        }
    prospect.handles_enc = _seal_handles(key, handles)
    await session.execute(delete(ProspectHandle).where(ProspectHandle.prospect_id == prospect.id))
    prospect.handles = [
        ProspectHandle(channel=c, handle_hash=keyring.identity_hash(c.value, h))
        for c, h in handles.items()
    ]


async def record_consent(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID, consent: ConsentIn
) -> Prospect:
    """Append to the consent ledger and move the current consent for that channel."""
    principal.require(Permission.OWNED_WRITE)
    prospect = await repository.get_prospect(session, principal, prospect_id, for_update=True)
    if prospect.erased_at is not None:
        raise Conflict("this prospect was erased")
    at = consent.at or datetime.now(UTC)
    session.add(
        ConsentEntry(
            prospect_id=prospect.id,
            channel=consent.channel,
            status=consent.status,
            source=consent.source,
            at=at,
        )
    )
    current = next((c for c in prospect.consents if c.channel == consent.channel), None)
    if current is None:
        prospect.consents.append(
            ProspectConsent(
                channel=consent.channel, status=consent.status, source=consent.source, at=at
            )
        )
    elif current.at <= at:
        current.status, current.source, current.at = consent.status, consent.source, at
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action=f"consent.{consent.status.value}",
        object_type="prospect",
        object_id=str(prospect.id),
        details={"channel": consent.channel.value, "source": consent.source},
    )
    return prospect


async def opt_out(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID, *, source: str
) -> Prospect:
    """The global opt-out: no channel may reach this prospect again."""
    principal.require(Permission.OWNED_WRITE)
    prospect = await repository.get_prospect(session, principal, prospect_id, for_update=True)
    if not prospect.opted_out:
        prospect.opted_out, prospect.opted_out_at = True, datetime.now(UTC)
        await session.flush()
        await audit.append(
            session,
            actor=principal.actor,
            action="prospect.opted_out",
            object_type="prospect",
            object_id=str(prospect.id),
            details={"source": source},
        )
    return prospect


async def erase(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID, *, keyring: Keyring
) -> Prospect:
    """GDPR/CCPA erasure by crypto-shredding: the data key is destroyed with every sealed field.

    Kept: keyed hashes of the phone and handles (so compliance can prove what was sent to whom
    and suppress the number in future), the consent ledger's facts, the opt-out.
    """
    if not (principal.can(Permission.OWNED_WRITE) or principal.can(Permission.COMPLIANCE_WRITE)):
        principal.require(Permission.COMPLIANCE_WRITE)
    prospect = await repository.get_prospect(session, principal, prospect_id, for_update=True)
    if prospect.erased_at is None:
        now = datetime.now(UTC)
        prospect.wrapped_key = prospect.name_enc = prospect.phone_enc = prospect.handles_enc = None
        prospect.attributes = {}
        prospect.tags = []
        prospect.opted_out, prospect.opted_out_at = True, prospect.opted_out_at or now
        prospect.erased_at = prospect.updated_at = now
        await session.flush()
        await audit.append(
            session,
            actor=principal.actor,
            action="prospect.erased",
            object_type="prospect",
            object_id=str(prospect.id),
            details={"phone_hash": prospect.phone_hash},
        )
    return prospect


async def delete_prospect(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID
) -> None:
    principal.require(Permission.OWNED_WRITE)
    prospect = await repository.get_prospect(session, principal, prospect_id, for_update=True)
    await session.delete(prospect)
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action="prospect.deleted",
        object_type="prospect",
        object_id=str(prospect_id),
        details={"phone_hash": prospect.phone_hash},
    )


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None
    phone: str | None
    handles: dict[Channel, str]


def decrypt_identity(prospect: Prospect, keyring: Keyring) -> Identity:
    if prospect.wrapped_key is None:
        return Identity(None, None, {})
    key = keyring.unwrap(prospect.wrapped_key)
    handles_json = key.open("handles", prospect.handles_enc) if prospect.handles_enc else "{}"
    return Identity(
        name=key.open("name", prospect.name_enc) if prospect.name_enc else None,
        phone=key.open("phone", prospect.phone_enc) if prospect.phone_enc else None,
        handles={Channel(c): h for c, h in json.loads(handles_json).items()},
    )


def to_out(prospect: Prospect, keyring: Keyring) -> ProspectOut:
    identity = decrypt_identity(prospect, keyring)
    return ProspectOut(
        id=prospect.id,
        pm_id=prospect.pm_id,
        name=identity.name,
        phone=identity.phone,
        timezone=prospect.timezone,
        handles=identity.handles,
        consents={
            c.channel: ConsentOut(status=c.status, source=c.source, at=c.at)
            for c in prospect.consents
        },
        opted_out=prospect.opted_out,
        opted_out_at=prospect.opted_out_at,
        attributes=prospect.attributes,
        tags=[t.tag for t in prospect.tags],
        score=prospect.score,
        erased=prospect.erased_at is not None,
        created_at=prospect.created_at,
        updated_at=prospect.updated_at,
    )
