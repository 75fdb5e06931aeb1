"""``mcep worker`` as an operator runs it, on SQLite and PostgreSQL: it sends what is queued
through the sandbox, stops cleanly on SIGTERM, and refuses a job it does not know."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from mcep.auth.models import Role
from mcep.channels.base import Platform
from mcep.contacts.models import Channel
from mcep.dispatch.models import MessageState
from mcep.runtime import Runtime
from tests.conftest import MASTER_KEY, make_actor
from tests.integration.dispatch import world

COMMAND = [sys.executable, "-m", "mcep.cli.main", "worker"]


def _env(database_url: str) -> dict[str, str]:
    env = {**os.environ, "MCEP_DATABASE_URL": database_url, "MCEP_MASTER_KEY": MASTER_KEY}
    env.pop("MCEP_REDIS_URL", None)
    return env


async def test_the_worker_command_sends_the_queue_and_stops_on_sigterm(
    runtime: Runtime, tmp_path: Path
) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 5)
        campaign_id = await world.launch(runtime, pm, prospects)
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *COMMAND,
                "--only",
                "dispatch,leases",
                env=_env(runtime.settings.database_url),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while (await world.states(runtime, campaign_id)) != {MessageState.SENT: 5}:
                assert time.monotonic() < deadline, log.read_text()
                assert process.returncode is None, log.read_text()
                await asyncio.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = log.read_text()
    assert "dispatch, leases" in output and "worker stopped" in output
    assert box.state.ledger.total == 5


async def test_an_unknown_job_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--only",
        "dispatch,nope",
        env=_env(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 2
    message = " ".join((out + err).decode().split())
    assert "no such job: nope" in message and "dispatch" in message and "leases" in message
    assert not (tmp_path / "unused.db").exists()
