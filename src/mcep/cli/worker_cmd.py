"""``mcep worker``: the worker role (dispatch, lease sweeps and every other domain's jobs).

Runs until SIGINT or SIGTERM, then lets each job finish its current step (the dispatch job its
current batch) before closing the provider sessions and the database. A second signal stops
at once; leases left behind go back in line when they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta

import typer

from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.cli.common import console, fail
from mcep.db import migrate
from mcep.dispatch.worker import DispatchJob, DispatchOptions
from mcep.runtime import build_runtime
from mcep.settings import Settings
from mcep.worker.base import Job
from mcep.worker.jobs import JOBS
from mcep.worker.process import UnknownJob, build_jobs, default_owner, run_built


def worker(
    only: str | None = typer.Option(
        None, "--only", help="Comma-separated jobs to run (default: every job)"
    ),
    concurrency: int = typer.Option(100, min=1, help="Provider calls in flight per process"),
    batch: int = typer.Option(500, min=1, help="Messages claimed per dispatch batch"),
    lease: float = typer.Option(300.0, min=1.0, help="Seconds a claimed batch stays leased"),
    pipelines: int = typer.Option(
        1, min=1, help="Dispatch batches in progress at once (PostgreSQL; SQLite runs one)"
    ),
    owner: str | None = typer.Option(None, help="Lease owner id (default: hostname:pid:random)"),
) -> None:
    """Run worker jobs until interrupted (Ctrl-C or SIGTERM finish the current batch)."""
    names = [n.strip() for n in only.split(",") if n.strip()] if only else sorted(JOBS)
    options = DispatchOptions(batch=batch, concurrency=concurrency, lease=timedelta(seconds=lease))
    try:
        jobs = build_jobs(names, factories={"dispatch": lambda: DispatchJob(options)})
    except UnknownJob as exc:
        fail(str(exc), code=2)
    try:
        asyncio.run(_work(Settings(), jobs, owner or default_owner()))
    except asyncio.CancelledError:
        console.print("worker stopped mid-step: its leases go back in line when they expire")


async def _work(settings: Settings, jobs: list[Job], owner: str) -> None:
    stop = asyncio.Event()
    _on_signals(stop)
    runtime = build_runtime(settings)
    sessions = open_sessions()
    try:
        if settings.is_sqlite:
            await migrate.upgrade(runtime.engine)
        elif not await migrate.is_current(runtime.engine):
            console.print(
                "[yellow]the database is not at the newest migration: run `mcep db upgrade`[/]"
            )
        console.print(f"worker [bold]{owner}[/]: {', '.join(job.name for job in jobs)}")
        await run_built(runtime, jobs, adapters=build_adapters(sessions), stop=stop, owner=owner)
    finally:
        await close_sessions(sessions)
        await runtime.aclose()
    console.print("worker stopped")


def _on_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM: finish the current step; a second one: stop now."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def handle() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(signum, handle)
