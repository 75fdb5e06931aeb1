"""Serve the sandbox from inside the caller's event loop on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn

from mcep.sandbox.app import create_sandbox_app
from mcep.sandbox.state import SandboxState


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def run_sandbox(
    state: SandboxState, *, host: str = "127.0.0.1", port: int = 0, close_state: bool = True
) -> AsyncIterator[str]:
    """Serve the sandbox as a task in the running loop; yields ``http://host:port``.

    On exit the server stops (open connections are closed) and, unless ``close_state`` is
    false, pending callbacks are cancelled and the state's HTTP session is closed.
    """
    config = uvicorn.Config(
        create_sandbox_app(state),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _EmbeddedServer(config)
    # Bind here, so a taken port is an OSError for the caller rather than uvicorn's sys.exit.
    sock = _bind(host, port)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await _wait_started(server, task)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
        if close_state:
            await state.aclose()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("sandbox server stopped during start-up")
        await asyncio.sleep(0.005)
