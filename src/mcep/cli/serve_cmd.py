"""``mcep serve``: the API; on the embedded default, the worker jobs run in the same process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import typer
import uvicorn

from mcep.app import create_app
from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.cli.common import console
from mcep.db import migrate
from mcep.inbound.tasks import register_webhooks
from mcep.runtime import Runtime, build_runtime
from mcep.settings import Settings
from mcep.worker.base import WorkerContext
from mcep.worker.jobs import JOBS
from mcep.worker.process import run_worker


def serve(
    host: str | None = typer.Option(None, help="Interface to listen on"),
    port: int | None = typer.Option(None, help="Port to listen on"),
    embedded: bool | None = typer.Option(
        None,
        "--embedded/--no-embedded",
        help="Run the worker jobs in this process too (default: on for the SQLite default)",
    ),
) -> None:
    """Serve the REST API (docs at /docs); migrates and runs the workers on the embedded default."""
    settings = Settings()
    in_process = settings.is_sqlite if embedded is None else embedded
    asyncio.run(_serve(settings, host or settings.host, port or settings.port, in_process))


async def _serve(settings: Settings, host: str, port: int, embedded: bool) -> None:
    runtime = build_runtime(settings)
    try:
        if settings.is_sqlite:
            await migrate.upgrade(runtime.engine)
        elif not await migrate.is_current(runtime.engine):
            console.print(
                "[yellow]the database is not at the newest migration: run `mcep db upgrade`[/]"
            )
        app = create_app(settings, runtime=runtime)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
        console.print(f"MCEP API on [bold]http://{host}:{port}[/] (docs at /docs)")
        if not embedded:
            await server.serve()
            return
        async with _workers(runtime):
            await server.serve()
    finally:
        await runtime.aclose()


@contextlib.asynccontextmanager
async def _workers(runtime: Runtime) -> AsyncIterator[None]:
    sessions = open_sessions()
    adapters = build_adapters(sessions)
    stop = asyncio.Event()
    if runtime.settings.public_url:
        context = WorkerContext(runtime=runtime, owner="serve", adapters=adapters)
        await register_webhooks(context, runtime.settings.public_url)
    task = asyncio.create_task(run_worker(runtime, jobs=sorted(JOBS), adapters=adapters, stop=stop))
    console.print(f"worker jobs running in process: {', '.join(sorted(JOBS))}")
    try:
        yield
    finally:
        stop.set()
        await task
        await close_sessions(sessions)
