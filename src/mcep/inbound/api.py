"""Provider webhook routes. Each request is verified on its raw bytes before anything parses
it: a bad signature or secret is refused (401/403) and changes nothing; a malformed body is a
400; a retried webhook is de-duplicated by provider event id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from mcep.api.deps import RuntimeDep, Session
from mcep.channels import imessage, telegram, whatsapp
from mcep.channels.base import Platform, ProviderEvent
from mcep.contacts.models import Channel
from mcep.errors import BadRequest, Forbidden, MCEPError, Unauthorized
from mcep.fleet.models import Device
from mcep.inbound import service
from mcep.runtime import Runtime

router = APIRouter(prefix="/api/v1/providers", tags=["provider webhooks"])


class NotConfigured(MCEPError):
    status_code = 503
    code = "not_configured"
    title = "Not configured"


def _verify_token(runtime: Runtime) -> str:
    token = runtime.settings.whatsapp_verify_token
    if token is None:
        raise NotConfigured("WhatsApp webhooks are not configured (MCEP_WHATSAPP_VERIFY_TOKEN)")
    return token.get_secret_value()


@router.get("/whatsapp/webhook", response_class=PlainTextResponse)
async def whatsapp_subscribe(request: Request, runtime: RuntimeDep) -> str:
    """Meta's subscription check: echo hub.challenge when hub.verify_token matches."""
    challenge = whatsapp.verify_subscription(dict(request.query_params), _verify_token(runtime))
    if challenge is None:
        raise Forbidden("the verify token does not match")
    return challenge


@router.post("/whatsapp/webhook")
async def whatsapp_webhook(
    request: Request,
    runtime: RuntimeDep,
    session: Session,
    signature: Annotated[str | None, Header(alias="X-Hub-Signature-256")] = None,
) -> dict[str, int]:
    secret = runtime.settings.whatsapp_app_secret
    if secret is None:
        raise NotConfigured("WhatsApp webhooks are not configured (MCEP_WHATSAPP_APP_SECRET)")
    raw = await request.body()
    if not signature:
        raise Unauthorized("the X-Hub-Signature-256 header is missing")
    if not whatsapp.verify_signature(secret.get_secret_value(), raw, signature):
        raise Forbidden("the X-Hub-Signature-256 signature does not match the body")
    try:
        events = whatsapp.parse_webhook(raw)
    except whatsapp.WebhookPayloadError as exc:
        raise BadRequest(f"not a WhatsApp webhook payload: {exc}") from exc
    return await _ingest(session, runtime, Channel.WHATSAPP, events)


async def _device(session: Session, platform: Platform, device_id: str) -> Device | None:
    try:
        key = uuid.UUID(device_id)
    except ValueError:
        return None
    return await session.scalar(select(Device).where(Device.id == key, Device.platform == platform))


@router.post("/telegram/{device_id}/webhook")
async def telegram_webhook(
    device_id: str,
    request: Request,
    runtime: RuntimeDep,
    session: Session,
    secret: Annotated[str | None, Header(alias=telegram.SECRET_TOKEN_HEADER)] = None,
) -> dict[str, int]:
    raw = await request.body()
    if not secret:
        raise Unauthorized(f"the {telegram.SECRET_TOKEN_HEADER} header is missing")
    expected = runtime.keyring.webhook_secret(Platform.TELEGRAM.value, device_id)
    device = await _device(session, Platform.TELEGRAM, device_id)
    if device is None or not telegram.verify_secret_token(expected, secret):
        raise Forbidden("the secret token does not match")
    try:
        events = telegram.parse_update(raw, device_address=device.address)
    except telegram.UpdatePayloadError as exc:
        raise BadRequest(f"not a Telegram update: {exc}") from exc
    return await _ingest(session, runtime, Channel.TELEGRAM, events)


@router.post("/imessage/{device_id}/{secret}/webhook")
async def imessage_webhook(
    device_id: str, secret: str, request: Request, runtime: RuntimeDep, session: Session
) -> dict[str, int]:
    """BlueBubbles signs nothing: the per-device secret in the URL is the credential."""
    raw = await request.body()
    expected = runtime.keyring.webhook_secret(Platform.IMESSAGE.value, device_id)
    device = await _device(session, Platform.IMESSAGE, device_id)
    if device is None or not imessage.verify_webhook_secret(expected, secret):
        raise Forbidden("unknown webhook address")
    try:
        events = imessage.parse_webhook(raw, device_address=device.address)
    except BadRequest:
        raise
    except ValueError as exc:
        raise BadRequest(f"not a BlueBubbles webhook payload: {exc}") from exc
    return await _ingest(session, runtime, Channel.IMESSAGE, events)


async def _ingest(
    session: Session, runtime: Runtime, channel: Channel, events: Sequence[ProviderEvent]
) -> dict[str, int]:
    addresses = {getattr(e, "device_address", "") for e in events} - {""}
    devices = {}
    if addresses:
        rows = await session.execute(
            select(Device.address, Device.id).where(
                Device.platform == Platform(channel.value), Device.address.in_(addresses)
            )
        )
        devices = {address: device_id for address, device_id in rows.all()}
    result = await service.ingest(
        session,
        events,
        channel=channel,
        keyring=runtime.keyring,
        now=datetime.now(UTC),
        devices=devices,
    )
    return {
        "received": result.received,
        "duplicates": result.duplicates,
        "statuses_applied": result.statuses_applied,
        "replies": result.replies,
        "opted_out": len(result.opted_out),
    }
