"""Leads and models over HTTP: scores with threshold, trend and reasons, isolation between PMs,
advisor feedback (sealed notes, audited, reset), and model governance by role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from mcep.runtime import Runtime
from mcep.scoring import realtime
from mcep.scoring.champion import ModelCache
from mcep.scoring.models import LeadFeedback
from mcep.scoring.realtime import GapGuard
from tests.conftest import Actor
from tests.integration.campaigns import builders as campaign_builders
from tests.integration.scoring import builders as b
from tests.integration.scoring.test_model_registry import bank_like_artifact

L, MD = "/api/v1/leads", "/api/v1/models"


async def score_now(runtime: Runtime, now: datetime) -> None:
    models = ModelCache(max_age=0)
    while True:
        async with runtime.sessions() as session, session.begin():
            result = await realtime.process_events(
                session, keyring=runtime.keyring, models=models, now=now, guard=GapGuard(0)
            )
        if not result.events:
            return


@pytest.fixture
async def leads(runtime: Runtime, actors: dict[str, Actor]) -> dict[str, uuid.UUID]:
    """Two scored prospects of ``pm`` (one keen, whose score rose this week; one silent) and
    one of ``other_pm``."""
    await b.register(runtime, promote=True)
    pm, other = actors["pm"], actors["other_pm"]
    assert pm.pm_id is not None and other.pm_id is not None
    keen, silent = await campaign_builders.add_prospects(runtime, pm, 2)
    [theirs] = await campaign_builders.add_prospects(runtime, other, 1)
    now = datetime.now(UTC)
    then = now - timedelta(days=10)
    contacts = [
        *b.contact(keen, pm.pm_id, at=then),
        *b.contact(silent, pm.pm_id, at=then),
        *b.contact(theirs, other.pm_id, at=then),
    ]
    await b.add_events(runtime, contacts)
    await score_now(runtime, then)
    await b.add_events(runtime, [await b.reply(runtime, keen, pm.pm_id, b.INTERESTED, at=now)])
    await score_now(runtime, now)
    return {"keen": keen, "silent": silent, "theirs": theirs}


async def test_leads_list_scores_thresholds_trends_and_reasons(
    client: httpx.AsyncClient, actors: dict[str, Actor], leads: dict[str, uuid.UUID]
) -> None:
    response = await client.get(L, headers=actors["pm"].headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 50, 0)
    keen, silent = page["items"]
    assert keen["prospect_id"] == str(leads["keen"]) and silent["prospect_id"] == str(
        leads["silent"]
    )
    assert keen["name"] == "Client 0 Example"
    assert keen["score"] > 70 > silent["score"] and keen["threshold"] == 70
    assert keen["qualified"] is True and silent["qualified"] is False
    assert keen["trend"]["direction"] == "up" and keen["trend"]["delta"] > 30
    assert keen["trend"]["days"] == 7 and silent["trend"]["direction"] == "flat"
    reasons = keen["explanation"]
    assert 1 <= len(reasons) <= 5
    assert reasons[0]["feature"] == "intent_interest" and reasons[0]["log_odds"] > 0
    assert keen["model_version"] == 1


async def test_leads_are_isolated_between_pms_and_filterable(
    client: httpx.AsyncClient, actors: dict[str, Actor], leads: dict[str, uuid.UUID]
) -> None:
    async def ids(role: str, **params: str | float) -> set[str]:
        response = await client.get(L, headers=actors[role].headers, params=params)
        assert response.status_code == 200, response.text
        return {item["prospect_id"] for item in response.json()["items"]}

    keen, silent, theirs = (str(leads[k]) for k in ("keen", "silent", "theirs"))
    assert await ids("pm") == {keen, silent}
    assert await ids("other_pm") == {theirs}
    assert await ids("compliance") == {keen, silent, theirs}
    assert await ids("compliance", pm_id=str(actors["other_pm"].pm_id)) == {theirs}
    assert await ids("pm", qualified="true") == {keen}
    assert await ids("pm", qualified="false") == {silent}
    assert await ids("pm", score_min=50) == {keen}
    assert await ids("pm", score_max=50) == {silent}
    assert (await client.get(L, headers=actors["admin"].headers)).status_code == 403
    response = await client.get(f"{L}/{theirs}", headers=actors["pm"].headers)
    assert response.status_code == 404


async def test_lead_detail_has_history_features_and_feedback(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor],
    leads: dict[str, uuid.UUID],
) -> None:  # fmt: skip
    url = f"{L}/{leads['keen']}"
    posted = await client.post(
        url + "/feedback",
        headers=actors["pm"].headers,
        json={"label": "good_lead", "note": "Called back, wants a meeting on Tuesday"},
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["label"] == "good_lead" and posted.json()["score"] > 70

    detail = (await client.get(url, headers=actors["pm"].headers)).json()
    assert [round(p["score"]) for p in detail["history"]] == sorted(
        round(p["score"]) for p in detail["history"]
    ) and len(detail["history"]) == 2
    assert detail["history"][-1]["score"] == detail["score"]
    assert detail["features"]["intent_interest"] == 1.0
    assert detail["features"]["sentiment_mean"] > 0
    [feedback] = detail["feedback"]
    assert feedback["note"] == "Called back, wants a meeting on Tuesday"
    assert feedback["actor"] == f"user:{actors['pm'].user_id}"
    assert detail["last_feedback"] == "good_lead"
    compliance = await client.get(url, headers=actors["compliance"].headers)
    assert compliance.status_code == 200

    # The note is personal data: sealed at rest, readable only with the prospect's key.
    async with runtime.sessions() as session:
        row = await session.scalar(select(LeadFeedback))
    assert row is not None and row.note_enc is not None and b"Tuesday" not in row.note_enc
    [entry] = await b.audit_actions(runtime, "lead.feedback")
    assert entry.object_id == str(leads["keen"]) and entry.details["label"] == "good_lead"
    assert "Tuesday" not in str(entry.details)


async def test_feedback_rules(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor],
    leads: dict[str, uuid.UUID],
) -> None:  # fmt: skip
    url = f"{L}/{leads['keen']}/feedback"
    pm = actors["pm"].headers
    bad = await client.post(url, headers=pm, json={"label": "maybe"})
    assert bad.status_code == 422
    extra = await client.post(url, headers=pm, json={"label": "converted", "stars": 5})
    assert extra.status_code == 422
    long = await client.post(url, headers=pm, json={"label": "converted", "note": "x" * 2001})
    assert long.status_code == 422
    assert (await client.post(url, headers=actors["other_pm"].headers,
                              json={"label": "converted"})).status_code == 404  # fmt: skip
    assert (await client.post(url, headers=actors["compliance"].headers,
                              json={"label": "converted"})).status_code == 403  # fmt: skip

    reset = await client.post(url, headers=pm, json={"label": "reset"})
    assert reset.status_code == 201
    lead = (await client.get(f"{L}/{leads['keen']}", headers=pm)).json()
    assert lead["qualified"] is False and lead["last_feedback"] == "reset"
    [entry] = await b.audit_actions(runtime, "lead.reset")
    assert entry.details["was_qualified"] is True


async def test_models_are_read_by_all_and_governed_by_admin_and_compliance(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    await b.register(runtime, promote=True)
    await b.register(runtime, artifact=b.engagement_artifact(1))
    await b.register(runtime, artifact=bank_like_artifact())
    listed = await client.get(MD, headers=actors["pm"].headers)
    assert listed.status_code == 200
    assert [(v["version"], v["champion_of"]) for v in listed.json()["items"]] == [
        (3, []), (2, []), (1, ["global"]),
    ]  # fmt: skip
    assert listed.json()["items"][2]["metrics"] == {"roc_auc": 0.9}

    assert (await client.post(f"{MD}/2/promote", headers=actors["pm"].headers)).status_code == 403
    promoted = await client.post(
        f"{MD}/2/promote", headers=actors["compliance"].headers, json={"reason": "fresher data"}
    )
    assert promoted.status_code == 200 and promoted.json()["champion_of"] == ["global"]
    champions = (await client.get(f"{MD}/champions", headers=actors["admin"].headers)).json()
    assert [(c["scope"], c["version"]) for c in champions] == [("global", 2)]

    refused = await client.post(f"{MD}/3/promote", headers=actors["admin"].headers)
    assert refused.status_code == 422
    assert "reads none of the prospect engagement features" in refused.json()["detail"]
    assert (
        await client.post(f"{MD}/9/promote", headers=actors["admin"].headers)
    ).status_code == 404
    scoped = await client.post(
        f"{MD}/2/promote", headers=actors["admin"].headers, json={"scope": "pm:nobody"}
    )
    assert scoped.status_code == 422

    back = await client.post(f"{MD}/rollback", headers=actors["admin"].headers)
    assert back.status_code == 200 and back.json()["version"] == 1
    again = await client.post(f"{MD}/rollback", headers=actors["admin"].headers)
    assert again.status_code == 409
    promotions = await b.audit_actions(runtime, "model.promoted")
    [promotion] = [e for e in promotions if e.actor != "test"]
    assert promotion.actor == f"user:{actors['compliance'].user_id}"
    assert promotion.details["reason"] == "fresher data"
    [rollback] = await b.audit_actions(runtime, "model.rolled_back")
    assert rollback.actor == f"user:{actors['admin'].user_id}"
