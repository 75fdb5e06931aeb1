"""Experiments over HTTP: validation that names the field, the experiment's arms on its
campaign, launch, results equal to the calculator's on the same counts, and the rules on
deleting and re-using campaigns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mcep.dispatch.models import EventKind
from mcep.experiments.analysis import analyze
from mcep.experiments.models import Experiment
from mcep.experiments.stats import Counts, sample_ratio_mismatch
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns import builders
from tests.integration.experiments.builders import (
    assignments,
    insert_events,
    messages,
    outcome_events,
)

X, CP = "/api/v1/experiments", "/api/v1/campaigns"


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["message"] for e in response.json()["errors"]}


async def _draft(runtime: Runtime, owner: Actor, recipients: int = 2) -> dict[str, str]:
    prospects = await builders.add_prospects(runtime, owner, recipients)
    campaign_id = await builders.add_campaign(runtime, owner, prospect_ids=prospects)
    a = await builders.add_template(runtime, owner, body="Hello {{ first_name }}")
    b = await builders.add_template(runtime, owner, body="Hi {{ first_name }}, a minute?")
    return {"campaign_id": str(campaign_id), "a": str(a), "b": str(b)}


def _body(draft: dict[str, str], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "campaign_id": draft["campaign_id"],
        "variants": [
            {"name": "a", "template_id": draft["a"]},
            {"name": "b", "template_id": draft["b"]},
        ],
    }
    return {**body, **changes}


def _arm(draft: dict[str, str], **changes: Any) -> list[dict[str, Any]]:
    return [
        {"name": "a", "template_id": draft["a"], **changes},
        {"name": "b", "template_id": draft["b"]},
    ]


async def _count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Experiment)) or 0


TTS = {"mode": "test_then_send", "test_fraction": 0.2}
# Validation happens before any query a backend could answer differently: one backend is enough.
ONE_BACKEND = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"variants": "one"}, "variants", ""),
        ({"holdout": 0.6}, "holdout", "less than or equal to 0.5"),
        ({"alpha": 0.5}, "alpha", "less than or equal to 0.2"),
        ({"metric": "clicks"}, "metric", ""),
        ({"mode": "bandit"}, "mode", ""),
        ({"control": "z"}, "control", "not one of the variants"),
        ({"guardrail": {"max_rate": 2}}, "guardrail.max_rate", ""),
        ({"guardrail": {"metric": "reply_rate"}}, "guardrail.metric", ""),
        ({"mode": "test_then_send", "deadline_hours": 24}, "test_fraction", "needs one"),
        (TTS, "deadline", "either deadline or deadline_hours"),
        ({**TTS, "deadline_hours": 2, "deadline": "2099-01-01T00:00:00Z"}, "deadline", "either"),
        ({**TTS, "deadline": PAST}, "deadline", "in the future"),
        ({**TTS, "deadline_hours": 2, "min_share": 0.1}, "min_share", "does not apply"),
        ({"test_fraction": 0.2}, "test_fraction", "does not apply to a fixed experiment"),
        ({"mode": "thompson", "test_fraction": 0.1, "min_share": 0.6}, "min_share", ""),
        ({"test_fraction": 1.0, "mode": "thompson"}, "test_fraction", "less than 1"),
        ({"campaign_id": str(uuid.uuid4())}, "campaign_id", "no such campaign"),
    ],
)
@ONE_BACKEND
async def test_bad_experiments_are_422_naming_the_field_and_create_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actors: dict[str, Actor],
    changes: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    draft = await _draft(runtime, actors["pm"])
    response = await client.post(X, json=_body(draft, **changes), headers=actors["pm"].headers)
    problems = fields(response)
    assert field in problems and fragment in problems[field], problems
    assert await _count(runtime) == 0


@pytest.mark.parametrize(
    ("arm", "field", "fragment"),
    [
        ({"weight": 0}, "variants.0.weight", "greater than 0"),
        ({"send_offset_minutes": -5}, "variants.0.send_offset_minutes", ""),
        ({"channel_order": ["telegram", "telegram"]}, "variants.0.channel_order", "not repeat"),
        ({"channel_order": ["fax"]}, "variants.0.channel_order.0", ""),
        ({"name": "holdout"}, "variants.0.name", "reserved"),
        ({"name": "b"}, "variants", "unique"),
        ({"name": "has space"}, "variants.0.name", ""),
        ({"template_id": str(uuid.uuid4())}, "variants.0.template_id", "no such template"),
        ({"surprise": 1}, "variants.0.surprise", "unknown field"),
    ],
)
@ONE_BACKEND
async def test_bad_arms_are_422_naming_the_arm(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actors: dict[str, Actor],
    arm: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    draft = await _draft(runtime, actors["pm"])
    body = _body(draft, variants=_arm(draft, **arm))
    problems = fields(await client.post(X, json=body, headers=actors["pm"].headers))
    assert field in problems and fragment in problems[field], problems


async def test_another_pms_template_is_no_such_template(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    draft = await _draft(runtime, actors["pm"])
    foreign = await builders.add_template(runtime, actors["other_pm"])
    body = _body(draft, variants=_arm(draft, template_id=str(foreign)))
    problems = fields(await client.post(X, json=body, headers=actors["pm"].headers))
    assert problems["variants.0.template_id"] == "no such template"


async def test_one_experiment_per_draft_campaign(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    draft = await _draft(runtime, actors["pm"])
    assert (await client.post(X, json=_body(draft), headers=h)).status_code == 201
    again = await client.post(X, json=_body(draft), headers=h)
    assert again.status_code == 409 and "already has an experiment" in again.text

    await builders.add_device(runtime)
    launched = await builders.running_campaign(runtime, actors["pm"])
    late = await client.post(X, json=_body(draft, campaign_id=str(launched)), headers=h)
    assert late.status_code == 409 and "draft" in late.text


async def test_create_launch_and_read_results_over_http(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    await builders.add_device(runtime)
    draft = await _draft(runtime, actors["pm"], recipients=120)
    body = _body(
        draft,
        variants=[
            {"name": "b", "template_id": draft["b"], "weight": 2, "send_offset_minutes": 30},
            {"name": "a", "template_id": draft["a"]},
        ],
        control="a",
        holdout=0.2,
        alpha=0.1,
        name="Shorter opener",
    )
    created = await client.post(X, json=body, headers=h)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["status"] == "draft" and shown["control"] == "a"
    assert [v["name"] for v in shown["variants"]] == ["a", "b"]  # control first
    assert shown["guardrail"] == {"metric": "opt_out_rate", "max_rate": 0.05}
    campaign = (await client.get(f"{CP}/{draft['campaign_id']}", headers=h)).json()
    assert {(v["name"], v["template_id"], v["weight"]) for v in campaign["variants"]} == {
        ("a", draft["a"], 1.0),
        ("b", draft["b"], 2.0),
    }

    launched = await client.post(f"{CP}/{draft['campaign_id']}/launch", headers=h)
    assert launched.status_code == 200, launched.text
    experiment_id = shown["id"]
    running = (await client.get(f"{X}/{experiment_id}", headers=h)).json()
    assert running["status"] == "running" and running["launched_at"] is not None
    assert (await client.delete(f"{X}/{experiment_id}", headers=h)).status_code == 409

    # Outcomes arrive: a sent event for every message, replies from some.
    sent = await messages(runtime, uuid.UUID(draft["campaign_id"]))
    arms = {"a": [m for m in sent if m.variant == "a"], "b": [m for m in sent if m.variant == "b"]}
    now = datetime.now(UTC)
    rows = outcome_events(sent, kind=EventKind.SENT, at=now)
    rows += outcome_events(arms["a"][:3] + arms["b"][:20], kind=EventKind.REPLIED, at=now)
    await insert_events(runtime, rows)

    results = await client.get(f"{X}/{experiment_id}/results", headers=h)
    assert results.status_code == 200, results.text
    data = results.json()
    control, variant = Counts(3, len(arms["a"])), Counts(20, len(arms["b"]))
    report = analyze(control, [variant], alpha=0.1)
    assert [(a["name"], a["successes"], a["sent"]) for a in data["arms"]] == [
        ("a", 3, len(arms["a"])),
        ("b", 20, len(arms["b"])),
    ]
    assert data["arms"][1]["interval"]["low"] == pytest.approx(report.arms[1].interval.low)
    comparison, expected = data["comparisons"][0], report.comparisons[0]
    assert comparison["p_value"] == pytest.approx(expected.selected.p_value)
    assert comparison["holm_p_value"] == pytest.approx(expected.holm_p_value)
    assert comparison["chance_to_beat_control"] == pytest.approx(expected.chance_to_beat_control)
    assert comparison["lift"]["estimate"] == pytest.approx(expected.lift.estimate)
    assert comparison["sequential"]["p_value"] == pytest.approx(expected.sequential.p_value)
    assert comparison["sequential"]["interval"]["high"] == pytest.approx(
        expected.sequential.interval.high
    )
    placed = await assignments(runtime, uuid.UUID(experiment_id))
    holdout = sum(1 for a in placed if a.arm is None)
    srm = sample_ratio_mismatch(
        [len(arms["a"]), len(arms["b"]), holdout], weights=[0.8 / 3, 0.8 * 2 / 3, 0.2]
    )
    assert data["srm"]["p_value"] == pytest.approx(srm.p_value)
    assert data["srm"]["observed"] == {"a": len(arms["a"]), "b": len(arms["b"]), "holdout": holdout}
    assert data["holdout"]["assigned"] == holdout and data["decision"] is None
    assert [lift["arm"] for lift in data["lift_vs_holdout"]] == ["a", "b"]


async def test_delete_a_draft_and_list_with_filters(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    first, second = await _draft(runtime, actors["pm"]), await _draft(runtime, actors["pm"])
    one = (await client.post(X, json=_body(first), headers=h)).json()
    await client.post(X, json=_body(second, **TTS, deadline_hours=12), headers=h)
    listed = (await client.get(X, params={"campaign_id": first["campaign_id"]}, headers=h)).json()
    assert [e["id"] for e in listed["items"]] == [one["id"]]
    assert (await client.get(X, params={"status": "draft"}, headers=h)).json()["total"] == 2
    theirs = (await client.get(X, headers=actors["other_pm"].headers)).json()
    assert theirs["total"] == 0
    assert (await client.delete(f"{X}/{one['id']}", headers=h)).status_code == 204
    assert (await client.get(f"{X}/{one['id']}", headers=h)).status_code == 404
    assert await _count(runtime) == 1
