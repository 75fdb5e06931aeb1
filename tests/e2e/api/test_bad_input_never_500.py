"""No bad input, anywhere, is answered with a 5xx: every route gets junk and must say 4xx."""

from __future__ import annotations

import re
from typing import Any

import httpx

from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.routes import api_routes

JSON = {"content-type": "application/json"}
JUNK_BODIES: list[Any] = [
    None,
    [],
    "text",
    12,
    {"": None},
    {"name": None, "email": 5, "role": [], "timezone": {}, "phone": "+" + "9" * 500},
    {"limit": -1, "channel": "x" * 10_000, "status": "maybe", "handles": "all"},
    {"name": "\x00\u202e", "timezone": "../../etc", "tags": [None], "attributes": {"a": {}}},
]
RAW_BODIES = [b"\xff\xfe\x00", b"{", b'{"a": 1e999999}', b"[" * 5000]
PATH_VALUES = ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "1" * 300]
QUERIES = [
    {"limit": "-5"},
    {"offset": "x"},
    {"limit": "100000"},
    {"channel": "fax", "score_min": "NaN"},
]


def _routes() -> list[tuple[str, str]]:
    routes = sorted(api_routes())
    assert len(routes) >= 14, "the route listing is broken: too few routes found"
    return routes


async def _probe(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], **kwargs: Any
) -> str | None:
    response = await client.request(method, url, headers=headers, **kwargs)
    if response.status_code >= 500:
        return f"{method} {url[:80]} {str(kwargs)[:80]} -> {response.status_code}"
    return None


async def test_junk_never_gets_a_5xx(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    probes: list[str | None] = []
    for method, path in _routes():
        for role in ("pm", "admin", "compliance"):
            headers = actors[role].headers
            for value in PATH_VALUES:
                url = re.sub(r"\{[^}]+\}", value, path)
                for body in JUNK_BODIES:
                    probes.append(await _probe(client, method, url, headers, json=body))
                for raw in RAW_BODIES:
                    probes.append(
                        await _probe(client, method, url, {**headers, **JSON}, content=raw)
                    )
                if "{" not in path:
                    for query in QUERIES:
                        probes.append(await _probe(client, method, url, headers, params=query))
    assert [p for p in probes if p] == []
    assert len(probes) >= len(_routes()) * 3 * len(PATH_VALUES) * len(JUNK_BODIES)
