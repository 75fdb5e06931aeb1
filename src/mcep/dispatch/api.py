"""Message routes: the outbox with filters (``state=dead`` is the dead-letter listing), one
message with its attempts and events, and replay of a dead message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.contacts.models import Channel
from mcep.dispatch import repository, service
from mcep.dispatch.models import MessageState
from mcep.dispatch.schemas import MessageDetail, MessageOut

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])


def message_filter(
    campaign_id: uuid.UUID | None = None,
    state: MessageState | None = None,
    prospect_id: uuid.UUID | None = None,
    channel: Channel | None = None,
) -> repository.MessageFilter:
    return repository.MessageFilter(
        campaign_id=campaign_id, state=state, prospect_id=prospect_id, channel=channel
    )


@router.get("", response_model=Page[MessageOut])
async def list_messages(
    principal: CurrentPrincipal,
    session: Session,
    page: Annotated[PageParams, Depends()],
    filters: Annotated[repository.MessageFilter, Depends(message_filter)],
) -> Page[MessageOut]:
    principal.require(Permission.OWNED_READ)
    rows, total = await repository.list_messages(
        session, principal, filters, limit=page.limit, offset=page.offset
    )
    items = [MessageOut.model_validate(m, from_attributes=True) for m in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{message_id}", response_model=MessageDetail)
async def get_message(
    message_id: uuid.UUID, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> MessageDetail:
    return await service.detail(session, principal, message_id, keyring=runtime.keyring)


@router.post("/{message_id}/replay", response_model=MessageOut)
async def replay_message(
    message_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> MessageOut:
    """Put a dead letter back in line."""
    message = await service.replay(session, principal, message_id, now=datetime.now(UTC))
    return MessageOut.model_validate(message, from_attributes=True)
