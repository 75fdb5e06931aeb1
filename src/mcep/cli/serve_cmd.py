"""``mcep serve``: the API (and, on the embedded default, everything else in one process)."""

from __future__ import annotations

import asyncio

import typer
import uvicorn

from mcep.app import create_app
from mcep.cli.common import console
from mcep.db import migrate
from mcep.runtime import build_runtime
from mcep.settings import Settings


def serve(
    host: str | None = typer.Option(None, help="Interface to listen on"),
    port: int | None = typer.Option(None, help="Port to listen on"),
) -> None:
    """Serve the REST API, OpenAPI docs at /docs; migrates the embedded SQLite default."""
    settings = Settings()
    asyncio.run(_serve(settings, host or settings.host, port or settings.port))


async def _serve(settings: Settings, host: str, port: int) -> None:
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
        await server.serve()
    finally:
        await runtime.aclose()
