"""Serve the sandbox from inside the caller's event loop on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mcep.api.embedded import serve_in_loop
from mcep.sandbox.app import create_sandbox_app
from mcep.sandbox.state import SandboxState


@contextlib.asynccontextmanager
async def run_sandbox(
    state: SandboxState, *, host: str = "127.0.0.1", port: int = 0, close_state: bool = True
) -> AsyncIterator[str]:
    """Serve the sandbox as a task in the running loop; yields ``http://host:port``.

    On exit the server stops (open connections are closed) and, unless ``close_state`` is
    false, pending callbacks are cancelled and the state's HTTP session is closed.
    """
    try:
        async with serve_in_loop(create_sandbox_app(state), host=host, port=port) as url:
            yield url
    finally:
        if close_state:
            await state.aclose()
