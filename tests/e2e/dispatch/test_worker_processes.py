"""Four ``mcep worker`` processes drain 20,000 messages on PostgreSQL, and survive a SIGKILL.

The sandbox is served by the test process on a loopback port, so its ledger (what the provider
accepted, per message key) is right here to count. Every message is WhatsApp, whose protocol
echoes our attempt key (``<message id>:<attempt>``), so each accepted send is traced to its
message.

1. Four workers drain 20,000 messages: every message is accepted exactly once.
2. The same with one worker killed by SIGKILL mid-batch: its leases expire and the others
   take the messages over. Every message ends sent, none is lost, and the only duplicates are
   sends the provider accepted before the dead worker could commit them: counted, reported,
   and never more than the batch it held.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mcep.auth.models import Role
from mcep.campaigns import launch, service
from mcep.campaigns.schemas import CampaignCreate, ProfileCreate, TemplateCreate
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Channel
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.dispatch.models import Message, MessageAttempt, MessageState
from mcep.runtime import Runtime
from mcep.sandbox.behaviour import Behaviour, Delay
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState
from tests.conftest import MASTER_KEY, _pg_admin, _pg_url, make_actor
from tests.integration.campaigns.builders import principal
from tests.integration.dispatch import world

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MESSAGES = 20_000
WORKERS = 4
BATCH = 250
LEASE_SECONDS = 5
DEADLINE_SECONDS = 240
DEVICES = 8


@pytest.fixture
async def database_url(postgres_template: str) -> AsyncIterator[str]:
    """Several processes on one server: these runs are for PostgreSQL only."""
    name = f"mcep_t_{uuid.uuid4().hex[:16]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    try:
        yield _pg_url(name)
    finally:
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _seed(runtime: Runtime, sandbox_url: str) -> None:
    """Eight WhatsApp devices on the sandbox and 20 launched campaigns of 1,000."""
    pm = await make_actor(runtime, Role.PM)
    who = principal(pm)
    assert pm.pm_id is not None
    for n in range(DEVICES):
        await world.add_device(runtime, sandbox_url, Platform.WHATSAPP, n, rate_per_minute=600_000)
    async with runtime.sessions() as session, session.begin():
        profile = await service.create_profile(
            session,
            who,
            ProfileCreate(name="any hour", window_start="00:00", window_end="00:00"),
        )
        template = await service.create_template(
            session, who, TemplateCreate(name="t", body="Hello {{ name }}")
        )
    now = datetime.now(UTC)
    for start in range(0, MESSAGES, 1000):
        batch = [
            contacts_service.prepare(
                ProspectCreate(
                    name=f"Client{i} Example",
                    timezone="Europe/Paris",
                    handles=Handles(whatsapp=world.handle(Channel.WHATSAPP, i)),
                    consents=[ConsentIn(channel=Channel.WHATSAPP, source="test")],
                ),
                pm_id=pm.pm_id,
                keyring=runtime.keyring,
                now=now,
            )
            for i in range(start, start + 1000)
        ]
        async with runtime.sessions() as session, session.begin():
            await contacts_service.insert_prepared(session, batch)
            campaign = await service.create_campaign(
                session,
                who,
                CampaignCreate.model_validate(
                    {
                        "name": f"c{start}",
                        "template_id": str(template.id),
                        "profile_id": str(profile.id),
                        "audience": {"prospect_ids": [str(p.prospect["id"]) for p in batch]},
                    }
                ),
            )
        async with runtime.sessions() as session, session.begin():
            await launch.launch(session, who, campaign.id, keyring=runtime.keyring, now=now)


@dataclass
class Worker:
    owner: str
    process: asyncio.subprocess.Process
    log: Path


@asynccontextmanager
async def _workers(database_url: str, logs: Path) -> AsyncIterator[list[Worker]]:
    """Four ``mcep worker --only dispatch,leases`` processes, always stopped on the way out
    (waited for without blocking the loop, which serves the sandbox they may still call)."""
    env = {**os.environ, "MCEP_DATABASE_URL": database_url, "MCEP_MASTER_KEY": MASTER_KEY}
    env.pop("MCEP_REDIS_URL", None)
    started: list[Worker] = []
    try:
        for n in range(WORKERS):
            owner = f"worker-{n}"
            log = logs / f"{owner}.log"
            command = [sys.executable, "-m", "mcep.cli.main", "worker", "--only"]
            command += ["dispatch,leases", "--batch", str(BATCH), "--concurrency", "50"]
            command += ["--lease", str(LEASE_SECONDS), "--owner", owner]
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    *command, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
                )
            started.append(Worker(owner, process, log))
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in started:
            try:
                async with asyncio.timeout(20):
                    await worker.process.wait()
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()


async def _count(runtime: Runtime, *where: Any) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count(Message.id)).where(*where)) or 0)


async def _until_sent(
    runtime: Runtime, workers: list[Worker], at_least: int, deadline: float
) -> None:
    while await _count(runtime, Message.state == MessageState.SENT) < at_least:
        if time.monotonic() > deadline:
            sent = await _count(runtime, Message.state == MessageState.SENT)
            logs = "\n".join(w.log.read_text()[-2000:] for w in workers)
            raise AssertionError(
                f"only {sent} of {MESSAGES} messages sent within {DEADLINE_SECONDS} s\n{logs}"
            )
        if all(w.process.returncode is not None for w in workers):
            logs = "\n".join(w.log.read_text() for w in workers)
            raise AssertionError(f"every worker exited:\n{logs}")
        await asyncio.sleep(0.25)


@asynccontextmanager
async def _sandbox(latency: Delay) -> AsyncIterator[tuple[str, SandboxState]]:
    state = SandboxState(behaviour=Behaviour(latency=latency, read_probability=0.0))
    async with run_sandbox(state) as url:
        yield url, state


def _accepted_per_message(state: SandboxState) -> Counter[str]:
    counts: Counter[str] = Counter()
    for key, n in state.ledger.counts().items():
        counts[key.message_key.split(":", 1)[0]] += n
    return counts


async def _drain_window(runtime: Runtime) -> float:
    """Seconds from the first claim to the last recorded send (start-up excluded)."""
    async with runtime.sessions() as session:
        first = await session.scalar(select(func.min(MessageAttempt.started_at)))
        last = await session.scalar(select(func.max(Message.sent_at)))
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return (last - first).total_seconds()


async def _message_ids(runtime: Runtime) -> set[str]:
    async with runtime.sessions() as session:
        return {str(m) for m in (await session.scalars(select(Message.id))).all()}


async def test_four_worker_processes_send_each_message_exactly_once(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _sandbox(Delay(0.001, 0.005)) as (url, state):
        await _seed(runtime, url)
        started = time.monotonic()
        async with _workers(runtime.settings.database_url, tmp_path) as workers:
            await _until_sent(runtime, workers, MESSAGES, started + DEADLINE_SECONDS)
        elapsed = time.monotonic() - started

    accepted = _accepted_per_message(state)
    assert set(accepted) == await _message_ids(runtime)
    assert Counter(accepted.values()) == {1: MESSAGES}, "a message was accepted twice"
    assert state.ledger.total == MESSAGES
    window = await _drain_window(runtime)
    with capsys.disabled():
        print(
            f"\n{WORKERS} worker processes sent {MESSAGES} messages, each exactly once: "
            f"{MESSAGES / window:.0f} msg/s from the first claim to the last commit "
            f"({window:.1f} s), {elapsed:.1f} s including start-up"
        )


async def test_a_worker_killed_mid_batch_loses_nothing(
    runtime: Runtime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    # Provider latency as real ones have: a worker spends most of a batch waiting on the
    # provider, which is where the SIGKILL most likely finds it.
    async with _sandbox(Delay(0.02, 0.08)) as (url, state):
        await _seed(runtime, url)
        started = time.monotonic()
        deadline = started + DEADLINE_SECONDS
        async with _workers(runtime.settings.database_url, tmp_path) as workers:
            await _until_sent(runtime, workers, MESSAGES // 4, deadline)
            victim = workers[0]
            victim.process.send_signal(signal.SIGKILL)
            await victim.process.wait()
            held = await _count(
                runtime,
                Message.state == MessageState.SENDING,
                Message.lease_owner == victim.owner,
            )
            await _until_sent(runtime, workers[1:], MESSAGES, deadline)
        elapsed = time.monotonic() - started

    accepted = _accepted_per_message(state)
    ids = await _message_ids(runtime)
    assert await _count(runtime, Message.state == MessageState.SENT) == MESSAGES
    assert set(accepted) == ids, "every message reached the provider"
    duplicates = sum(n - 1 for n in accepted.values())
    twice = sum(1 for n in accepted.values() if n > 1)
    assert duplicates == twice, "no message went out more than twice"
    assert duplicates <= held <= BATCH, "only the dead worker's batch can be sent twice"
    record_property("duplicates_after_sigkill", duplicates)
    with capsys.disabled():
        print(
            f"\nSIGKILL of 1 of {WORKERS} workers with {held} messages in flight: all "
            f"{MESSAGES} sent in {elapsed:.1f} s, none lost, {duplicates} sent twice "
            f"(accepted by the provider before the dead worker could record them)"
        )
