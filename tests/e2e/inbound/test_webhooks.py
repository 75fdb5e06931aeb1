"""Provider webhooks into MCEP: verified first, de-duplicated, forward-only, replies attached."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mcep.audit.models import AuditEntry
from mcep.auth.models import Role
from mcep.channels.base import InboundMessage as InboundEvent
from mcep.channels.base import Platform
from mcep.contacts.models import Channel, Prospect
from mcep.dispatch.models import Event, Message, MessageState
from mcep.inbound import service as inbound_service
from mcep.inbound.models import InboundMessage, ProviderEventSeen
from mcep.runtime import Runtime
from tests.conftest import WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN, make_actor
from tests.e2e.inbound.builders import PHONE, World, add_device, add_world

WA = "/api/v1/providers/whatsapp/webhook"
PHONE_NUMBER_ID = "106540352242922"


def signed(body: dict[str, Any], secret: str = WHATSAPP_APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json"}


def wa_payload(
    *, statuses: list[dict[str, Any]] = (), messages: list[dict[str, Any]] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001234", "phone_number_id": PHONE_NUMBER_ID},
    }
    if statuses:
        value["statuses"] = list(statuses)
    if messages:
        value["contacts"] = [{"profile": {"name": "Ana"}, "wa_id": PHONE[1:]}]
        value["messages"] = list(messages)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
    }


def status(wamid: str, state: str, ts: int = 1731705723) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": str(ts), "recipient_id": PHONE[1:]}


def text(message_id: str, body: str, sender: str = PHONE[1:]) -> dict[str, Any]:
    return {
        "from": sender,
        "id": message_id,
        "timestamp": "1731705800",
        "type": "text",
        "text": {"body": body},
    }


@pytest.fixture
async def world(runtime: Runtime) -> World:
    pm = await make_actor(runtime, Role.PM)
    device = await add_device(runtime, Platform.WHATSAPP, PHONE_NUMBER_ID)
    return await add_world(runtime, pm, device_id=device)


async def message_state(runtime: Runtime, message_id: uuid.UUID) -> MessageState:
    async with runtime.sessions() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message.state


async def count(runtime: Runtime, model: Any, *where: Any) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_subscription_check(client: httpx.AsyncClient) -> None:
    ok = await client.get(
        WA,
        params={
            "hub.mode": "subscribe",
            "hub.challenge": "1158201444",
            "hub.verify_token": WHATSAPP_VERIFY_TOKEN,
        },
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = await client.get(
        WA, params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"}
    )
    assert bad.status_code == 403


async def test_statuses_move_forward_only_and_replays_change_nothing(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    for state in ("delivered", "read"):
        raw, headers = signed(wa_payload(statuses=[status("wamid.ONE", state)]))
        assert (await client.post(WA, content=raw, headers=headers)).status_code == 200
    assert await message_state(runtime, world.message_id) is MessageState.READ
    late, headers = signed(wa_payload(statuses=[status("wamid.ONE", "delivered", ts=1731709999)]))
    answer = (await client.post(WA, content=late, headers=headers)).json()
    assert answer["statuses_applied"] == 0
    assert await message_state(runtime, world.message_id) is MessageState.READ
    again, headers = signed(wa_payload(statuses=[status("wamid.ONE", "read")]))
    assert (await client.post(WA, content=again, headers=headers)).json()["duplicates"] == 1
    kinds = await count(runtime, Event, Event.message_id == world.message_id)
    assert kinds == 2  # one delivered, one read


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda raw, h: (raw, {**h, "X-Hub-Signature-256": "sha256=" + "0" * 64}), 403),
        (lambda raw, h: (raw + b" ", h), 403),
        (lambda raw, h: (raw, {"content-type": "application/json"}), 401),
        (
            lambda raw, h: ((b"{broken", _sign(b"{broken"))),
            400,
        ),
    ],
)
async def test_bad_signature_or_body_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, world: World, mangle: Any, code: int
) -> None:
    raw, headers = signed(wa_payload(statuses=[status("wamid.ONE", "read")]))
    raw, headers = mangle(raw, headers)
    assert (await client.post(WA, content=raw, headers=headers)).status_code == code
    assert await message_state(runtime, world.message_id) is MessageState.SENT
    assert await count(runtime, ProviderEventSeen) == 0


def _sign(raw: bytes) -> dict[str, str]:
    digest = hmac.new(WHATSAPP_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json"}


async def test_reply_joins_the_conversation(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    raw, headers = signed(wa_payload(messages=[text("wamid.IN1", "Interested, call me")]))
    assert (await client.post(WA, content=raw, headers=headers)).json()["replies"] == 1
    async with runtime.sessions() as session:
        row = await session.scalar(select(InboundMessage))
        event = await session.scalar(select(Event).where(Event.kind == "replied"))
    assert row is not None and event is not None
    assert (row.prospect_id, row.pm_id, row.in_reply_to, row.device_id) == (
        world.prospect_id,
        world.pm.pm_id,
        world.message_id,
        world.device_id,
    )
    assert row.text_enc is not None and b"Interested" not in row.text_enc and not row.is_stop
    assert (event.campaign_id, event.variant, event.message_id) == (
        world.campaign_id,
        "A",
        world.message_id,
    )


async def test_reply_goes_to_the_pm_whose_device_it_answers(runtime: Runtime, world: World) -> None:
    other = await make_actor(runtime, Role.PM)
    other_device = await add_device(runtime, Platform.WHATSAPP, "999000111")
    theirs = await add_world(runtime, other, device_id=other_device, wamid="wamid.TWO")
    event = InboundEvent(
        event_id="wamid.IN2",
        sender=PHONE[1:],
        device_address="999000111",
        text="yes",
        at=datetime.now(UTC),
    )
    async with runtime.sessions() as session, session.begin():
        result = await inbound_service.ingest(
            session,
            [event],
            channel=Channel.WHATSAPP,
            keyring=runtime.keyring,
            now=datetime.now(UTC),
            devices={PHONE_NUMBER_ID: world.device_id, "999000111": other_device},
        )
    assert result.replies == 1
    async with runtime.sessions() as session:
        row = await session.scalar(select(InboundMessage))
    assert row is not None and (row.pm_id, row.in_reply_to) == (other.pm_id, theirs.message_id)


async def test_stop_on_signal_cancels_queued_whatsapp_and_opts_out(
    runtime: Runtime, world: World
) -> None:
    queued = await add_world(
        runtime, world.pm, device_id=world.device_id, state=MessageState.QUEUED, wamid=None
    )
    signal_device = await add_device(runtime, Platform.SIGNAL, "+15550009999")
    await add_world(
        runtime, world.pm, device_id=signal_device, channel=Channel.SIGNAL, wamid="1700000000000"
    )
    stop = InboundEvent(
        event_id="signal:+15550009999:+442079460958:message:1",
        sender=PHONE,
        device_address="+15550009999",
        text="STOP",
        at=datetime.now(UTC),
    )
    async with runtime.sessions() as session, session.begin():
        result = await inbound_service.ingest(
            session,
            [stop],
            channel=Channel.SIGNAL,
            keyring=runtime.keyring,
            now=datetime.now(UTC),
            devices={"+15550009999": signal_device},
        )
    assert result.opted_out == [world.prospect_id]
    assert await message_state(runtime, queued.message_id) is MessageState.CANCELLED
    assert (
        await message_state(runtime, world.message_id) is MessageState.SENT
    )  # already sent: untouched
    async with runtime.sessions() as session:
        prospect = await session.get(Prospect, world.prospect_id)
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "prospect.opted_out")
        )
    assert prospect is not None and prospect.opted_out and audit is not None
    assert await count(runtime, Event, Event.kind == "opted_out") == 1


async def test_telegram_webhook_needs_the_device_secret(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    device = await add_device(runtime, Platform.TELEGRAM, "123456")
    url = f"/api/v1/providers/telegram/{device}/webhook"
    update = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "date": 1731705800,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "A"},
            "text": "hello",
        },
    }
    secret = runtime.keyring.webhook_secret("telegram", str(device))
    wrong = await client.post(
        url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x" * 64}
    )
    missing = await client.post(url, json=update)
    assert (wrong.status_code, missing.status_code) == (403, 401)
    ok = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret})
    assert ok.status_code == 200 and ok.json()["received"] == 1
    other = await client.post(
        f"/api/v1/providers/telegram/{uuid.uuid4()}/webhook",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert other.status_code == 403


async def test_imessage_webhook_only_on_its_secret_url(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    device = await add_device(runtime, Platform.IMESSAGE, "mac-1")
    secret = runtime.keyring.webhook_secret("imessage", str(device))
    body = {
        "type": "new-message",
        "data": {
            "guid": "g1",
            "text": "hi",
            "isFromMe": False,
            "dateCreated": 1731705800000,
            "handle": {"address": PHONE},
        },
    }
    assert (
        await client.post(f"/api/v1/providers/imessage/{device}/{'0' * 64}/webhook", json=body)
    ).status_code == 403
    ok = await client.post(f"/api/v1/providers/imessage/{device}/{secret}/webhook", json=body)
    assert ok.status_code == 200, ok.text
