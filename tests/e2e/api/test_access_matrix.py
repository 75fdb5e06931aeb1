"""Every role against every endpoint: who may read, who may change, and 404 across PMs.

Each route under /api/v1 must appear here (``test_every_route_is_in_the_matrix`` fails
otherwise), so every new endpoint joins the matrix.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from mcep.auth import service as auth_service
from mcep.auth.principal import Principal
from mcep.contacts import service as contacts_service
from mcep.contacts.schemas import ProspectCreate
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns import builders
from tests.routes import api_routes

ROLES = ("anonymous", "admin", "compliance", "pm", "other_pm")
Setup = Callable[[Runtime, Actor], Awaitable[dict[str, str]]]


async def _prospect(runtime: Runtime, owner: Actor) -> dict[str, str]:
    principal = Principal(owner.user_id, owner.email, owner.role, owner.pm_id)
    async with runtime.sessions() as session, session.begin():
        p = await contacts_service.create(
            session,
            principal,
            ProspectCreate(
                name="Pat",
                timezone="Europe/Paris",
                handles={"telegram": str(uuid.uuid4().int % 10**9)},
            ),  # type: ignore[arg-type]
            keyring=runtime.keyring,
            default_region=None,
        )
    return {"prospect_id": str(p.id)}


async def _api_key(runtime: Runtime, owner: Actor) -> dict[str, str]:
    principal = Principal(owner.user_id, owner.email, owner.role, owner.pm_id)
    async with runtime.sessions() as session, session.begin():
        key, _ = await auth_service.create_api_key(session, principal, "matrix")
    return {"key_id": str(key.id)}


async def _nothing(_runtime: Runtime, _owner: Actor) -> dict[str, str]:
    return {}


def _new_user() -> dict[str, Any]:
    return {
        "email": f"u{uuid.uuid4().hex[:8]}@example.com",
        "password": "long enough pw",
        "role": "compliance",
    }


def _new_prospect() -> dict[str, Any]:
    return {
        "name": "Lee",
        "timezone": "Asia/Tokyo",
        "handles": {"telegram": str(uuid.uuid4().int % 10**9)},
    }


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expect: dict[str, int]
    setup: Setup = _nothing
    body: Callable[[], Any] | None = None
    owner: str = "pm"  # whose object the setup creates


def owned(ok: int, *, compliance: int = 403, admin: int = 403) -> dict[str, int]:
    """A PM-owned object: its PM may, another PM gets 404, the rest as given."""
    return {"anonymous": 401, "admin": admin, "compliance": compliance, "pm": ok, "other_pm": 404}


def everyone(ok: int) -> dict[str, int]:
    return {"anonymous": 401, "admin": ok, "compliance": ok, "pm": ok, "other_pm": ok}


def admin_only(ok: int) -> dict[str, int]:
    return {"anonymous": 401, "admin": ok, "compliance": 403, "pm": 403, "other_pm": 403}


P = "/api/v1/prospects"
CASES: list[Case] = [
    Case("GET", P, {"anonymous": 401, "admin": 403, "compliance": 200, "pm": 200, "other_pm": 200}),
    Case(
        "POST",
        P,
        {"anonymous": 401, "admin": 403, "compliance": 403, "pm": 201, "other_pm": 201},
        body=_new_prospect,
    ),
    Case("GET", P + "/{prospect_id}", owned(200, compliance=200), _prospect),
    Case("PATCH", P + "/{prospect_id}", owned(200), _prospect, body=lambda: {"tags": ["vip"]}),
    Case("DELETE", P + "/{prospect_id}", owned(204), _prospect),
    Case(
        "POST",
        P + "/{prospect_id}/consents",
        owned(200),
        _prospect,
        body=lambda: {"channel": "telegram", "source": "call"},
    ),
    Case(
        "POST", P + "/{prospect_id}/opt-out", owned(200), _prospect, body=lambda: {"source": "call"}
    ),
    Case("POST", P + "/{prospect_id}/erase", owned(200, compliance=200), _prospect),
    Case("GET", "/api/v1/auth/me", everyone(200)),
    Case("GET", "/api/v1/auth/api-keys", everyone(200)),
    Case("POST", "/api/v1/auth/api-keys", everyone(201), body=lambda: {"name": "ci"}),
    Case(
        "DELETE", "/api/v1/auth/api-keys/{key_id}", owned(200, compliance=404, admin=404), _api_key
    ),
    Case("GET", "/api/v1/users", admin_only(200)),
    Case("POST", "/api/v1/users", admin_only(201), body=_new_user),
]

# Routes that anyone may call: login, token refresh, probes, docs.
PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
}


def test_every_route_is_in_the_matrix() -> None:
    routes = {
        (method, path)
        for method, path in api_routes()
        if path.startswith("/api/v1") and not path.startswith("/api/v1/providers")
    }
    assert len(routes) >= 14
    covered = {(c.method, c.path) for c in CASES} | PUBLIC
    assert routes - covered == set(), "add these routes to CASES"


async def test_role_endpoint_matrix(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    mismatches = []
    for case in CASES:
        for role in ROLES:
            params = await case.setup(runtime, actors[case.owner])
            headers = actors[role].headers if role != "anonymous" else {}
            response = await client.request(
                case.method,
                case.path.format(**params),
                headers=headers,
                json=case.body() if case.body else None,
            )
            if response.status_code != case.expect[role]:
                mismatches.append(
                    f"{case.method} {case.path} as {role}: {response.status_code} "
                    f"(expected {case.expect[role]}) {response.text[:120]}"
                )
    assert mismatches == []


async def test_other_pm_lists_none_of_my_prospects(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    await _prospect(runtime, actors["pm"])
    mine = (await client.get(P, headers=actors["pm"].headers)).json()
    theirs = (await client.get(P, headers=actors["other_pm"].headers)).json()
    everything = (await client.get(P, headers=actors["compliance"].headers)).json()
    assert (mine["total"], theirs["total"], everything["total"]) == (1, 0, 1)


# --- dispatch: profiles, templates, campaigns, messages, devices ----------------------------
_LATEST: dict[str, str] = {}


async def _profile(runtime: Runtime, owner: Actor) -> dict[str, str]:
    return {"profile_id": str(await builders.add_profile(runtime, owner))}


async def _template(runtime: Runtime, owner: Actor) -> dict[str, str]:
    _LATEST["template_id"] = str(await builders.add_template(runtime, owner))
    return {"template_id": _LATEST["template_id"]}


async def _draft_campaign(runtime: Runtime, owner: Actor) -> dict[str, str]:
    prospects = await builders.add_prospects(runtime, owner, 1)
    return {"campaign_id": str(await builders.add_campaign(runtime, owner, prospect_ids=prospects))}


async def _running_campaign(runtime: Runtime, owner: Actor) -> dict[str, str]:
    return {"campaign_id": str(await builders.running_campaign(runtime, owner))}


async def _paused_campaign(runtime: Runtime, owner: Actor) -> dict[str, str]:
    campaign_id = await builders.running_campaign(runtime, owner)
    await builders.change(runtime, owner, campaign_id, "pause")
    return {"campaign_id": str(campaign_id)}


async def _message(runtime: Runtime, owner: Actor) -> dict[str, str]:
    campaign_id = await builders.running_campaign(runtime, owner)
    return {"message_id": str((await builders.message_ids(runtime, campaign_id))[0])}


async def _dead_message(runtime: Runtime, owner: Actor) -> dict[str, str]:
    campaign_id = await builders.running_campaign(runtime, owner)
    await builders.set_state(runtime, campaign_id, builders.MessageState.DEAD)
    return {"message_id": str((await builders.message_ids(runtime, campaign_id))[0])}


async def _device(runtime: Runtime, _owner: Actor) -> dict[str, str]:
    return {"device_id": str(await builders.add_device(runtime))}


def _new_campaign() -> dict[str, Any]:
    audience = {"prospect_ids": [str(uuid.uuid4())]}
    return {"name": "Q4", "template_id": _LATEST["template_id"], "audience": audience}


def _new_device() -> dict[str, Any]:
    return {
        "platform": "telegram",
        "address": f"bot{uuid.uuid4().hex[:8]}",
        "base_url": "http://127.0.0.1:9/",
        "token": "123:abc",
    }


def pm_list() -> dict[str, int]:
    return {"anonymous": 401, "admin": 403, "compliance": 200, "pm": 200, "other_pm": 200}


def pm_create() -> dict[str, int]:
    return {"anonymous": 401, "admin": 403, "compliance": 403, "pm": 201, "other_pm": 201}


PR, TP, CP = "/api/v1/profiles", "/api/v1/templates", "/api/v1/campaigns"
M, DV = "/api/v1/messages", "/api/v1/devices"
CASES += [
    Case("GET", PR, pm_list()),
    Case("POST", PR, pm_create(), body=lambda: {"name": f"p{uuid.uuid4().hex[:6]}"}),
    Case("GET", PR + "/{profile_id}", owned(200, compliance=200), _profile),
    Case("PATCH", PR + "/{profile_id}", owned(200), _profile, body=lambda: {"lead_threshold": 80}),
    Case("DELETE", PR + "/{profile_id}", owned(204), _profile),
    Case("GET", TP, pm_list()),
    Case("POST", TP, pm_create(), body=lambda: {"name": f"t{uuid.uuid4().hex[:6]}", "body": "Hi"}),
    Case("GET", TP + "/{template_id}", owned(200, compliance=200), _template),
    Case("PATCH", TP + "/{template_id}", owned(200), _template, body=lambda: {"body": "Hello"}),
    Case("DELETE", TP + "/{template_id}", owned(204), _template),
    Case("GET", CP, pm_list()),
    # Another PM can't name my template in a campaign: a 422 on that field.
    Case("POST", CP, {**pm_create(), "other_pm": 422}, _template, body=_new_campaign),
    Case("GET", CP + "/{campaign_id}", owned(200, compliance=200), _draft_campaign),
    Case("POST", CP + "/{campaign_id}/launch", owned(200), _draft_campaign),
    Case("POST", CP + "/{campaign_id}/pause", owned(200), _running_campaign),
    Case("POST", CP + "/{campaign_id}/resume", owned(200), _paused_campaign),
    Case("POST", CP + "/{campaign_id}/cancel", owned(200), _running_campaign),
    Case("GET", M, pm_list()),
    Case("GET", M + "/{message_id}", owned(200, compliance=200), _message),
    Case("POST", M + "/{message_id}/replay", owned(200), _dead_message),
    Case("GET", DV, admin_only(200)),
    Case("POST", DV, admin_only(201), body=_new_device),
    Case("GET", DV + "/{device_id}", admin_only(200), _device),
    Case("PATCH", DV + "/{device_id}", admin_only(200), _device, body=lambda: {"daily_quota": 50}),
    Case("DELETE", DV + "/{device_id}", admin_only(204), _device),
]


# --- experiments ---------------------------------------------------------------------------


async def _experiment_campaign(runtime: Runtime, owner: Actor) -> dict[str, str]:
    prospects = await builders.add_prospects(runtime, owner, 2)
    _LATEST["campaign_id"] = str(
        await builders.add_campaign(runtime, owner, prospect_ids=prospects)
    )
    _LATEST["arm_templates"] = ",".join(
        [str(await builders.add_template(runtime, owner)) for _ in range(2)]
    )
    return {}


def _new_experiment() -> dict[str, Any]:
    a, b = _LATEST["arm_templates"].split(",")
    return {
        "campaign_id": _LATEST["campaign_id"],
        "variants": [{"name": "a", "template_id": a}, {"name": "b", "template_id": b}],
    }


async def _draft_experiment(runtime: Runtime, owner: Actor) -> dict[str, str]:
    from tests.integration.experiments.builders import add_experiment

    prospects = await builders.add_prospects(runtime, owner, 2)
    _, experiment_id = await add_experiment(runtime, owner, prospects)
    return {"experiment_id": str(experiment_id)}


X = "/api/v1/experiments"
CASES += [
    Case("GET", X, pm_list()),
    # Another PM can't put an experiment on my campaign: a 422 on that field.
    Case("POST", X, {**pm_create(), "other_pm": 422}, _experiment_campaign, body=_new_experiment),
    Case("GET", X + "/{experiment_id}", owned(200, compliance=200), _draft_experiment),
    Case("DELETE", X + "/{experiment_id}", owned(204), _draft_experiment),
    Case("GET", X + "/{experiment_id}/results", owned(200, compliance=200), _draft_experiment),
]


# --- scoring: leads and the model registry --------------------------------------------------


def model_managers(ok: int) -> dict[str, int]:
    """Model governance: admin and compliance promote and roll back; PMs only read."""
    return {"anonymous": 401, "admin": ok, "compliance": ok, "pm": 403, "other_pm": 403}


async def _model_version(runtime: Runtime, _owner: Actor) -> dict[str, str]:
    from tests.integration.scoring.builders import register

    return {"version": str((await register(runtime)).version)}


async def _two_champions(runtime: Runtime, _owner: Actor) -> dict[str, str]:
    from tests.integration.scoring.builders import register

    for _ in range(2):
        await register(runtime, promote=True)
    return {}


LD, MD = "/api/v1/leads", "/api/v1/models"
CASES += [
    Case("GET", LD, pm_list()),
    Case("GET", LD + "/{prospect_id}", owned(200, compliance=200), _prospect),
    Case(
        "POST",
        LD + "/{prospect_id}/feedback",
        owned(201),
        _prospect,
        body=lambda: {"label": "good_lead", "note": "asked for a call"},
    ),
    Case("GET", MD, everyone(200)),
    Case("GET", MD + "/champions", everyone(200)),
    Case("GET", MD + "/{version}", everyone(200), _model_version),
    Case("POST", MD + "/{version}/promote", model_managers(200), _model_version),
    Case("POST", MD + "/rollback", model_managers(200), _two_champions),
]
