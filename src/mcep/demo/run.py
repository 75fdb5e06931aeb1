"""The demo run: the API, the sandbox and the worker in one process, on the embedded default.

1. Migrate the database, serve the API on the chosen port (another one if it is taken).
2. Serve the sandbox on a loopback port, calling the API back as each provider would.
3. Seed an admin, three PMs, 16 devices, 1,000 prospects; register the provider webhooks.
4. Launch a two-variant campaign and run the worker (dispatch, leases, Signal receiver)
   while a live view shows the funnel, read from the database.
5. When everything has settled: a summary per variant, and the URL to explore it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr
from rich.console import Console
from rich.live import Live

from mcep.api.embedded import serve_in_loop
from mcep.app import create_app
from mcep.channels.base import ChannelAdapter, Platform
from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.db import migrate
from mcep.demo import seed as demo_seed
from mcep.demo.view import Funnel, funnel, live_view, summary_table
from mcep.inbound.tasks import register_webhooks
from mcep.runtime import Runtime, build_runtime
from mcep.sandbox.behaviour import Behaviour, Delay
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState
from mcep.settings import Settings
from mcep.worker.base import WorkerContext
from mcep.worker.process import run_worker

WORKER_JOBS = ["dispatch", "leases", "signal-receiver"]
DEMO_BEHAVIOUR = Behaviour(
    seed=2026,
    latency=Delay(0.002, 0.02),
    transient_error_rate=0.03,
    rate_limit_rate=0.01,
    retry_after=1.0,
    not_on_platform_rate=0.02,
    deliver_probability=0.97,
    read_probability=0.7,
    reply_probability=0.18,
    deliver_delay=Delay(0.2, 1.5),
    read_delay=Delay(0.5, 3.0),
    reply_delay=Delay(1.0, 4.0),
)


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    prospects: int = 1000
    exit_after: bool = False
    settle_seconds: float = 120.0


def _configure_whatsapp(runtime: Runtime) -> str:
    """The demo plays Meta too: the app secret the sandbox signs with, unless one is set."""
    settings = runtime.settings
    if settings.whatsapp_app_secret is None:
        secret = runtime.keyring.webhook_secret("whatsapp", "demo-app")
        settings = settings.model_copy(update={
            "whatsapp_app_secret": SecretStr(secret),
            "whatsapp_verify_token": SecretStr(secret[:16]),
        })  # fmt: skip
        runtime.settings = settings
    assert settings.whatsapp_app_secret is not None
    return settings.whatsapp_app_secret.get_secret_value()


def _free(host: str, port: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port


@dataclass(frozen=True)
class Stage:
    """What one demo run serves and talks to."""

    runtime: Runtime
    sandbox: SandboxState
    adapters: Mapping[Platform, ChannelAdapter]
    api_url: str
    sandbox_url: str


async def _settle(
    stage: Stage, world: demo_seed.DemoWorld, console: Console, *, within: float
) -> Funnel:
    """Refresh the live view until nothing is queued and the providers have gone quiet."""
    runtime, state = stage.runtime, stage.sandbox
    title = f"Campaign 'Income fund launch' of {world.pm.email}"
    loop = asyncio.get_running_loop()
    deadline, quiet_since = loop.time() + within, None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            async with runtime.sessions() as session:
                current = await funnel(session, world.campaign_id)
            live.update(live_view(current, title=title))
            settled = current.waiting == 0 and state.scheduler.pending == 0
            quiet_since = (quiet_since or loop.time()) if settled else None
            if (quiet_since and loop.time() - quiet_since > 1.5) or loop.time() > deadline:
                return current
            await asyncio.sleep(0.25)


async def _wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_demo(settings: Settings, options: DemoOptions, console: Console) -> Funnel:
    runtime = build_runtime(settings)
    sessions = open_sessions()
    try:
        await migrate.upgrade(runtime.engine)
        secret = _configure_whatsapp(runtime)
        adapters = build_adapters(sessions)
        port = _free(options.host, options.port)
        app = create_app(runtime.settings, runtime=runtime)
        async with serve_in_loop(app, host=options.host, port=port) as api_url:
            state = SandboxState(
                behaviour=DEMO_BEHAVIOUR, callback_base=api_url, whatsapp_app_secret=secret
            )
            async with run_sandbox(state) as sandbox_url:
                stage = Stage(runtime, state, adapters, api_url, sandbox_url)
                return await _play(stage, options, console)
    finally:
        await close_sessions(sessions)
        await runtime.aclose()


async def _play(stage: Stage, options: DemoOptions, console: Console) -> Funnel:
    runtime = stage.runtime
    world = await demo_seed.seed(
        runtime, sandbox_url=stage.sandbox_url, prospects=options.prospects
    )
    context = WorkerContext(runtime=runtime, owner="demo", adapters=stage.adapters)
    await register_webhooks(context, stage.api_url)
    campaign = await demo_seed.launch_campaign(runtime, world)
    result = campaign.launch_result
    console.print(
        f"launched [bold]{campaign.name}[/]: {result.get('queued', 0):,} queued, "
        f"{result.get('skipped', 0):,} skipped {result.get('skip_reasons', {})}"
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(runtime, jobs=WORKER_JOBS, adapters=stage.adapters, stop=stop, owner="demo")
    )
    try:
        final = await _settle(stage, world, console, within=options.settle_seconds)
        console.print()
        console.print(summary_table(final))
        _print_access(console, stage.api_url, world)
        if not options.exit_after:
            console.print("serving until Ctrl-C ...")
            await _wait_for_interrupt()
        return final
    finally:
        stop.set()
        await worker


def _print_access(console: Console, api_url: str, world: demo_seed.DemoWorld) -> None:
    console.print(
        f"\nMCEP is running at [bold]{api_url}[/] (API docs: {api_url}/docs)\n"
        f"log in as {world.admin_email} or {world.pm.email} with the demo password "
        f"'{demo_seed.DEMO_PASSWORD}' (a local demo database: change it for anything else)\n"
        f"finished at {datetime.now(UTC):%H:%M:%S} UTC"
    )
