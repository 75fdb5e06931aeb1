"""Benchmark: end-to-end dispatch throughput, from queued messages to the provider's accept.

    python scripts/bench_dispatch.py --messages 20000 --workers 4 \
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Everything is real: a scratch PostgreSQL database (dropped afterwards), ``mcep sandbox`` in its
own process on a loopback port, campaigns of 1,000 WhatsApp recipients launched through the
real launch, and N ``mcep worker --only dispatch,leases`` processes sending through the real
adapters over HTTP. Reported: messages per second over the drain (first claim to last
commit) and over the wall clock (including the workers' start-up), and the sandbox's own
count of accepted sends and duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch_db import drop_database, scratch_database
from sqlalchemy import func, select

from mcep.auth import service as auth_service
from mcep.auth.models import Role
from mcep.auth.principal import Principal
from mcep.campaigns import launch, service
from mcep.campaigns.schemas import CampaignCreate, ProfileCreate, TemplateCreate
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.db import migrate
from mcep.dispatch.models import Message, MessageAttempt, MessageState
from mcep.fleet import service as fleet_service
from mcep.fleet.schemas import DeviceCreate
from mcep.runtime import Runtime, build_runtime
from mcep.settings import Settings

MASTER_KEY = base64.urlsafe_b64encode(b"d" * 32).decode()
ADMIN = Principal(uuid.uuid4(), "bench-admin@example.com", Role.ADMIN)
CAMPAIGN_SIZE = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sandbox(port: int, latency_ms: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mcep.cli.main", "sandbox", "--port", str(port)]
    command += ["--latency-ms", str(latency_ms), "--read", "0", "--deliver", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            sandbox_stats(port)
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the sandbox did not start within 30 s")


def sandbox_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


async def seed(runtime: Runtime, *, messages: int, devices: int, sandbox_url: str) -> None:
    """A PM, WhatsApp devices pointed at the sandbox, and launched campaigns of 1,000."""
    async with runtime.sessions() as session, session.begin():
        user = await auth_service.create_user(
            session,
            email="bench@example.com",
            password="bench password",
            role=Role.PM,
            pm_name="Bench",
            actor="bench",
        )
        for n in range(devices):
            await fleet_service.create(
                session,
                ADMIN,
                DeviceCreate(
                    platform=Platform.WHATSAPP,
                    address=f"1065403522{n:05d}",
                    base_url=f"{sandbox_url}/whatsapp",
                    token=f"EAAGbenchToken{n:04d}",
                    rate_per_minute=600_000,
                ),
                keyring=runtime.keyring,
            )
    pm = Principal(user.id, user.email, Role.PM, user.pm_id)
    assert pm.pm_id is not None
    async with runtime.sessions() as session, session.begin():
        profile = await service.create_profile(
            session,
            pm,
            ProfileCreate(name="any hour", window_start="00:00", window_end="00:00"),
        )
        template = await service.create_template(
            session, pm, TemplateCreate(name="bench", body="Hello {{ name }}, a note from us.")
        )
    now = datetime.now(UTC)
    for start in range(0, messages, CAMPAIGN_SIZE):
        size = min(CAMPAIGN_SIZE, messages - start)
        batch = [
            contacts_service.prepare(
                ProspectCreate(
                    name=f"Client{i} Bench",
                    timezone="Europe/Paris",
                    handles=Handles(whatsapp=f"+33612{i:06d}"),
                    consents=[ConsentIn(channel="whatsapp", source="bench")],
                ),
                pm_id=pm.pm_id,
                keyring=runtime.keyring,
                now=now,
            )
            for i in range(start, start + size)
        ]
        async with runtime.sessions() as session, session.begin():
            await contacts_service.insert_prepared(session, batch)
            campaign = await service.create_campaign(
                session,
                pm,
                CampaignCreate.model_validate(
                    {
                        "name": f"bench {start}",
                        "template_id": str(template.id),
                        "profile_id": str(profile.id),
                        "audience": {"prospect_ids": [str(p.prospect["id"]) for p in batch]},
                    }
                ),
            )
        async with runtime.sessions() as session, session.begin():
            await launch.launch(session, pm, campaign.id, keyring=runtime.keyring, now=now)


def start_workers(args: argparse.Namespace, database_url: str) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "MCEP_DATABASE_URL": database_url, "MCEP_MASTER_KEY": MASTER_KEY}
    if args.redis_url:
        env["MCEP_REDIS_URL"] = args.redis_url
    command = [sys.executable, "-m", "mcep.cli.main", "worker", "--only", "dispatch,leases"]
    command += ["--batch", str(args.batch), "--concurrency", str(args.concurrency)]
    command += ["--pipelines", str(args.pipelines)]
    return [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(args.workers)
    ]


async def sent_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        stmt = select(func.count()).where(Message.state == MessageState.SENT)
        return int(await session.scalar(stmt) or 0)


async def drain_window(runtime: Runtime) -> float:
    """Seconds from the first claim to the last recorded send."""
    async with runtime.sessions() as session:
        first = await session.scalar(select(func.min(MessageAttempt.started_at)))
        last = await session.scalar(select(func.max(Message.sent_at)))
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return (last - first).total_seconds()


async def main(args: argparse.Namespace) -> None:
    url, scratch = await scratch_database(args.database_url)
    port = free_port()
    sandbox = start_sandbox(port, args.latency_ms)
    workers: list[subprocess.Popen[bytes]] = []
    runtime = build_runtime(
        Settings(database_url=url, master_key=MASTER_KEY, key_file=Path("unused.key"))
    )
    try:
        await migrate.upgrade(runtime.engine)
        started = time.perf_counter()
        await seed(
            runtime,
            messages=args.messages,
            devices=args.devices,
            sandbox_url=f"http://127.0.0.1:{port}",
        )
        print(f"seeded {args.messages} queued messages in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        workers = start_workers(args, url)
        while (done := await sent_count(runtime)) < args.messages:
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"only {done} of {args.messages} sent after {args.timeout} s")
            if any(w.poll() is not None for w in workers):
                errors = [w.stderr.read().decode() if w.stderr else "" for w in workers]
                raise SystemExit("a worker exited early:\n" + "\n".join(errors))
            await asyncio.sleep(0.2)
        wall = time.perf_counter() - started
        window = await drain_window(runtime)
        stats = sandbox_stats(port)
        print(
            f"{args.messages} messages, {args.workers} worker processes "
            f"(batch {args.batch}, concurrency {args.concurrency}, pipelines {args.pipelines}), "
            f"sandbox latency "
            f"{args.latency_ms:.0f} ms, limits in {'Redis' if args.redis_url else 'memory'}:\n"
            f"  drain (first claim to last commit): {window:.2f} s = "
            f"{args.messages / window:,.0f} msg/s\n"
            f"  wall clock incl. worker start-up:   {wall:.2f} s = "
            f"{args.messages / wall:,.0f} msg/s\n"
            f"  sandbox: {stats['accepted']} accepted, {stats['duplicates']} keys accepted twice"
        )
    finally:
        for process in [*workers, sandbox]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*workers, sandbox]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        await runtime.aclose()
        if scratch:
            await drop_database(args.database_url, scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pipelines", type=int, default=1, help="batches in flight per worker")
    parser.add_argument("--devices", type=int, default=8, help="WhatsApp sender devices")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sandbox send latency")
    parser.add_argument("--redis-url", default=None, help="share rate limits through Redis")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    asyncio.run(main(parser.parse_args()))
