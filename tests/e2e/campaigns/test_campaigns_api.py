"""Profiles, templates, campaigns, messages and devices over HTTP: validation that names the
field, launch with reported skips, dead letters and replay, and device tokens kept secret."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mcep.audit.models import AuditEntry
from mcep.campaigns.models import EngagementProfile
from mcep.dispatch.models import MessageState
from mcep.fleet import service as fleet_service
from mcep.fleet.models import Device
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns import builders

PR, TP, CP, M, DV = (
    "/api/v1/profiles",
    "/api/v1/templates",
    "/api/v1/campaigns",
    "/api/v1/messages",
    "/api/v1/devices",
)


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["message"] for e in response.json()["errors"]}


async def profile_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(EngagementProfile)) or 0


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"lead_threshold": 49}, "lead_threshold", "greater than or equal to 50"),
        ({"lead_threshold": 91}, "lead_threshold", "less than or equal to 90"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"quiet_start": "22:00"}, "quiet_end", "both a start and an end"),
        ({"cap_per_day": 5, "cap_per_week": 2}, "cap_per_week", "at least cap_per_day"),
        ({"channel_order": ["telegram", "telegram"]}, "channel_order", "must not repeat"),
        ({"channel_order": ["fax"]}, "channel_order.0", ""),
        (
            {
                "window_start": "09:00",
                "window_end": "17:00",
                "quiet_start": "08:00",
                "quiet_end": "18:00",
            },
            "quiet_start",
            "cover the whole send window",
        ),
    ],
)
async def test_bad_profiles_are_422_naming_the_field_and_create_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actors: dict[str, Actor],
    body: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    response = await client.post(PR, json={"name": "p", **body}, headers=actors["pm"].headers)
    problems = fields(response)
    assert field in problems and fragment in problems[field], problems
    assert await profile_count(runtime) == 0


async def test_profile_defaults_and_patch_keeps_the_range(
    client: httpx.AsyncClient, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    created = (await client.post(PR, json={"name": "default"}, headers=h)).json()
    assert created["lead_threshold"] == 70 and created["retry_delays"] == [60, 300, 900]
    assert created["window_start"] == "09:00:00" and created["cap_per_day"] == 1
    bad = await client.patch(f"{PR}/{created['id']}", json={"lead_threshold": 95}, headers=h)
    assert "lead_threshold" in fields(bad)
    ok = await client.patch(f"{PR}/{created['id']}", json={"lead_threshold": 85}, headers=h)
    assert ok.json()["lead_threshold"] == 85
    after = (await client.get(f"{PR}/{created['id']}", headers=h)).json()
    assert after["lead_threshold"] == 85


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"body": "Hi {{ frist_name }}"}, "body", "unknown variable 'frist_name'"),
        ({"body": "Hi {{ name "}, "body", "syntax error"),
        (
            {
                "body": "Hi",
                "whatsapp": {"name": "intro", "language": "en_US", "parameters": ["{{ x }}"]},
            },
            "whatsapp.parameters.0",
            "unknown variable 'x'",
        ),
        (
            {"body": "Hi", "whatsapp": {"name": "Bad Name", "language": "en_US"}},
            "whatsapp.name",
            "",
        ),
    ],
)
async def test_bad_templates_are_422(
    client: httpx.AsyncClient,
    actors: dict[str, Actor],
    body: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    response = await client.post(TP, json={"name": "t", **body}, headers=actors["pm"].headers)
    problems = fields(response)
    assert field in problems and fragment in problems[field], problems


async def _prospect(client: httpx.AsyncClient, actor: Actor, **extra: Any) -> str:
    body = {
        "name": "Ana Lima",
        "timezone": "Europe/Lisbon",
        "handles": {"telegram": str(uuid.uuid4().int % 10**9)},
        "consents": [{"channel": "telegram", "source": "form"}],
        **extra,
    }
    response = await client.post("/api/v1/prospects", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _campaign(
    client: httpx.AsyncClient, actor: Actor, prospects: list[str], body: str
) -> str:
    template = await client.post(
        TP, json={"name": uuid.uuid4().hex, "body": body}, headers=actor.headers
    )
    assert template.status_code == 201, template.text
    campaign = await client.post(
        CP,
        json={
            "name": "Autumn",
            "template_id": template.json()["id"],
            "audience": {"prospect_ids": prospects},
        },
        headers=actor.headers,
    )
    assert campaign.status_code == 201, campaign.text
    return str(campaign.json()["id"])


async def test_launch_over_http(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await builders.add_device(runtime)
    with_aum = await _prospect(client, pm, attributes={"aum": "1.2M"})
    without_aum = await _prospect(client, pm)
    no_consent = await _prospect(client, pm, consents=[])
    audience = [with_aum, without_aum, no_consent]

    broken = await _campaign(client, pm, audience, "AUM {{ attributes.aum }}")
    problems = fields(await client.post(f"{CP}/{broken}/launch", headers=pm.headers))
    assert "'attributes.aum' is undefined" in problems["variants.default.body"]
    assert without_aum in problems["variants.default.body"]
    draft = (await client.get(f"{CP}/{broken}", headers=pm.headers)).json()
    assert draft["status"] == "draft" and draft["launch_result"] is None

    campaign_id = await _campaign(client, pm, audience, "Hello {{ first_name }}")
    launched = await client.post(f"{CP}/{campaign_id}/launch", headers=pm.headers)
    assert launched.status_code == 200, launched.text
    result = launched.json()["launch_result"]
    assert (result["queued"], result["skip_reasons"]) == (2, {"no_consent": 1})
    assert result["skipped_recipients"] == [{"prospect_id": no_consent, "reason": "no_consent"}]
    assert launched.json()["status"] == "running"
    again = await client.post(f"{CP}/{campaign_id}/launch", headers=pm.headers)
    assert again.status_code == 409

    listed = (await client.get(M, params={"campaign_id": campaign_id}, headers=pm.headers)).json()
    assert listed["total"] == 2 and {m["state"] for m in listed["items"]} == {"queued"}
    one = listed["items"][0]["id"]
    detail = (await client.get(f"{M}/{one}", headers=pm.headers)).json()
    assert detail["body"] == "Hello Ana" and [e["kind"] for e in detail["events"]] == ["queued"]
    assert detail["attempt_history"] == []
    for params, total in [
        ({"state": "queued"}, 2),
        ({"state": "sent"}, 0),
        ({"channel": "whatsapp"}, 0),
        ({"prospect_id": with_aum}, 1),
    ]:
        page = (await client.get(M, params=params, headers=pm.headers)).json()
        assert page["total"] == total, params
    theirs = (await client.get(M, headers=actors["other_pm"].headers)).json()
    assert theirs["total"] == 0
    assert (await client.get(f"{M}/{one}", headers=actors["other_pm"].headers)).status_code == 404


async def test_dead_letters_and_replay(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    campaign_id = await builders.running_campaign(runtime, pm, recipients=3)
    dead_id = (await builders.message_ids(runtime, campaign_id))[0]
    await builders.set_state(runtime, campaign_id, MessageState.DEAD)
    dead = (await client.get(M, params={"state": "dead"}, headers=pm.headers)).json()
    assert dead["total"] == 3

    replayed = await client.post(f"{M}/{dead_id}/replay", headers=pm.headers)
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["state"], replayed.json()["failures"]) == ("queued", 0)
    assert (await client.post(f"{M}/{dead_id}/replay", headers=pm.headers)).status_code == 409
    detail = (await client.get(f"{M}/{dead_id}", headers=pm.headers)).json()
    assert [e["kind"] for e in detail["events"]] == ["queued", "replayed"]
    async with runtime.sessions() as session:
        audited = await session.scalar(
            select(func.count()).where(
                AuditEntry.action == "message.replayed", AuditEntry.object_id == str(dead_id)
            )
        )
    assert audited == 1
    remaining = (await client.get(M, params={"state": "dead"}, headers=pm.headers)).json()
    assert remaining["total"] == 2


async def test_pause_resume_cancel(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    campaign_id = await builders.running_campaign(runtime, pm, recipients=4)
    url = f"{CP}/{campaign_id}"
    assert (await client.post(url + "/pause", headers=pm.headers)).json()["status"] == "paused"
    assert (await client.post(url + "/pause", headers=pm.headers)).status_code == 409
    assert (await client.post(url + "/resume", headers=pm.headers)).json()["status"] == "running"
    cancelled = await client.post(url + "/cancel", headers=pm.headers)
    assert cancelled.json()["status"] == "cancelled"
    states = (
        await client.get(M, params={"campaign_id": str(campaign_id)}, headers=pm.headers)
    ).json()
    assert {m["state"] for m in states["items"]} == {"cancelled"}
    assert (await client.post(url + "/resume", headers=pm.headers)).status_code == 409


async def test_in_use_templates_and_profiles_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    profile = await builders.add_profile(runtime, pm)
    template = await builders.add_template(runtime, pm)
    await builders.add_campaign(
        runtime, pm, prospect_ids=[uuid.uuid4()], template_id=template, profile_id=profile
    )
    assert (await client.delete(f"{TP}/{template}", headers=pm.headers)).status_code == 409
    assert (await client.delete(f"{PR}/{profile}", headers=pm.headers)).status_code == 409


async def test_campaign_input_errors_name_the_field(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    template = str(await builders.add_template(runtime, pm))
    foreign = str(await builders.add_template(runtime, actors["other_pm"]))
    audience = {"prospect_ids": [str(uuid.uuid4())]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"template_id": foreign, "audience": audience}, "template_id"),
        ({"audience": audience}, "template_id"),
        ({"template_id": template, "audience": {}}, "audience"),
        (
            {"template_id": template, "audience": audience, "profile_id": str(uuid.uuid4())},
            "profile_id",
        ),
        (
            {"variants": [{"name": "a", "template_id": foreign}], "audience": audience},
            "variants.0.template_id",
        ),
        (
            {
                "variants": [{"name": "a", "template_id": template, "weight": 0}],
                "audience": audience,
            },
            "variants",
        ),
        (
            {"template_id": template, "audience": audience, "start_at": "2026-12-01T10:00:00"},
            "start_at",
        ),
    ]
    for body, field in cases:
        response = await client.post(CP, json={"name": "x", **body}, headers=pm.headers)
        assert field in fields(response), (body, response.text)


async def test_devices_are_admin_only_and_tokens_never_leave(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    admin = actors["admin"].headers
    secret = "7777:very-secret-bot-token"
    body = {
        "platform": "telegram",
        "address": "mcep_bot",
        "base_url": "http://127.0.0.1:8081/",
        "token": secret,
        "daily_quota": 500,
    }
    created = await client.post(DV, json=body, headers=admin)
    assert created.status_code == 201 and secret not in created.text
    assert (await client.post(DV, json=body, headers=admin)).status_code == 409
    assert (await client.post(DV, json=body, headers=actors["pm"].headers)).status_code == 403
    listed = await client.get(DV, params={"platform": "telegram"}, headers=admin)
    assert listed.json()["total"] == 1 and secret not in listed.text
    device_id = created.json()["id"]
    cleared = await client.patch(f"{DV}/{device_id}", json={"daily_quota": None}, headers=admin)
    assert cleared.json()["daily_quota"] is None
    async with runtime.sessions() as session:
        device = await session.get(Device, uuid.UUID(device_id))
    assert device is not None and secret.encode() not in device.token_enc
    ref = fleet_service.device_ref(device, runtime.keyring)
    assert ref.token == secret and ref.address == "mcep_bot" and secret not in repr(ref)
