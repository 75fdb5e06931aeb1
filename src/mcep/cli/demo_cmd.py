"""``mcep demo``: see the whole platform work, on the embedded default, in one command."""

from __future__ import annotations

import asyncio

import typer

from mcep.cli.common import console, fail
from mcep.demo.run import DemoOptions, run_demo
from mcep.errors import MCEPError
from mcep.settings import Settings


def demo(
    host: str = typer.Option("127.0.0.1", help="Interface for the API"),
    port: int = typer.Option(8000, help="Port for the API (another is chosen if it is taken)"),
    prospects: int = typer.Option(1000, min=10, max=100_000, help="Prospects of the demo PM"),
    exit_: bool = typer.Option(False, "--exit", help="Stop after the summary"),
) -> None:
    """Seed a demo firm, launch a two-variant campaign through the sandbox, watch it live."""
    options = DemoOptions(host=host, port=port, prospects=prospects, exit_after=exit_)
    try:
        final = asyncio.run(run_demo(Settings(), options, console))
    except MCEPError as exc:
        fail(exc.detail)
    except KeyboardInterrupt:
        return
    if final.total == 0:
        fail("the demo campaign queued nothing")
