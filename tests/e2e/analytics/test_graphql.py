"""GraphQL: the same answers as REST, the same isolation, and Telegram's unknowns as null."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from mcep.channels.base import Platform
from mcep.dispatch.models import Message, MessageState
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns.builders import add_device, add_prospects
from tests.integration.experiments.builders import (
    LAUNCH,
    add_experiment,
    insert_events,
    launch,
    messages,
    outcome_events,
)

RESULTS = """
query ($id: UUID!) {
  experimentResults(id: $id) {
    experimentId metric alpha
    arms { name control assigned sent successes rate interval { low high } }
    comparisons { arm pValue holmPValue selectedTest chanceToBeatControl
                  sequential { pValue significant } lift { estimate } }
    srm { statistic pValue mismatch observed }
  }
}
"""
FUNNEL = """
query ($id: UUID!) { campaignFunnel(id: $id) { variant channel queued sent delivered read } }
"""


async def gql(
    client: httpx.AsyncClient, query: str, headers: dict[str, str], **variables: Any
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _experiment(runtime: Runtime, pm: Actor) -> tuple[str, str]:
    await add_device(runtime, Platform.TELEGRAM)
    prospects = await add_prospects(runtime, pm, 40)
    campaign_id, experiment_id = await add_experiment(runtime, pm, prospects)
    await launch(runtime, pm, campaign_id)
    sent = await messages(runtime, campaign_id)
    at = LAUNCH + timedelta(hours=1)
    await insert_events(runtime, outcome_events(sent, kind="sent", at=at))
    await insert_events(runtime, outcome_events(sent[::3], kind="replied", at=at))
    return str(campaign_id), str(experiment_id)


async def test_results_match_rest_and_respect_isolation(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    _, experiment_id = await _experiment(runtime, actors["pm"])
    rest = (
        await client.get(
            f"/api/v1/experiments/{experiment_id}/results", headers=actors["pm"].headers
        )
    ).json()
    graph = (await gql(client, RESULTS, actors["pm"].headers, id=experiment_id))["data"][
        "experimentResults"
    ]
    assert [a["assigned"] for a in graph["arms"]] == [a["assigned"] for a in rest["arms"]]
    assert sum(a["assigned"] for a in graph["arms"]) == 40
    assert graph["srm"]["pValue"] == rest["srm"]["p_value"]
    assert sum(a["successes"] for a in graph["arms"]) == 14
    comparison, expected = graph["comparisons"][0], rest["comparisons"][0]
    assert (comparison["selectedTest"], comparison["pValue"]) == (
        expected["selected_test"],
        expected["p_value"],
    )
    compliance = await gql(client, RESULTS, actors["compliance"].headers, id=experiment_id)
    assert compliance["data"]["experimentResults"]["experimentId"] == experiment_id
    other = await gql(client, RESULTS, actors["other_pm"].headers, id=experiment_id)
    assert other["data"] is None and other["errors"][0]["extensions"]["status"] == 404
    anonymous = await gql(client, RESULTS, {}, id=experiment_id)
    assert anonymous["errors"][0]["extensions"]["status"] == 401


async def test_funnel_says_null_where_telegram_has_no_receipts(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    campaign_id, _ = await _experiment(runtime, actors["pm"])
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(Message).values(state=MessageState.SENT))
    rows = (await gql(client, FUNNEL, actors["pm"].headers, id=campaign_id))["data"][
        "campaignFunnel"
    ]
    assert {r["channel"] for r in rows} == {"telegram"}
    assert sum(r["sent"] for r in rows) == sum(r["queued"] for r in rows) == 40
    assert all(r["delivered"] is None and r["read"] is None for r in rows)
    other = await gql(client, FUNNEL, actors["other_pm"].headers, id=campaign_id)
    assert other["errors"][0]["extensions"]["status"] == 404


async def test_graphiql_loads_without_credentials(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
