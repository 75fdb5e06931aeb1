"""Prospects over HTTP: validation that changes nothing, filters, consent, erasure."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mcep.audit.models import AuditEntry
from mcep.contacts.models import ConsentEntry, Prospect
from mcep.runtime import Runtime
from tests.conftest import Actor

P = "/api/v1/prospects"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Ana Lima",
        "phone": "+44 20 7946 0958",
        "timezone": "Europe/London",
        "consents": [{"channel": "whatsapp", "source": "signed form"}],
        "attributes": {"segment": "hnw", "aum": 1200000},
        "tags": ["vip", "london"],
    }
    base.update(overrides)
    return base


async def counts(runtime: Runtime) -> tuple[int, int, int]:
    async with runtime.sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Prospect)) or 0,
            await session.scalar(select(func.count()).select_from(ConsentEntry)) or 0,
            await session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


async def test_create_normalises_and_encrypts(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    response = await client.post(P, json=body(), headers=actors["pm"].headers)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["phone"] == "+442079460958"
    assert out["handles"] == {
        "whatsapp": "+442079460958",
        "signal": "+442079460958",
        "imessage": "+442079460958",
    }
    assert out["consents"]["whatsapp"]["status"] == "granted"
    async with runtime.sessions() as session:
        row = await session.scalar(select(Prospect))
    assert row is not None and row.name_enc is not None
    assert b"Ana" not in row.name_enc and b"442079460958" not in (row.phone_enc or b"")


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"phone": "+44 12"}, "phone", "not a valid phone number"),
        ({"phone": "hello"}, "phone", "not a phone number"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown field"),
        ({"handles": {"telegram": "not a chat"}}, "handles.telegram", "Telegram chat id"),
        ({"handles": {"fax": "123"}}, "handles.fax", "unknown field"),
        ({"consents": [{"channel": "pigeon", "source": "x"}]}, "consents.0.channel", ""),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actors: dict[str, Actor],
    overrides: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    before = await counts(runtime)
    response = await client.post(P, json=body(**overrides), headers=actors["pm"].headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"] == field and fragment in e["message"] for e in problem["errors"]), problem
    assert await counts(runtime) == before


async def test_bad_patch_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    created = (await client.post(P, json=body(), headers=actors["pm"].headers)).json()
    before = await counts(runtime)
    response = await client.patch(
        f"{P}/{created['id']}",
        json={"timezone": "Nowhere/City", "name": "X"},
        headers=actors["pm"].headers,
    )
    assert response.status_code == 422
    again = (await client.get(f"{P}/{created['id']}", headers=actors["pm"].headers)).json()
    assert again["name"] == "Ana Lima" and again["timezone"] == "Europe/London"
    assert await counts(runtime) == before


async def test_malformed_json_is_a_4xx(client: httpx.AsyncClient, actors: dict[str, Actor]) -> None:
    response = await client.post(
        P,
        content=b"{not json",
        headers={**actors["pm"].headers, "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500


async def test_duplicate_phone_for_the_same_pm_is_409(
    client: httpx.AsyncClient, actors: dict[str, Actor]
) -> None:
    assert (await client.post(P, json=body(), headers=actors["pm"].headers)).status_code == 201
    assert (await client.post(P, json=body(), headers=actors["pm"].headers)).status_code == 409
    assert (
        await client.post(P, json=body(), headers=actors["other_pm"].headers)
    ).status_code == 201


async def test_filters_and_page_shape(client: httpx.AsyncClient, actors: dict[str, Actor]) -> None:
    h = actors["pm"].headers
    await client.post(P, json=body(), headers=h)
    await client.post(
        P,
        json=body(
            phone="+1 212 555 0100",
            tags=["ny"],
            attributes={"segment": "retail"},
            timezone="America/New_York",
            consents=[],
        ),
        headers=h,
    )
    await client.post(
        P, json=body(phone=None, handles={"telegram": "123456"}, tags=[], consents=[]), headers=h
    )

    async def ids(**params: Any) -> int:
        page = (await client.get(P, params=params, headers=h)).json()
        assert set(page) == {"items", "total", "limit", "offset"}
        return int(page["total"])

    assert await ids() == 3
    assert await ids(tag="vip") == 1
    assert await ids(attr="segment:retail") == 1
    assert await ids(channel="telegram") == 1
    assert await ids(consent="whatsapp") == 1
    page = (await client.get(P, params={"limit": 2, "offset": 2}, headers=h)).json()
    assert (len(page["items"]), page["total"], page["limit"], page["offset"]) == (1, 3, 2, 2)
    assert (await client.get(P, params={"limit": 0}, headers=h)).status_code == 422
    assert (await client.get(P, params={"attr": "nocolon"}, headers=h)).status_code == 422


async def test_consent_ledger_and_opt_out(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    pid = (await client.post(P, json=body(), headers=h)).json()["id"]
    out = (
        await client.post(
            f"{P}/{pid}/consents",
            json={"channel": "whatsapp", "status": "withdrawn", "source": "call"},
            headers=h,
        )
    ).json()
    assert out["consents"]["whatsapp"]["status"] == "withdrawn"
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ConsentEntry)) == 2
    out = (await client.post(f"{P}/{pid}/opt-out", json={"source": "email"}, headers=h)).json()
    assert out["opted_out"] is True
    assert (await client.get(P, params={"opted_out": "true"}, headers=h)).json()["total"] == 1


async def test_erasure_destroys_the_key_and_keeps_hashes(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    pid = (await client.post(P, json=body(), headers=h)).json()["id"]
    async with runtime.sessions() as session:
        before = await session.scalar(select(Prospect))
    assert before is not None and before.phone_hash
    erased = (await client.post(f"{P}/{pid}/erase", headers=actors["compliance"].headers)).json()
    assert (
        erased["erased"]
        and erased["name"] is None
        and erased["phone"] is None
        and erased["handles"] == {}
    )
    async with runtime.sessions() as session:
        row = await session.scalar(select(Prospect))
        audit = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "prospect.erased"))
        ).one()
    assert row is not None
    assert (row.wrapped_key, row.name_enc, row.phone_enc, row.handles_enc) == (
        None,
        None,
        None,
        None,
    )
    assert row.phone_hash == before.phone_hash and row.opted_out
    assert audit.details["phone_hash"] == before.phone_hash
    # The old ciphertext can no longer be opened by anyone: the key is gone.
    assert (await client.patch(f"{P}/{pid}", json={"name": "x"}, headers=h)).status_code == 409
    # The number is free again for a new, re-consented relationship.
    assert (await client.post(P, json=body(), headers=h)).status_code == 201
    assert (await client.get(P, headers=h)).json()["total"] == 1


async def test_every_mutation_is_audited(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    _, _, audits_before = await counts(runtime)
    pid = (await client.post(P, json=body(), headers=h)).json()["id"]
    await client.patch(f"{P}/{pid}", json={"tags": ["a"]}, headers=h)
    await client.delete(f"{P}/{pid}", headers=h)
    async with runtime.sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions[audits_before:] == ["prospect.created", "prospect.updated", "prospect.deleted"]
