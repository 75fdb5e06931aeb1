"""One ASGI app serving every simulated provider under its own prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from mcep.sandbox import imessage, signal, telegram, whatsapp
from mcep.sandbox.state import SandboxState

PROVIDER_PREFIXES = {
    "whatsapp": whatsapp,
    "telegram": telegram,
    "signal": signal,
    "imessage": imessage,
}


def create_sandbox_app(state: SandboxState) -> Starlette:
    """Mount each provider module's app at ``/<platform>`` and a stats page at ``/_sandbox``."""
    routes: list[Route | Mount] = [
        Mount(f"/{prefix}", app=module.build(state)) for prefix, module in PROVIDER_PREFIXES.items()
    ]
    routes.append(Route("/_sandbox/stats", _stats(state), methods=["GET"]))
    return Starlette(routes=routes)


def _stats(state: SandboxState) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def stats(request: Request) -> JSONResponse:
        decisions: dict[str, dict[str, int]] = {}
        for (platform, kind), n in state.ledger.decisions().items():
            decisions.setdefault(platform, {})[kind.value] = n
        return JSONResponse(
            {
                "accepted": state.ledger.total,
                "duplicates": len(state.ledger.duplicates()),
                "decisions": decisions,
                "callbacks": dict(state.callback_stats),
                "pending_callbacks": state.scheduler.pending,
            }
        )

    return stats
