"""Launch on SQLite and PostgreSQL: every consented recipient queued exactly once, in their own
send window, with skipped recipients reported with reasons, in a handful of statements."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select, update

from mcep.audit.chain import merkle_root
from mcep.audit.models import AuditEntry
from mcep.auth.models import Role
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.campaigns.variants import WeightedVariant, assign_variant
from mcep.channels.base import Platform
from mcep.contacts.models import Channel, Prospect
from mcep.dispatch.content import open_content
from mcep.dispatch.models import Event, Message, MessageState
from mcep.errors import Conflict, ValidationFailed
from mcep.runtime import Runtime
from tests.conftest import Actor, make_actor
from tests.integration.campaigns.builders import (
    add_campaign,
    add_device,
    add_profile,
    add_prospects,
    add_template,
    launch_campaign,
)


async def _messages(runtime: Runtime, campaign_id: uuid.UUID) -> list[Message]:
    async with runtime.sessions() as session:
        stmt = select(Message).where(Message.campaign_id == campaign_id)
        return list((await session.scalars(stmt)).all())


def _count_statements(runtime: Runtime) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    return seen, record


async def test_thousand_recipients_each_queued_once_and_skips_reported(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm, other = actors["pm"], actors["other_pm"]
    await add_device(runtime)
    await add_device(runtime)
    consented = await add_prospects(runtime, pm, 880)
    no_consent = await add_prospects(runtime, pm, 40, consents=())
    opted_out = await add_prospects(runtime, pm, 40)
    capped = await add_prospects(runtime, pm, 20)
    foreign = await add_prospects(runtime, other, 20)
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Prospect).where(Prospect.id.in_(opted_out)).values(opted_out=True)
        )
    earlier = await add_campaign(runtime, pm, prospect_ids=capped)
    await launch_campaign(runtime, pm, earlier)  # today's one message for these 20

    audience = consented + no_consent + opted_out + capped + foreign
    campaign_id = await add_campaign(runtime, pm, prospect_ids=audience)
    statements, listener = _count_statements(runtime)
    try:
        campaign = await launch_campaign(runtime, pm, campaign_id)
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", listener)

    result = campaign.launch_result
    assert (result["audience"], result["queued"], result["skipped"]) == (1000, 880, 120)
    assert result["skip_reasons"] == {
        "no_consent": 40,
        "opted_out": 40,
        "frequency_cap_day": 20,
        "not_found": 20,
    }
    skipped = {uuid.UUID(s["prospect_id"]): s["reason"] for s in result["skipped_recipients"]}
    assert {p for p, r in skipped.items() if r == "opted_out"} == set(opted_out)
    assert {p for p, r in skipped.items() if r == "not_found"} == set(foreign)

    messages = await _messages(runtime, campaign_id)
    assert sorted(m.prospect_id for m in messages) == sorted(consented)  # each exactly once
    assert {m.state for m in messages} == {MessageState.QUEUED}
    assert {m.channel for m in messages} == {Channel.TELEGRAM}
    assert campaign.status is CampaignStatus.RUNNING

    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO MESSAGES")]
    # One executemany on SQLite; on PostgreSQL a COPY on the raw connection (not seen here).
    assert len(inserts) <= 1, "all message rows go in one set-based statement"
    assert len(statements) < 30, f"launch used {len(statements)} statements: N+1 somewhere?"

    async with runtime.sessions() as session:
        kinds = dict(
            (kind, n)
            for kind, n in await session.execute(
                select(Event.kind, func.count())
                .where(Event.campaign_id == campaign_id)
                .group_by(Event.kind)
            )
        )
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "campaign.launched", AuditEntry.object_id == str(campaign_id)
            )
        )
    assert kinds == {"queued": 880, "skipped": 100}  # not_found ones aren't this PM's to log
    assert entry is not None
    expected_root = merkle_root(sorted(m.id.bytes for m in messages))
    assert entry.details["messages_merkle_root"] == expected_root == result["merkle_root"]


async def test_each_recipient_is_scheduled_inside_their_own_window(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    tokyo = await add_prospects(runtime, pm, 3, timezone="Asia/Tokyo")
    new_york = await add_prospects(runtime, pm, 3, timezone="America/New_York")
    profile = await add_profile(
        runtime,
        pm,
        window_start=time(9),
        window_end=time(17),
        quiet_start=time(12),
        quiet_end=time(13),
        channel_order=["telegram"],
    )
    campaign_id = await add_campaign(runtime, pm, prospect_ids=tokyo + new_york, profile_id=profile)
    now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 08:30 Tue in Tokyo, 18:30 Mon in New York
    await launch_campaign(runtime, pm, campaign_id, now=now)
    by_prospect = {m.prospect_id: m.next_attempt_at for m in await _messages(runtime, campaign_id)}
    for pid in tokyo:
        assert by_prospect[pid] == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    for pid in new_york:
        assert by_prospect[pid] == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    for pid, zone in [(tokyo[0], "Asia/Tokyo"), (new_york[0], "America/New_York")]:
        local = by_prospect[pid].astimezone(ZoneInfo(zone)).time()
        assert time(9) <= local < time(17) and not time(12) <= local < time(13)


async def test_start_at_in_the_future_schedules_the_campaign(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 2, timezone="UTC")
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    campaign_id = await add_campaign(
        runtime, pm, prospect_ids=prospects, start_at=start.isoformat()
    )
    campaign = await launch_campaign(
        runtime, pm, campaign_id, now=datetime(2026, 11, 26, tzinfo=UTC)
    )
    assert campaign.status is CampaignStatus.SCHEDULED
    assert {m.next_attempt_at for m in await _messages(runtime, campaign_id)} == {start}


async def test_a_missing_variable_fails_the_launch_and_queues_nothing(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 5)
    template = await add_template(runtime, pm, body="Your AUM: {{ attributes.aum }}")
    campaign_id = await add_campaign(runtime, pm, prospect_ids=prospects, template_id=template)
    with pytest.raises(ValidationFailed) as info:
        await launch_campaign(runtime, pm, campaign_id)
    problem = info.value.problems[0]
    assert problem.field == "variants.default.body" and "'attributes.aum'" in problem.message
    assert await _messages(runtime, campaign_id) == []
    async with runtime.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status is CampaignStatus.DRAFT


async def test_bodies_are_sealed_under_each_recipients_key(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 2, attributes={"city": "Lisbon"})
    template = await add_template(runtime, pm, body="Olá {{ first_name }} in {{ attributes.city }}")
    campaign_id = await add_campaign(runtime, pm, prospect_ids=prospects, template_id=template)
    await launch_campaign(runtime, pm, campaign_id)
    for message in await _messages(runtime, campaign_id):
        assert message.content_enc is not None and b"Lisbon" not in message.content_enc
        async with runtime.sessions() as session:
            prospect = await session.get(Prospect, message.prospect_id)
        assert prospect is not None and prospect.wrapped_key is not None
        key = runtime.keyring.unwrap(prospect.wrapped_key)
        content = open_content(message.content_enc, key=key, message_id=message.id)
        assert content.body == "Olá Client in Lisbon"


async def test_variants_follow_the_deterministic_assignment(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 200)
    a, b = await add_template(runtime, pm, body="A"), await add_template(runtime, pm, body="B")
    variants = [
        {"name": "a", "template_id": str(a), "weight": 1},
        {"name": "b", "template_id": str(b), "weight": 3},
    ]
    campaign_id = await add_campaign(runtime, pm, prospect_ids=prospects, variants=variants)
    campaign = await launch_campaign(runtime, pm, campaign_id)
    arms = [WeightedVariant("a", 1), WeightedVariant("b", 3)]
    for m in await _messages(runtime, campaign_id):
        assert m.variant == assign_variant(campaign_id, m.prospect_id, arms)
    assert 20 < campaign.launch_result["by_variant"]["a"] < 80


async def test_channel_follows_profile_order_and_devices_are_sticky(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    both = await add_prospects(runtime, pm, 6, phone=True, consents=("whatsapp", "telegram"))
    profile = await add_profile(
        runtime, pm, channel_order=["whatsapp", "telegram"], cap_per_day=5, cap_per_week=5
    )
    telegram_devices = {await add_device(runtime), await add_device(runtime)}
    first = await add_campaign(runtime, pm, prospect_ids=both, profile_id=profile)
    await launch_campaign(runtime, pm, first)  # no WhatsApp sender yet: falls back to Telegram
    first_messages = await _messages(runtime, first)
    assert {m.channel for m in first_messages} == {Channel.TELEGRAM}
    assert Counter(m.device_id for m in first_messages) == dict.fromkeys(telegram_devices, 3)

    await add_device(runtime, Platform.TELEGRAM)  # a fresh, idle device
    second = await add_campaign(runtime, pm, prospect_ids=both, profile_id=profile)
    await launch_campaign(runtime, pm, second)
    before = {m.prospect_id: m.device_id for m in first_messages}
    assert {m.prospect_id: m.device_id for m in await _messages(runtime, second)} == before

    whatsapp = await add_device(runtime, Platform.WHATSAPP)
    third = await add_campaign(runtime, pm, prospect_ids=both, profile_id=profile)
    await launch_campaign(runtime, pm, third)
    assert {(m.channel, m.device_id) for m in await _messages(runtime, third)} == {
        (Channel.WHATSAPP, whatsapp)
    }


async def test_no_sender_device_is_a_reported_skip(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    prospects = await add_prospects(runtime, pm, 3)
    await add_device(runtime, Platform.TELEGRAM, status="quarantined")
    await add_device(runtime, Platform.TELEGRAM, daily_quota=1)
    campaign = await launch_campaign(
        runtime, pm, await add_campaign(runtime, pm, prospect_ids=prospects)
    )
    assert campaign.launch_result["queued"] == 1
    assert campaign.launch_result["skip_reasons"] == {"no_device": 2}


async def test_filter_audience_is_scoped_to_the_pm(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    mine = await add_prospects(runtime, pm, 4, attributes={"segment": "vip"})
    await add_prospects(runtime, pm, 3, attributes={"segment": "retail"})
    await add_prospects(runtime, actors["other_pm"], 5, attributes={"segment": "vip"})
    audience = {"filter": {"attributes": {"segment": "vip"}}}
    campaign = await launch_campaign(
        runtime, pm, await add_campaign(runtime, pm, audience=audience)
    )
    assert campaign.launch_result["queued"] == 4
    assert sorted(m.prospect_id for m in await _messages(runtime, campaign.id)) == sorted(mine)


async def test_launch_is_once_only_and_other_pms_cannot(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    campaign_id = await add_campaign(runtime, pm, prospect_ids=await add_prospects(runtime, pm, 1))
    await launch_campaign(runtime, pm, campaign_id)
    with pytest.raises(Conflict, match="only a draft"):
        await launch_campaign(runtime, pm, campaign_id)
    intruder = await make_actor(runtime, Role.PM)
    from mcep.errors import NotFound

    with pytest.raises(NotFound):
        await launch_campaign(runtime, intruder, campaign_id)
