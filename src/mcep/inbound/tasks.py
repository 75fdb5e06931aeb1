"""Inbound work done by the worker role: Signal's event streams and provider webhook set-up.

Signal has no webhooks: signal-cli streams receipts and replies as server-sent events, so a
worker keeps one stream open per active Signal device and feeds each event through the same
ingestion as the webhook routes (de-duplicated by event id, so a reconnect that replays events
changes nothing). Telegram and BlueBubbles push to URLs we register with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from mcep.channels.base import DeviceRef, Platform, ProviderEvent
from mcep.channels.imessage import IMessageAdapter
from mcep.channels.signal import SignalAdapter
from mcep.channels.telegram import TelegramAdapter
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel
from mcep.fleet.models import Device, DeviceStatus
from mcep.fleet.service import device_ref
from mcep.inbound import service
from mcep.runtime import Runtime
from mcep.worker.base import WorkerContext

log = logging.getLogger(__name__)
REFRESH_SECONDS = 15.0
RECEIVING = (DeviceStatus.ACTIVE, DeviceStatus.DEGRADED)


def telegram_webhook_url(public_url: str, device_id: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/providers/telegram/{device_id}/webhook"


def imessage_webhook_url(public_url: str, device_id: str, keyring: Keyring) -> str:
    secret = keyring.webhook_secret(Platform.IMESSAGE.value, device_id)
    return f"{public_url.rstrip('/')}/api/v1/providers/imessage/{device_id}/{secret}/webhook"


async def _devices(runtime: Runtime, platform: Platform) -> list[DeviceRef]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(Device).where(Device.platform == platform, Device.status.in_(RECEIVING))
        )
        return [device_ref(d, runtime.keyring) for d in rows.all()]


async def register_webhooks(context: WorkerContext, public_url: str) -> dict[str, int]:
    """Point every Telegram bot and BlueBubbles server at this API (idempotent)."""
    runtime = context.runtime
    done = {"telegram": 0, "imessage": 0}
    telegram = context.adapters.get(Platform.TELEGRAM)
    if isinstance(telegram, TelegramAdapter):
        for device in await _devices(runtime, Platform.TELEGRAM):
            secret = runtime.keyring.webhook_secret(Platform.TELEGRAM.value, device.id)
            url = telegram_webhook_url(public_url, device.id)
            done["telegram"] += await telegram.set_webhook(device, url=url, secret_token=secret)
    imessage = context.adapters.get(Platform.IMESSAGE)
    if isinstance(imessage, IMessageAdapter):
        for device in await _devices(runtime, Platform.IMESSAGE):
            url = imessage_webhook_url(public_url, device.id, runtime.keyring)
            done["imessage"] += await imessage.register_webhook(device, url=url)
    return done


async def ingest_one(
    runtime: Runtime, channel: Channel, event: ProviderEvent, device_id: uuid.UUID, address: str
) -> None:
    """Apply one streamed event in its own transaction."""
    async with runtime.sessions() as session, session.begin():
        await service.ingest(
            session,
            [event],
            channel=channel,
            keyring=runtime.keyring,
            now=datetime.now(UTC),
            devices={address: device_id},
        )


class SignalReceiverJob:
    """Keeps one event stream open per receiving Signal device; follows the fleet's changes."""

    name = "signal-receiver"

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        adapter = context.adapters.get(Platform.SIGNAL)
        if not isinstance(adapter, SignalAdapter):
            log.info("no Signal adapter configured; the Signal receiver is idle")
            await stop.wait()
            return
        streams: dict[str, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                await self._follow(context, adapter, streams)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=REFRESH_SECONDS)
        finally:
            for task in streams.values():
                task.cancel()
            await asyncio.gather(*streams.values(), return_exceptions=True)

    async def _follow(
        self, context: WorkerContext, adapter: SignalAdapter, streams: dict[str, asyncio.Task[None]]
    ) -> None:
        try:
            devices = {d.id: d for d in await _devices(context.runtime, Platform.SIGNAL)}
        except Exception:
            log.exception("could not list Signal devices; keeping the current streams")
            return
        for device_id in set(streams) - set(devices):
            streams.pop(device_id).cancel()
        for device_id, device in devices.items():
            if device_id not in streams or streams[device_id].done():
                streams[device_id] = asyncio.create_task(
                    _consume(context.runtime, adapter, device), name=f"signal:{device.address}"
                )


async def _consume(runtime: Runtime, adapter: SignalAdapter, device: DeviceRef) -> None:
    device_id = uuid.UUID(device.id)
    async for event in adapter.events(device):
        try:
            await ingest_one(runtime, Channel.SIGNAL, event, device_id, device.address)
        except Exception:
            # The stream goes on; the daemon's replay on reconnect (Last-Event-ID) and our
            # de-duplication make a later delivery of the same event safe.
            log.exception("could not apply a Signal event for device %s", device.id)
